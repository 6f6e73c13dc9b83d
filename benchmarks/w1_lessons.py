"""W1 "lessons": the lessons' 7-parameter network fitted to the dosage data.

One input, two SoftPlus nodes, one output, fitted by full-batch plain gradient
descent on the SSR, float64, learning rate 0.1, all seven parameters, from
w1=2, b1=0, w2=-2, b2=0, w3=1, w4=1, b3=0.

Each implementation runs the same loop; every repeat is timed whole and
reported per iteration. The final SSR (at the parameters after the last
update) and the parameters must agree across implementations.
"""

from __future__ import annotations

import harness  # noqa: F401  (first: pins every library to one thread before NumPy is imported)

import gc
import inspect
import statistics
import time
import warnings

import numpy as np

import chainrule as cr

torch = harness.load_torch()  # None without torch: the benchmark still runs, without the PyTorch row

DOSAGE = [0.0, 0.5, 1.0]
OBSERVED = [0.0, 1.0, 0.0]
NAMES = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")
START = {"w1": 2.0, "b1": 0.0, "w2": -2.0, "b2": 0.0, "w3": 1.0, "w4": 1.0, "b3": 0.0}
LR = 0.1
RTOL = 1e-9
SSR_ATOL = 1e-12  # the SSR ends near 7e-15, where only rounding is left; the parameters carry the check


# ---- chainrule: scalar tensors and its ops ------------------------------------------------


def cr_forward(p, x):
    """Predicted = w3 softplus(x w1 + b1) + w4 softplus(x w2 + b2) + b3."""
    y1 = cr.softplus(x * p["w1"] + p["b1"])
    y2 = cr.softplus(x * p["w2"] + p["b2"])
    return p["w3"] * y1 + p["w4"] * y2 + p["b3"]


def cr_ssr(predicted, observed):
    return ((observed - predicted) ** 2).sum()


class _Dosage:
    """The network on plain tensors, with the interface of chainrule.nn.DosageNetwork (call, parameters())."""

    def __init__(self, start):
        self.p = {n: cr.tensor(start[n], requires_grad=True) for n in NAMES}

    def __call__(self, x):
        return cr_forward(self.p, x)

    def parameters(self):
        return list(self.p.values())


class _GradientDescent:
    """p <- p - lr dL/dp on .data, with the interface of chainrule.optim.GradientDescent (zero_grad, step)."""

    def __init__(self, params, lr):
        self.params, self.lr = params, lr

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        for p in self.params:
            p.data -= self.lr * p.grad


def cr_train(model, opt, x, observed, iters):
    """The training loop, written against the model/optimizer interface: the library's classes drop in."""
    for _ in range(iters):
        opt.zero_grad()
        loss = cr_ssr(model(x), observed)
        loss.backward()
        opt.step()
    with cr.no_grad():
        return cr_ssr(model(x), observed).item()


def run_chainrule(iters):
    x, observed = cr.tensor(DOSAGE), cr.tensor(OBSERVED)
    model = _Dosage(START)
    opt = _GradientDescent(model.parameters(), LR)
    loss = cr_train(model, opt, x, observed, iters)
    return loss, {n: model.p[n].item() for n in NAMES}


def _library():
    """(DosageNetwork class, GradientDescent class, ssr function) from chainrule, or None when missing."""
    try:
        from chainrule import nn, optim
    except ImportError:
        return None
    try:
        from chainrule.losses import ssr
    except ImportError:
        ssr = cr_ssr
    if not hasattr(nn, "DosageNetwork") or not hasattr(optim, "GradientDescent"):
        return None
    return nn.DosageNetwork, optim.GradientDescent, ssr


def _kwargs_for(fn, wanted):
    """Keyword arguments of ``wanted`` ({alias tuple: value}) under the names ``fn`` accepts."""
    accepted = inspect.signature(fn).parameters
    out = {}
    for aliases, value in wanted.items():
        for a in aliases:
            if a in accepted:
                out[a] = value
                break
    return out


def _library_model(cls):
    """A DosageNetwork at START, and its parameters by name."""
    given = all(n in inspect.signature(cls).parameters for n in NAMES)
    model = cls(**START) if given else cls()
    named = dict(model.named_parameters())
    for n in NAMES:
        p = named.get(n)
        if p is None:
            raise AttributeError(f"DosageNetwork has no parameter {n!r} (has {sorted(named)})")
        if not given:
            p.data = np.asarray(START[n], dtype=np.float64).reshape(np.shape(p.data))
    return model, named


def _final(model, named, ssr, x, observed):
    with cr.no_grad():
        loss = ssr(model(x), observed).item()
    return loss, {n: float(np.asarray(named[n].data).item()) for n in NAMES}


def run_chainrule_nn(iters):
    """The same loop with chainrule.nn.DosageNetwork, chainrule.optim.GradientDescent and chainrule.losses.ssr."""
    network, gradient_descent, ssr = _library()
    x, observed = cr.tensor(DOSAGE), cr.tensor(OBSERVED)
    model, named = _library_model(network)
    params = list(model.parameters())
    kw = _kwargs_for(gradient_descent, {("lr", "learning_rate"): LR, ("params", "parameters"): params})
    opt = gradient_descent(**kw) if len(kw) == 2 else gradient_descent(params, **kw)
    for _ in range(iters):
        opt.zero_grad()
        loss = ssr(model(x), observed)
        loss.backward()
        opt.step()
    return _final(model, named, ssr, x, observed)


def run_chainrule_fit(iters, compile=False):
    """chainrule.fit on a DosageNetwork: the library's own loop (with its History), all seven parameters."""
    network, gradient_descent, ssr = _library()
    x, observed = cr.tensor(DOSAGE), cr.tensor(OBSERVED)
    model, named = _library_model(network)
    kw = _kwargs_for(
        cr.fit,
        {
            ("max_iter", "max_iters", "iterations"): iters,
            ("tol", "threshold"): 0.0,
            ("loss",): "ssr",
            ("lr", "learning_rate"): LR,
        },
    )
    if "optimizer" in inspect.signature(cr.fit).parameters:
        kw["optimizer"] = gradient_descent(**_kwargs_for(gradient_descent, {("lr", "learning_rate"): LR}))
    if compile:
        kw["compile"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reaching max_iter warns; here it is the point
        cr.fit(model, x, observed, **kw)
    return _final(model, named, ssr, x, observed)


# ---- hand-written NumPy, gradients by the chain rule --------------------------------------


def _softplus(z):
    return np.logaddexp(0.0, z)


def run_numpy(iters):
    x, observed = np.array(DOSAGE), np.array(OBSERVED)
    w1, b1, w2, b2, w3, w4, b3 = (START[n] for n in NAMES)
    for _ in range(iters):
        x1 = x * w1 + b1
        x2 = x * w2 + b2
        y1, y2 = _softplus(x1), _softplus(x2)
        predicted = w3 * y1 + w4 * y2 + b3
        d_pred = -2.0 * (observed - predicted)  # dSSR/dPredicted_i
        d_x1 = d_pred * w3 * np.exp(x1 - y1)  # ... * w3 * softplus'(x1_i)
        d_x2 = d_pred * w4 * np.exp(x2 - y2)
        g_w1, g_b1 = (d_x1 * x).sum(), d_x1.sum()
        g_w2, g_b2 = (d_x2 * x).sum(), d_x2.sum()
        g_w3, g_w4, g_b3 = (d_pred * y1).sum(), (d_pred * y2).sum(), d_pred.sum()
        w1, b1, w2, b2 = w1 - LR * g_w1, b1 - LR * g_b1, w2 - LR * g_w2, b2 - LR * g_b2
        w3, w4, b3 = w3 - LR * g_w3, w4 - LR * g_w4, b3 - LR * g_b3
    predicted = w3 * _softplus(x * w1 + b1) + w4 * _softplus(x * w2 + b2) + b3
    params = dict(zip(NAMES, (w1, b1, w2, b2, w3, w4, b3)))
    return float(((observed - predicted) ** 2).sum()), {n: float(v) for n, v in params.items()}


# ---- PyTorch eager ---------------------------------------------------------------------


def run_torch(iters):
    F = torch.nn.functional
    x = torch.tensor(DOSAGE, dtype=torch.float64)
    observed = torch.tensor(OBSERVED, dtype=torch.float64)
    p = {n: torch.tensor(START[n], dtype=torch.float64, requires_grad=True) for n in NAMES}

    def forward():
        y1 = F.softplus(x * p["w1"] + p["b1"])
        y2 = F.softplus(x * p["w2"] + p["b2"])
        return p["w3"] * y1 + p["w4"] * y2 + p["b3"]

    params = list(p.values())
    for _ in range(iters):
        for t in params:
            t.grad = None
        loss = ((observed - forward()) ** 2).sum()
        loss.backward()
        with torch.no_grad():
            for t in params:
                t -= LR * t.grad
    with torch.no_grad():
        loss = ((observed - forward()) ** 2).sum().item()
    return loss, {n: p[n].item() for n in NAMES}


# ---- timing and report --------------------------------------------------------------------


def implementations(wanted=()):
    """(row name, run function) for every implementation available here; prints why any is skipped.

    ``wanted``: lower-case parts of row names to keep (all rows when empty).
    """
    rows = [("chainrule", run_chainrule)]
    library = []
    if _library() is not None:
        library.append(("chainrule nn+optim", run_chainrule_nn))
        if hasattr(cr, "fit"):
            library.append(("chainrule fit", run_chainrule_fit))
            if "compile" in inspect.signature(cr.fit).parameters:
                library.append(("chainrule fit compile=True", lambda iters: run_chainrule_fit(iters, compile=True)))
    for name, run in library:
        try:
            run(2)  # these rows call an API that is still growing: skip, don't fail, when it moved
        except Exception as e:
            print(f"skipped {name}: {type(e).__name__}: {e}")
            continue
        rows.append((name, run))
    rows.append(("NumPy by hand", run_numpy))
    if torch is None:
        print("skipped PyTorch: torch is not importable (make bench installs it from the [bench] extra)")
    else:
        rows.append(("PyTorch eager", run_torch))
    return [(name, run) for name, run in rows if not wanted or any(w in name.lower() for w in wanted)]


def time_once(run, iters):
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()  # as timeit does: collections land at random in one row or another
    try:
        t0 = time.perf_counter()
        loss, params = run(iters)
        return time.perf_counter() - t0, loss, params
    finally:
        if gc_was:
            gc.enable()


def measure(rows, iters, repeats):
    """Per row: per-iteration times in microseconds, final loss, final parameters.

    Repeats go round-robin over the rows, so drift of the machine hits all rows alike.
    """
    for _, run in rows:
        run(min(iters, 50))  # warm-up: imports, caches, torch's first-call set-up
    results = {name: {"us": []} for name, _ in rows}
    for _ in range(repeats):
        for name, run in rows:
            seconds, loss, params = time_once(run, iters)
            r = results[name]
            r["us"].append(seconds / iters * 1e6)
            r["loss"], r["params"] = loss, params
    return results


def table(results, iters, repeats):
    torch_row = results.get("PyTorch eager")
    ref_med = statistics.median(torch_row["us"]) if torch_row else None
    ref_best = min(torch_row["us"]) if torch_row else None
    lines = [
        f"W1 lessons: 7 parameters, 3 data points, {iters} full-batch gradient-descent iterations, "
        f"float64, {repeats} repeat{'s' * (repeats != 1)}",
        "",
        "| implementation | median us/iter | best us/iter | median / PyTorch median | best / PyTorch best "
        "| final SSR |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        med, best = statistics.median(r["us"]), min(r["us"])
        ratios = (f"{med / ref_med:.2f}x", f"{best / ref_best:.2f}x") if torch_row else ("n/a", "n/a")
        lines.append(f"| {name} | {med:.1f} | {best:.1f} | {ratios[0]} | {ratios[1]} | {r['loss']:.6g} |")
    return "\n".join(lines)


def check(results):
    """Mismatch messages: every final loss and parameter must agree with the first row's."""
    names = list(results)
    first = results[names[0]]
    problems = []
    for name in names[1:]:
        r = results[name]
        if not np.isclose(r["loss"], first["loss"], rtol=RTOL, atol=SSR_ATOL):
            problems.append(f"final SSR of {name} is {r['loss']!r}, {names[0]} gives {first['loss']!r}")
        for n in NAMES:
            a, b = r["params"][n], first["params"][n]
            if not np.isclose(a, b, rtol=RTOL, atol=1e-12):
                problems.append(f"{n} of {name} is {a!r}, {names[0]} gives {b!r}")
    return problems


def profile(iters, repeats):
    """Where an iteration of the chainrule row goes: wall-clock phases (best of repeats), then cProfile."""
    x, observed = cr.tensor(DOSAGE), cr.tensor(OBSERVED)
    model = _Dosage(START)
    opt = _GradientDescent(model.parameters(), LR)

    def forward():
        return cr_ssr(model(x), observed)

    def forward_no_grad():
        with cr.no_grad():
            return forward()

    def forward_backward():
        opt.zero_grad()
        forward().backward()

    def phase(fn):
        best = float("inf")
        for _ in range(repeats):
            gc.disable()
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            best = min(best, time.perf_counter() - t0)
            gc.enable()
        return best / iters * 1e6

    fwd, bwd = phase(forward), phase(forward_backward)
    times = {
        "forward, recording the graph (13 ops)": fwd,
        "forward under no_grad": phase(forward_no_grad),
        "backward (forward + backward - forward)": bwd - fwd,
        "update of 7 parameters (step)": phase(opt.step),
    }
    print(f"chainrule W1 phases, us per iteration, best of {repeats} x {iters}:")
    for name, us in times.items():
        print(f"  {name:42s} {us:7.1f}")
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(run_chainrule, iters)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def run(wanted, iters, repeats):
    """Measure, print the table; return mismatch messages (empty when every row agrees)."""
    rows = implementations(wanted)
    if not rows:
        print(f"W1: no implementation matches {', '.join(wanted)}")
        return []
    results = measure(rows, iters, repeats)
    print(table(results, iters, repeats))
    problems = check(results)
    if not problems:
        print(f"All final SSRs and parameters agree (rtol {RTOL:g}).")
    return [f"W1: {p}" for p in problems]
