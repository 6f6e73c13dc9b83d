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

from .checks import Integer, Number, check

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
    decoupled = False  # weight decay added to the gradient (PyTorch's L2), or to the step (AdamW)
    scale_free = False  # True where steps stay near lr whatever the gradient's size (Adam and kin)

    def __init__(self, lr: float, params: Iterable[Any] | None = None, weight_decay: float = 0.0) -> None:
        self.lr = check(type(self).__name__, "lr", lr, _LR)
        self.weight_decay = check(type(self).__name__, "weight_decay", weight_decay, _EPS)
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

    def _full_step(self, g: np.ndarray, data: np.ndarray, state: dict[str, Any], owned: bool = False) -> np.ndarray:
        """``update`` with weight decay: g + weight_decay * p into the rule (coupled), or
        lr * weight_decay * p added to its step (decoupled, AdamW)."""
        wd = self.weight_decay
        if wd and not self.decoupled:
            g = np.asarray(g + wd * data)  # (an array even for a 0-d parameter: a rule may write into it)
            owned = True
        step = self._update_owned(g, state) if owned else self.update(g, state)
        if wd and self.decoupled:
            step = step + (self.lr * wd) * data
        return step

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
                step = np.asarray(self._full_step(p.grad, p.data, self.state[i]))  # 0-d grads give numpy scalars
                p.data -= step
                self.step_sizes[i] = step

    def _apply_let_go(self, p, g, state):
        """Apply the step of a large parameter without keeping it; return its largest |step|."""
        step = self._full_step(g, p.data, state)
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
        step = np.asarray(self._full_step(np.concatenate([g.ravel() for g in grads]), flat, self.state[0], True))
        flat -= step
        self._finish(step)

    def _step_packed_some(self, grads):
        """A packed step where some parameters have no gradient: they neither move nor age."""
        idle = [span for g, span in zip(grads, self._spans) if g is None]
        kept = [{k: v[a:b].copy() for k, v in self.state[0].items()} for a, b in idle]
        g = np.concatenate(
            [np.zeros(p.size, self._flat.dtype) if g is None else g.ravel() for p, g in zip(self.params, grads)]
        )
        step = np.asarray(self._full_step(g, self._flat, self.state[0], True))
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
        return f"lr={self.lr}" + self._decay_repr()

    def _decay_repr(self) -> str:
        return f", weight_decay={self.weight_decay}" if self.weight_decay else ""


class GradientDescent(Optimizer):
    """Plain gradient descent, the lessons' rule.

    step = lr * g;  p <- p - step.  With ``weight_decay`` (every optimizer has it,
    PyTorch's coupled L2): g <- g + weight_decay * p first. Cauchy (1847).
    """

    def __init__(self, lr: float, params: Iterable[Any] | None = None, weight_decay: float = 0.0) -> None:
        super().__init__(lr, params, weight_decay)

    def update(self, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        return self.lr * g

    def _update_owned(self, g, state):
        return np.multiply(g, self.lr, out=g)  # the packed gradient is the optimizer's own: no new array

    def _apply_let_go(self, p, g, state):
        """p -= lr g in pieces through one small buffer: no array the size of the parameter is made."""
        if not p.data.flags.c_contiguous or self.weight_decay:
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
        self,
        lr: float,
        momentum: float = 0.9,
        nesterov: bool = False,
        params: Iterable[Any] | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        self.momentum = check("Momentum", "momentum", momentum, _FRACTION)
        if nesterov and self.momentum == 0:
            raise ValueError("Momentum: nesterov=True needs momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)
        super().__init__(lr, params, weight_decay)

    def update(self, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        v = state.get("v")
        v = g.copy() if v is None else self.momentum * v + g
        state["v"] = v
        return self.lr * (g + self.momentum * v if self.nesterov else v)

    def extra_repr(self) -> str:
        return f"lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}" + self._decay_repr()


class Adam(Optimizer):
    """Adam: steps scaled by running estimates of the gradient's first two moments.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    step = lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps);  p <- p - step.
    Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015), Algorithm 1; PyTorch's form.

    With ``eps_hat=True`` eps is added to sqrt(v) before the bias correction instead, the paper's
    "epsilon hat" (end of its section 2), the form of scikit-learn's MLP, Keras and TensorFlow:
    step = lr * (sqrt(1 - b2^t) / (1 - b1^t)) * m / (sqrt(v) + eps). The two differ only while
    sqrt(v) is near eps, but enough there for two runs' losses to part after a few epochs.

    Example: the first step from g = 0.5 with eps = 0.01: m = 0.05, v = 0.00025, sqrt(v) = 0.0158114;
    Algorithm 1 gives 0.1 * 0.5 / (0.5 + 0.01) = 0.0980392, the hat form
    0.1 * (sqrt(0.001) / 0.1) * 0.05 / (0.0158114 + 0.01) = 0.0612574::

        >>> import numpy as np
        >>> from chainrule.nn import Parameter
        >>> p = Parameter(1.0, name="p"); p.grad = np.array(0.5)
        >>> opt = Adam(lr=0.1, eps=0.01, params=[p]); opt.step()
        >>> round(float(opt.step_sizes[0]), 7)
        0.0980392
        >>> p.grad = np.array(0.5); opt = Adam(lr=0.1, eps=0.01, eps_hat=True, params=[p]); opt.step()
        >>> round(float(opt.step_sizes[0]), 7)
        0.0612574
    """

    scale_free = True

    def __init__(
        self,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        params: Iterable[Any] | None = None,
        weight_decay: float = 0.0,
        eps_hat: bool = False,
    ) -> None:
        name = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (check(name, "betas[0]", betas[0], _FRACTION), check(name, "betas[1]", betas[1], _FRACTION))
        self.eps = check(name, "eps", eps, _EPS)
        if not isinstance(eps_hat, (bool, np.bool_)):
            raise TypeError(f"{name}: eps_hat must be True or False, got {eps_hat!r}")
        self.eps_hat = bool(eps_hat)
        super().__init__(lr, params, weight_decay)

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
        # the parameters): (lr sqrt(1 - b2^t) / (1 - b1^t)) * m / (sqrt(v) + eps sqrt(1 - b2^t));
        # the hat form adds eps itself.
        root = math.sqrt(1 - b2**self.t)
        step = np.sqrt(v, out=np.empty_like(v))  # an array even for a 0-d parameter
        step += self.eps if self.eps_hat else self.eps * root
        np.divide(m, step, out=step)
        step *= self.lr * root / (1 - b1**self.t)
        return step

    def extra_repr(self) -> str:
        hat = ", eps_hat=True" if self.eps_hat else ""
        return f"lr={self.lr}, betas={self.betas}, eps={self.eps}{hat}" + self._decay_repr()


class AdamW(Adam):
    """Adam with decoupled weight decay: the decay shrinks the parameter itself, not through the moments.

    m, v and the Adam step as in :class:`Adam` (from the plain gradient g);
    step = adam_step + lr * weight_decay * p;  p <- p - step.
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019).
    PyTorch's convention (and default weight_decay = 0.01).

    Example: one step from p = 1 with g = 0.5: Adam's first step is lr * sign(g) = 0.1,
    the decay 0.1 x 0.01 x 1 = 0.001::

        >>> import numpy as np
        >>> from chainrule.nn import Parameter
        >>> p = Parameter(1.0, name="p"); p.grad = np.array(0.5)
        >>> opt = AdamW(lr=0.1, params=[p]); opt.step()
        >>> round(float(opt.step_sizes[0]), 9), round(p.item(), 9)
        (0.101, 0.899)
    """

    decoupled = True

    def __init__(
        self,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        params: Iterable[Any] | None = None,
        weight_decay: float = 0.01,
        eps_hat: bool = False,
    ) -> None:
        super().__init__(lr, betas, eps, params, weight_decay, eps_hat)


class RMSprop(Optimizer):
    """RMSprop: each step divided by a running root mean square of the gradient.

    v <- rho v + (1 - rho) g^2  (v starts at 0);  step = lr * g / (sqrt(v) + eps);  p <- p - step.
    Tieleman & Hinton, "Lecture 6.5 - rmsprop: Divide the gradient by a running average of its
    recent magnitude", COURSERA: Neural Networks for Machine Learning (2012). PyTorch's defaults.
    """

    scale_free = True

    def __init__(
        self,
        lr: float = 0.01,
        rho: float = 0.99,
        eps: float = 1e-8,
        params: Iterable[Any] | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        self.rho = check("RMSprop", "rho", rho, _FRACTION)
        self.eps = check("RMSprop", "eps", eps, _EPS)
        super().__init__(lr, params, weight_decay)

    def update(self, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        if not state:
            state["v"] = np.zeros_like(g)
        v = state["v"]
        v *= self.rho
        v += (1 - self.rho) * (g * g)
        return self.lr * g / (np.sqrt(v) + self.eps)

    def extra_repr(self) -> str:
        return f"lr={self.lr}, rho={self.rho}, eps={self.eps}" + self._decay_repr()


class Adagrad(Optimizer):
    """Adagrad: each step divided by the root of the sum of every squared gradient so far.

    s <- s + g^2  (s starts at 0);  step = lr * g / (sqrt(s) + eps);  p <- p - step.
    Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
    Optimization" (JMLR 2011). PyTorch's defaults (no learning-rate decay).
    """

    scale_free = True

    def __init__(
        self, lr: float = 0.01, eps: float = 1e-10, params: Iterable[Any] | None = None, weight_decay: float = 0.0
    ) -> None:
        self.eps = check("Adagrad", "eps", eps, _EPS)
        super().__init__(lr, params, weight_decay)

    def update(self, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        if not state:
            state["s"] = np.zeros_like(g)
        s = state["s"]
        s += g * g
        return self.lr * g / (np.sqrt(s) + self.eps)

    def extra_repr(self) -> str:
        return f"lr={self.lr}, eps={self.eps}" + self._decay_repr()


# The optimizers made from a learning rate by name (the command line's --optimizer; L-BFGS has none).
OPTIMIZERS = {
    "gd": GradientDescent,
    "momentum": Momentum,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
}


class LBFGS(Optimizer):
    """L-BFGS: quasi-Newton steps from the last few gradients, run by scipy on the packed parameters.

    Each iteration: d = -H g, H the inverse-Hessian estimate built from the last m pairs
    (s_k = p_{k+1} - p_k, y_k = g_{k+1} - g_k) by the two-loop recursion; p <- p + a d with a step
    length a from a line search (Wolfe conditions). Liu & Nocedal, "On the limited memory BFGS
    method for large scale optimization" (Mathematical Programming, 1989), as implemented in
    ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` (Byrd, Lu, Nocedal & Zhu 1995;
    Morales & Nocedal 2011), scikit-learn's ``solver="lbfgs"``.

    Full batch only. ``fit(model, x, y, optimizer=LBFGS())`` hands the loss and its gradient
    (penalty and sample weights included) to scipy, which decides when to stop: the projected
    gradient's largest element at most ``tol`` (scipy's ``gtol``), ``max_iter`` iterations, or
    ``max_fun`` loss evaluations (None: fit's ``tol`` and ``max_iter``; with no ``tol`` given to fit
    either, ``DEFAULT_TOL`` = 1e-4, the ``tol`` scikit-learn's MLP hands scipy as ``gtol``: the
    lessons' 0.001 for step sizes stops L-BFGS far too early). The History holds one
    row per scipy iteration. Measured on the lessons' network: the SSR in b3 alone is a
    parabola, and L-BFGS lands on its minimum (b3 = 2.6092) in 2 iterations (3 evaluations)
    where gradient descent takes the lessons' 10; all seven parameters from the lessons' trained
    values need 8 iterations with tol=1e-6; from ``DosageNetwork.random(seed=s)``,
    s = 0..3, 46, 23, 29 and 13 iterations to an SSR below 1e-8 (gradient descent with lr 0.1
    and the lessons' rule stops at SSR 0.67 after 22 iterations from seed 0, and is still at
    0.24 after 100000 from seed 2).

    Example::

        >>> import chainrule as cr
        >>> net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
        >>> h = cr.fit(net, *cr.data.dosage(), params=["b3"], optimizer=LBFGS(tol=1e-8))
        >>> h.n_iter, round(net.b3.item(), 4)
        (2, 2.6092)
    """

    DEFAULT_TOL = 1e-4

    def __init__(
        self,
        max_iter: int | None = None,
        max_fun: int = 15000,
        tol: float | None = None,
        memory: int = 10,
        params: Iterable[Any] | None = None,
    ) -> None:
        self.max_iter = check("LBFGS", "max_iter", max_iter, Integer(low=1, optional=True))
        self.max_fun = check("LBFGS", "max_fun", max_fun, Integer(low=1))
        self.tol = None if tol is None else check("LBFGS", "tol", tol, _EPS)
        self.memory = check("LBFGS", "memory", memory, Integer(low=1))
        super().__init__(1.0, params)

    def step(self) -> None:
        raise TypeError("LBFGS: scipy runs the whole minimization: use fit(..., optimizer=LBFGS()), not step()")

    def extra_repr(self) -> str:
        return f"max_iter={self.max_iter}, max_fun={self.max_fun}, tol={self.tol}, memory={self.memory}"
