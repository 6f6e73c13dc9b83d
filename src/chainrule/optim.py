"""Optimizers: one base class, one small update rule each.

An optimizer holds parameters and per-parameter state. ``step()`` computes each
parameter's step size (the amount subtracted, as in the lessons:
new value = old value - step size) from its ``.grad`` and applies it; the step
sizes of the last step stay available in ``step_sizes``.

Example::

    >>> import chainrule as cr
    >>> from chainrule.optim import GradientDescent
    >>> b3 = cr.nn.Parameter(0.0, name="b3")
    >>> b3.grad = cr.tensor(-15.7).data           # the lessons' dSSR/db3 at b3 = 0
    >>> opt = GradientDescent(lr=0.1, params=[b3])
    >>> opt.step()
    >>> opt.step_sizes[0], b3.item()              # step = -15.7 x 0.1; new b3 = 0 - (-1.57)
    (array(-1.57), 1.57)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .checks import Number, check

_LR = Number(low=0, low_open=True)  # a finite number > 0
_FRACTION = Number(low=0, high=1)  # a number in [0, 1): momentum, betas
_EPS = Number(low=0)  # a finite number >= 0


# Parameters are packed into one buffer (one update call for all) only up to this many elements in all:
# beyond it the per-call overhead packing saves is small, and a packed gradient is one more copy of them.
PACK_LIMIT = 1 << 16
# A parameter with more elements than this keeps no step sizes after a step (``step_sizes[i]`` is None;
# ``largest_step()`` still knows its largest): its memory stays at PyTorch's, no extra copy of the weights.
KEEP_LIMIT = 1 << 16
_CHUNK = 1 << 15  # elements per piece of an in-place update of a large parameter


class Optimizer:
    """Base: holds ``params`` and ``state``; subclasses write only ``update``.

    ``step_sizes[i]`` is parameter i's step of the last step, except for a parameter
    of more than ``keep_limit`` elements (default ``KEEP_LIMIT``), whose step is
    applied and let go (None there): set ``keep_limit = math.inf`` to keep them all.
    """

    keep_limit: float = KEEP_LIMIT

    def __init__(self, lr: float, params: Iterable[Any] | None = None) -> None:
        self.lr = check(type(self).__name__, "lr", lr, _LR)
        self.attach(params or [])

    def attach(self, params: Iterable[Any]) -> Optimizer:
        """Optimize these parameters from now on, with fresh state.

        Several parameters of one dtype are packed into one buffer: afterwards each
        ``.data`` is a view of it, so an array taken from ``.data`` before
        ``attach`` no longer follows the parameter (take it again afterwards).
        """
        self.params = list(params)
        self.step_sizes = [None] * len(self.params)
        self._largest = [0.0] * len(self.params)
        self.t = 0
        self._pack()
        self.state: list[dict[str, Any]] = [{} for _ in (range(1) if self._flat is not None else self.params)]
        return self

    def _pack(self):
        """Move several parameters of one dtype into one flat buffer; each ``.data`` becomes a view of it.

        NOTE: then every step is a few NumPy calls on one array rather than a few
        per parameter, which is most of an update's cost for small networks. The
        rules are elementwise, so the numbers are the same, and a parameter with
        no gradient keeps its values and its state, as when unpacked.
        """
        self._flat = None
        if (
            len(self.params) < 2
            or len({p.dtype for p in self.params}) != 1
            or sum(p.size for p in self.params) > PACK_LIMIT
        ):
            return
        ends = np.cumsum([p.size for p in self.params])
        self._spans = list(zip(ends - [p.size for p in self.params], ends))
        self._flat = np.concatenate([p.data.ravel() for p in self.params])
        for p, (a, b) in zip(self.params, self._spans):
            p.data = self._flat[a:b].reshape(p.shape)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient (one without stays where it is)."""
        self.t += 1
        if self._flat is not None:
            return self._step_packed()
        for i, p in enumerate(self.params):
            large = p.size > self.keep_limit
            if p.grad is None:
                self.step_sizes[i], self._largest[i] = (None, 0.0) if large else (np.zeros_like(p.data), 0.0)
            elif large:
                self.step_sizes[i], self._largest[i] = None, self._apply_let_go(p, p.grad, self.state[i])
            else:
                step = np.asarray(self.update(p.grad, self.state[i]))  # 0-d grads give numpy scalars
                p.data -= step
                self.step_sizes[i] = step

    def _apply_let_go(self, p, g, state):
        """Apply the step of a large parameter without keeping it; return its largest |step|."""
        step = self.update(g, state)
        p.data -= step
        return float(np.max(np.abs(step, out=step))) if step.size else 0.0  # NaN stays NaN

    def _step_packed(self):
        flat, grads = self._flat, [p.grad for p in self.params]
        for p in self.params:
            if p.data.base is not flat:  # someone gave a parameter a new array: take it in
                self._pack()
                flat = self._flat
                break
        if any(g is None for g in grads):
            return self._step_packed_some(grads)
        step = np.asarray(self._update_owned(np.concatenate([g.ravel() for g in grads]), self.state[0]))
        flat -= step
        self._finish(step)

    def _step_packed_some(self, grads):
        """A packed step where some parameters have no gradient: they neither move nor age."""
        idle = [span for g, span in zip(grads, self._spans) if g is None]
        kept = [{k: v[a:b].copy() for k, v in self.state[0].items()} for a, b in idle]
        g = np.concatenate(
            [np.zeros(p.size, self._flat.dtype) if g is None else g.ravel() for p, g in zip(self.params, grads)]
        )
        step = np.asarray(self.update(g, self.state[0]))
        for (a, b), saved in zip(idle, kept):
            step[a:b] = 0.0
            for k, v in saved.items():
                self.state[0][k][a:b] = v
        self._flat -= step
        self._finish(step)

    def _finish(self, step):
        self._last, self._sizes = step, None  # the per-parameter views are made when asked for

    @property
    def step_sizes(self) -> list[np.ndarray | None]:
        """Each parameter's step size of the last step (new value = old value - step size)."""
        if self._sizes is None:
            self._sizes = [self._last[a:b].reshape(p.shape) for p, (a, b) in zip(self.params, self._spans)]
        return self._sizes

    @step_sizes.setter
    def step_sizes(self, sizes: list[np.ndarray | None]) -> None:
        self._sizes = sizes

    def restore(self, t: int, step_sizes: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """Stand as after ``t`` steps with these last step sizes and this state, flat in parameter order.

        ``step_sizes`` is one flat array of every parameter's step, one after the
        other in ``params`` order; each entry of ``state`` (Adam's "m", say) is
        flat in the same order. Used to carry on after steps taken elsewhere
        (a compiled run) as if this optimizer had taken them.
        """
        self.t = t
        if self._flat is not None:
            self._finish(step_sizes)
            self.state = [dict(state)]
            return
        ends = np.cumsum([p.size for p in self.params])
        spans = list(zip(ends - [p.size for p in self.params], ends))
        self.step_sizes = [step_sizes[a:b].reshape(p.shape) for p, (a, b) in zip(self.params, spans)]
        self.state = [
            {k: v[a:b].reshape(p.shape).copy() for k, v in state.items()} for p, (a, b) in zip(self.params, spans)
        ]

    def largest_step(self) -> float:
        """max |step size| over every parameter in the last step (NaN if any step is NaN)."""
        if self._flat is not None:
            return float(np.maximum(self._last.max(), -self._last.min())) if self._last.size else 0.0
        sizes = [
            top if s is None else float(np.max(np.abs(s))) if s.size else 0.0
            for s, top in zip(self.step_sizes, self._largest)
        ]
        return float(np.max(sizes)) if sizes else 0.0

    def update(self, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        """The step size for gradient ``g``; ``state`` is this parameter's own dict."""
        raise NotImplementedError

    def _update_owned(self, g, state):
        """``update`` for a gradient array the optimizer made itself (a rule may overwrite it)."""
        return self.update(g, state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return f"lr={self.lr}"


class GradientDescent(Optimizer):
    """Plain gradient descent, the lessons' rule.

    step = lr * g;  p <- p - step
    """

    def update(self, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        return self.lr * g

    def _update_owned(self, g, state):
        return np.multiply(g, self.lr, out=g)  # the packed gradient is the optimizer's own: no new array

    def _apply_let_go(self, p, g, state):
        """p -= lr g in pieces through one small buffer: no array the size of the parameter is made."""
        if not p.data.flags.c_contiguous:
            return super()._apply_let_go(p, g, state)
        values, grads = p.data.reshape(-1), g.reshape(-1)  # a view of the parameter (it is contiguous)
        buffer = np.empty(min(_CHUNK, values.size), dtype=np.result_type(grads, self.lr))
        tops = []
        for a in range(0, values.size, _CHUNK):
            piece = buffer[: min(values.size - a, _CHUNK)]
            np.multiply(grads[a : a + _CHUNK], self.lr, out=piece)
            values[a : a + _CHUNK] -= piece
            tops.append(np.abs(piece, out=piece).max())
        return float(np.max(tops)) if tops else 0.0


class Momentum(Optimizer):
    """Gradient descent with (heavy-ball) momentum, optionally Nesterov's.

    v <- momentum * v + g;  step = lr * v  (Nesterov: step = lr * (g + momentum * v));
    p <- p - step. Polyak (1964); Sutskever et al., "On the importance of
    initialization and momentum in deep learning" (ICML 2013). The same
    convention as PyTorch's SGD with momentum (no dampening).
    """

    def __init__(
        self, lr: float, momentum: float = 0.9, nesterov: bool = False, params: Iterable[Any] | None = None
    ) -> None:
        self.momentum = check("Momentum", "momentum", momentum, _FRACTION)
        if nesterov and self.momentum == 0:
            raise ValueError("Momentum: nesterov=True needs momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)
        super().__init__(lr, params)

    def update(self, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        v = state.get("v")
        v = g.copy() if v is None else self.momentum * v + g
        state["v"] = v
        return self.lr * (g + self.momentum * v if self.nesterov else v)

    def extra_repr(self) -> str:
        return f"lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}"


class Adam(Optimizer):
    """Adam: steps scaled by running estimates of the gradient's first two moments.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    step = lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps);  p <- p - step.
    Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015).
    """

    scale_free = True  # its steps are about lr whatever the size of the gradient

    def __init__(
        self,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        params: Iterable[Any] | None = None,
    ) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (check("Adam", "betas[0]", betas[0], _FRACTION), check("Adam", "betas[1]", betas[1], _FRACTION))
        self.eps = check("Adam", "eps", eps, _EPS)
        super().__init__(lr, params)

    def update(self, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        b1, b2 = self.betas
        if not state:
            state["m"], state["v"], state["scratch"] = (np.zeros_like(g) for _ in range(3))
        m, v, scratch = state["m"], state["v"], state["scratch"]
        m *= b1
        m += np.multiply(g, 1 - b1, out=scratch)
        v *= b2
        np.multiply(g, g, out=scratch)
        scratch *= 1 - b2
        v += scratch
        # The formula above with both bias corrections moved into scalars, in place (ten passes over
        # the parameters): (lr sqrt(1 - b2^t) / (1 - b1^t)) * m / (sqrt(v) + eps sqrt(1 - b2^t)).
        root = math.sqrt(1 - b2**self.t)
        step = np.sqrt(v, out=np.empty_like(v))  # an array even for a 0-d parameter
        step += self.eps * root
        np.divide(m, step, out=step)
        step *= self.lr * root / (1 - b1**self.t)
        return step

    def extra_repr(self) -> str:
        return f"lr={self.lr}, betas={self.betas}, eps={self.eps}"


OPTIMIZERS = {"gd": GradientDescent, "momentum": Momentum, "adam": Adam}
