"""A ReLU MLP classifier trained with softmax cross-entropy, written five ways (W2 and W3 use it).

Every implementation starts from the same initial parameters (drawn once by
``chainrule.nn.mlp``), sees the same mini-batches in the same order and
returns its final parameters as NumPy arrays, weights in chainrule's
(in, out) layout. :func:`final_loss` then scores every implementation's
parameters with one float64 evaluator, so the comparison does not depend on
anyone's own loss code.

The batch order is chainrule.fit's: one ``numpy.random.default_rng(seed)``,
a fresh ``permutation`` of the rows per epoch, cut into consecutive batches
(the last one shorter). So ``cr.fit(..., batch_size=, seed=)`` sees the
same batches too, which :func:`fit_uses_order` checks.
"""

from __future__ import annotations

import harness  # noqa: F401  (first: pins every library to one thread)

import inspect
import warnings
from dataclasses import dataclass, field

import numpy as np

import chainrule as cr
from chainrule.losses import cross_entropy
from chainrule.nn import mlp


@dataclass
class Problem:
    """Data, network, optimizer and batch order of one classification workload."""

    x: np.ndarray  # (n, features) float32
    y: np.ndarray  # (n,) int64 labels
    sizes: tuple  # layer widths, e.g. (64, 128, 64, 10)
    optimizer: str  # "adam" or "gd"
    lr: float
    batch_size: int
    epochs: int
    seed: int
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    init: list = field(default=None)  # [(W (in, out), b)], float32, from chainrule.nn.mlp (transposed)
    batches: list = field(default=None)  # row indices of every batch, all epochs, in order

    def __post_init__(self):
        model = mlp(list(self.sizes), activation="relu", seed=self.seed, dtype=np.float32)
        linears = [m for m in model.layers if hasattr(m, "weight")]
        self.init = [(m.weight.data.T.copy(), m.bias.data.copy()) for m in linears]  # chainrule's are (out, in)
        self.batches = fit_order(len(self.x), self.batch_size, self.epochs, self.seed)

    @property
    def samples(self):
        """Training samples processed by one run (epochs x rows)."""
        return self.epochs * len(self.x)


def fit_order(n, batch_size, epochs, seed):
    """Row indices per batch, epoch after epoch, drawn exactly as chainrule.fit shuffles."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        order = rng.permutation(n)
        out += [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return out


def first_epoch(problem):
    return problem.batches[: -(-len(problem.x) // problem.batch_size)]


# ---- the float64 referee -------------------------------------------------------------------


def final_loss(problem, params):
    """Mean cross-entropy over the whole training set at ``params``, in float64."""
    h = problem.x.astype(np.float64)
    for i, (W, b) in enumerate(params):
        h = h @ W.astype(np.float64) + b.astype(np.float64)
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
    m = h.max(axis=1, keepdims=True)
    logp = h - m - np.log(np.exp(h - m).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(h)), problem.y].mean())


def displacement_gap(problem, params, reference):
    """||params - reference|| / ||reference - init||: disagreement relative to how far training moved."""
    flat = lambda ps: np.concatenate([a.astype(np.float64).ravel() for pair in ps for a in pair])  # noqa: E731
    moved = np.linalg.norm(flat(reference) - flat(problem.init))
    return float(np.linalg.norm(flat(params) - flat(reference)) / moved) if moved else 0.0


# ---- chainrule -----------------------------------------------------------------------------------


def _cr_model(problem):
    model = mlp(list(problem.sizes), activation="relu", seed=problem.seed, dtype=np.float32)
    linears = [m for m in model.layers if hasattr(m, "weight")]
    for m, (W, b) in zip(linears, problem.init):
        m.weight.data[...] = W.T
        m.bias.data[...] = b
    return model, linears


def _cr_optimizer(problem, params=None):
    from chainrule.optim import Adam, GradientDescent

    if problem.optimizer == "adam":
        return Adam(lr=problem.lr, betas=problem.betas, eps=problem.eps, params=params)
    return GradientDescent(lr=problem.lr, params=params)


def _cr_params(linears):
    return [(m.weight.data.T.copy(), m.bias.data.copy()) for m in linears]


def run_chainrule(problem, batches):
    """The library's pieces in a hand loop: mlp, cross_entropy, backward, Adam/GradientDescent."""
    model, linears = _cr_model(problem)
    opt = _cr_optimizer(problem, model.parameters())
    x, y = problem.x, problem.y
    for rows in batches:
        opt.zero_grad()
        loss = cross_entropy(model(x[rows]), y[rows])
        loss.backward()
        opt.step()
    return _cr_params(linears)


def run_chainrule_fit(problem, epochs=None, **extra):
    """cr.fit with its own shuffling (the same order as :func:`fit_order`), tol=0, default monitor."""
    model, linears = _cr_model(problem)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # reaching max_iter warns (here it is the plan); a compile fallback is news
        cr.fit(
            model,
            problem.x,
            problem.y,
            loss="cross_entropy",
            optimizer=_cr_optimizer(problem),
            batch_size=problem.batch_size,
            max_iter=epochs or problem.epochs,
            tol=0.0,
            seed=problem.seed,
            **extra,
        )
    for w in caught:
        if "compile" in w.category.__name__.lower() and str(w.message) not in _said:
            _said.add(str(w.message))
            print(f"Note: cr.fit(compile=True) warned: {w.message}")
    return _cr_params(linears)


_said = set()


def fit_has(keyword):
    return hasattr(cr, "fit") and keyword in inspect.signature(cr.fit).parameters


def fit_uses_order(problem):
    """True when one epoch of cr.fit sees exactly the batches of :func:`fit_order` (checked by their labels)."""
    seen = []

    def recording(predicted, labels):
        seen.append(np.asarray(getattr(labels, "data", labels)).ravel().astype(np.int64))
        return cross_entropy(predicted, labels)

    recording.__name__ = "cross_entropy"  # fit keeps integer labels for this loss
    recording.reduction = "mean"
    model, _ = _cr_model(problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cr.fit(
                model,
                problem.x,
                problem.y,
                loss=recording,
                optimizer=_cr_optimizer(problem),
                batch_size=problem.batch_size,
                max_iter=1,
                tol=0.0,
                seed=problem.seed,
                monitor=False,
            )
    except Exception:  # noqa: BLE001  (fit moved: then its order is simply not known)
        return False
    expected = [problem.y[rows] for rows in first_epoch(problem)]
    return len(seen) == len(expected) and all(np.array_equal(a, b) for a, b in zip(seen, expected))


# ---- NumPy by hand ---------------------------------------------------------------------------


def _np_forward(params, x):
    """Pre-activations z_k = a_{k-1} W_k + b_k, activations a_k = relu(z_k); the last z is the logits."""
    acts, zs = [x], []
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W
        z += b
        zs.append(z)
        if i < len(params) - 1:
            acts.append(np.maximum(z, 0))
    return acts, zs


def _np_grads(params, acts, zs, y):
    """dL/dW, dL/db of the mean cross-entropy, by the chain rule, last layer first.

    dL/dlogits = (softmax(logits) - onehot(y)) / n; dL/dW = a^T g; dL/db = sum_rows g;
    dL/da = g W^T; through relu: dL/dz = dL/da where z > 0, else 0.
    """
    logits = zs[-1]
    g = np.exp(logits - logits.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    g[np.arange(len(y)), y] -= 1
    g *= 1.0 / len(y)
    grads = [None] * len(params)
    for k in range(len(params) - 1, -1, -1):
        grads[k] = (acts[k].T @ g, g.sum(axis=0))
        if k:
            g = g @ params[k][0].T
            g *= zs[k - 1] > 0
    return grads


class _NumpyAdam:
    """m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2; p <- p - lr m_hat / (sqrt(v_hat) + eps), in place."""

    def __init__(self, problem, params):
        self.lr, (self.b1, self.b2), self.eps = problem.lr, problem.betas, problem.eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        b1, b2 = self.b1, self.b2
        step_size = self.lr / (1 - b1**self.t)
        root_bc2 = np.sqrt(1 - b2**self.t)
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            denom = np.sqrt(v)
            denom /= root_bc2
            denom += self.eps
            p -= step_size * (m / denom)


def run_numpy(problem, batches):
    """Forward, the chain rule written out, and the optimizer's update, on plain float32 arrays."""
    params = [(W.copy(), b.copy()) for W, b in problem.init]
    flat = [a for pair in params for a in pair]
    adam = _NumpyAdam(problem, flat) if problem.optimizer == "adam" else None
    x, y = problem.x, problem.y
    for rows in batches:
        xb, yb = x[rows], y[rows]
        acts, zs = _np_forward(params, xb)
        grads = [a for pair in _np_grads(params, acts, zs, yb) for a in pair]
        if adam is not None:
            adam.step(flat, grads)
        else:
            for p, g in zip(flat, grads):
                g *= problem.lr
                p -= g
    return params


# ---- PyTorch eager -----------------------------------------------------------------------------


def run_torch(problem, batches):
    """torch.nn.Sequential of Linear/ReLU, F.cross_entropy, torch.optim.Adam/SGD, float32, defaults."""
    torch = harness.load_torch()
    nn = torch.nn
    layers, linears = [], []
    for W, b in problem.init:
        lin = nn.Linear(*W.shape)
        with torch.no_grad():  # torch stores the weight (out, in): the transpose of chainrule's
            lin.weight.copy_(torch.from_numpy(W.T))
            lin.bias.copy_(torch.from_numpy(b))
        layers += [lin, nn.ReLU()]
        linears.append(lin)
    model = nn.Sequential(*layers[:-1])
    if problem.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=problem.lr, betas=problem.betas, eps=problem.eps)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=problem.lr)
    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    for rows in batches:
        rows = torch.from_numpy(rows)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
        loss.backward()
        opt.step()
    return [(lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy()) for lin in linears]


# ---- JAX jit -------------------------------------------------------------------------------------

_jax_steps = {}


def _jax_step(problem):
    """One jitted training step (loss, grad, update), compiled once per optimizer setting and batch shape."""
    key = (problem.optimizer, problem.lr, problem.betas, problem.eps)
    if key in _jax_steps:
        return _jax_steps[key]
    jax = harness.load_jax()
    jnp = jax.numpy
    lr, (b1, b2), eps = problem.lr, problem.betas, problem.eps

    def loss(params, x, y):
        h = x
        for W, b in params[:-1]:
            h = jax.nn.relu(h @ W + b)
        W, b = params[-1]
        logp = jax.nn.log_softmax(h @ W + b)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    grad = jax.grad(loss)

    def adam(params, m, v, step_size, root_bc2, x, y):
        g = grad(params, x, y)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        params = jax.tree.map(lambda p, m, v: p - step_size * (m / (jnp.sqrt(v) / root_bc2 + eps)), params, m, v)
        return params, m, v

    def gd(params, x, y):
        return jax.tree.map(lambda p, g: p - lr * g, params, grad(params, x, y))

    step = jax.jit(adam, donate_argnums=(0, 1, 2)) if problem.optimizer == "adam" else jax.jit(gd, donate_argnums=(0,))
    _jax_steps[key] = step
    return step


def run_jax(problem, batches):
    """The whole step under jax.jit (value_and_grad and the update fused by XLA), buffers donated."""
    jax = harness.load_jax()
    jnp = jax.numpy
    step = _jax_step(problem)
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in problem.init]
    x, y = problem.x, problem.y
    if problem.optimizer == "adam":
        m = jax.tree.map(jnp.zeros_like, params)
        v = jax.tree.map(jnp.zeros_like, params)
        (b1, b2), lr = problem.betas, problem.lr
        for t, rows in enumerate(batches, 1):
            # NOTE: bias corrections in float64 on the host, as torch and chainrule do:
            # 1 - 0.999^t in float32 is off by 5e-5 relative at t = 1.
            step_size, root_bc2 = np.float32(lr / (1 - b1**t)), np.float32(np.sqrt(1 - b2**t))
            params, m, v = step(params, m, v, step_size, root_bc2, x[rows], y[rows])
    else:
        for rows in batches:
            params = step(params, x[rows], y[rows])
    return [(np.asarray(W), np.asarray(b)) for W, b in jax.block_until_ready(params)]


# ---- the rows ------------------------------------------------------------------------------------


def _installed(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def rows(problem, warm_batches, wanted=(), quiet=False):
    """(Row candidates, notes) for a problem; ``warm_batches`` is the warm-up's batch list.

    ``wanted``: lower-case parts of row names to keep (all when empty).

    Nothing is imported here (torch and jax load when their row first runs), so a
    memory probe that builds these rows holds only its own library.
    """
    R = harness.Row
    say = (lambda msg: None) if quiet else print
    batches = problem.batches
    out = [R("chainrule", lambda: run_chainrule(problem, batches), lambda: run_chainrule(problem, warm_batches))]
    notes = []
    fit_wanted = harness.keep([R("chainrule fit compile=True", None)], wanted)
    if hasattr(cr, "fit") and fit_wanted:
        same = True if quiet else fit_uses_order(problem)
        notes.append(
            "cr.fit's own shuffling gives the benchmark's batch order (checked on one epoch's labels)"
            if same
            else "cr.fit shuffles in its own order here: its rows run on their own batches "
            "and their final loss is not checked"
        )
        fit_rows = [("chainrule fit", {})]
        if fit_has("compile"):
            fit_rows.append(("chainrule fit compile=True", {"compile": True}))
        else:
            say("skipped chainrule fit compile=True: cr.fit has no 'compile' keyword yet")
        for name, extra in fit_rows:
            row = R(
                name,
                lambda extra=extra: run_chainrule_fit(problem, **extra),
                lambda extra=extra: run_chainrule_fit(problem, epochs=1, **extra),
            )
            row.unchecked = not same
            out.append(row)
    out.append(R("NumPy by hand", lambda: run_numpy(problem, batches), lambda: run_numpy(problem, warm_batches)))
    if not _installed("torch"):
        say("skipped PyTorch eager: torch is not importable (make bench installs it from the [bench] extra)")
    else:
        out.append(R("PyTorch eager", lambda: run_torch(problem, batches), lambda: run_torch(problem, warm_batches)))
    if not _installed("jax"):
        say("skipped JAX jit: jax is not installed (.venv/bin/pip install jax jaxlib adds the row)")
    else:
        out.append(R("JAX jit", lambda: run_jax(problem, batches), lambda: run_jax(problem, warm_batches)))
    return harness.keep(out, wanted), notes


def measure(problem, name, warm_batches, wanted, repeats):
    """Time the rows that match ``wanted`` and score their final parameters: (results, notes), or None."""
    candidates, notes = rows(problem, warm_batches, wanted)
    timed = harness.try_rows(candidates)
    if not timed:
        print(f"{name}: no implementation matches {', '.join(wanted)}")
        return None
    results = harness.measure(timed, repeats)
    for row in timed:
        results[row.name]["unchecked"] = getattr(row, "unchecked", False)
    score(problem, results)
    return results, notes


def check(problem, results, rtol, gap_limit):
    """Final losses (float64 referee) and parameter gaps against the first checked row; mismatch messages."""
    checked = [n for n, r in results.items() if not r.get("unchecked")]
    problems = []
    if not checked:
        return problems
    ref_name = checked[0]
    ref = results[ref_name]
    for name in checked[1:]:
        r = results[name]
        if not np.isclose(r["loss"], ref["loss"], rtol=rtol, atol=0):
            problems.append(f"final loss of {name} is {r['loss']!r}, {ref_name} gives {ref['loss']!r} (rtol {rtol:g})")
        if not r["gap"] <= gap_limit:
            problems.append(
                f"parameters of {name} differ from {ref_name}'s by {r['gap']:.3g} of the distance "
                f"training moved them (limit {gap_limit:g})"
            )
    return problems


def score(problem, results):
    """Add final loss and parameter gap (against the first row) to every result."""
    names = list(results)
    ref = next((results[n]["result"] for n in names if not results[n].get("unchecked")), None)
    for name in names:
        r = results[name]
        r["loss"] = final_loss(problem, r["result"])
        r["gap"] = displacement_gap(problem, r["result"], ref) if ref is not None else float("nan")
