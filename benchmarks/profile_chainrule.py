"""Where chainrule's time goes: ``run.py --profile [--only W2,W3]``.

For W2 and W3 (the hand loop of the ``chainrule`` row, one run):

- phases per step: forward (graph recording), backward, optimizer step;
- per primitive: time inside its NumPy forward and inside its VJPs, counts,
  and every array whose dtype is not the model's (float64 upcasts);
- the engine's own Python (phase time minus time inside the primitives);
- the same step's GEMMs alone, at NumPy's speed, for scale;
- cProfile's top functions.

W1 keeps its own phase table and cProfile (``w1_lessons.profile``).
"""

from __future__ import annotations

import harness  # noqa: F401  (first: pins every library to one thread)

import cProfile
import pstats
import time
from collections import defaultdict

import numpy as np

from chainrule.losses import cross_entropy
from chainrule.ops import REGISTRY

import classifier


class OpMeter:
    """Wraps every primitive's forward and VJPs with a timer and a dtype check; ``restore()`` undoes it."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.upcasts = defaultdict(int)
        self.saved = {}

    def _wrap(self, key, fn):
        def timed(*args, **kw):
            t0 = time.perf_counter()
            out = fn(*args, **kw)
            self.seconds[key] += time.perf_counter() - t0
            self.calls[key] += 1
            if isinstance(out, np.ndarray) and out.dtype.kind == "f" and out.dtype != self.dtype:
                self.upcasts[(key, str(out.dtype), out.shape)] += 1
            return out

        return timed

    def install(self):
        for name, op in REGISTRY.items():
            self.saved[name] = (op.fwd, op.vjps)
            op.fwd = self._wrap((name, "forward"), op.fwd)
            if isinstance(op.vjps, tuple):
                op.vjps = tuple(None if v is None else self._wrap((name, f"vjp {i}"), v) for i, v in enumerate(op.vjps))
        return self

    def restore(self):
        for name, (fwd, vjps) in self.saved.items():
            REGISTRY[name].fwd, REGISTRY[name].vjps = fwd, vjps

    def total(self, phase):
        return sum(s for (name, kind), s in self.seconds.items() if (kind == "forward") == (phase == "forward"))


def phases(problem):
    """Seconds per phase of one run of the chainrule row's loop, and the final model."""
    model, linears = classifier._cr_model(problem)
    opt = classifier._cr_optimizer(problem, model.parameters())
    x, y = problem.x, problem.y
    spent = defaultdict(float)
    clock = time.perf_counter
    for rows in problem.batches:
        t0 = clock()
        xb, yb = x[rows], y[rows]
        t1 = clock()
        opt.zero_grad()
        loss = cross_entropy(model(xb), yb)
        t2 = clock()
        loss.backward()
        t3 = clock()
        opt.step()
        t4 = clock()
        spent["batch gather"] += t1 - t0
        spent["forward"] += t2 - t1
        spent["backward"] += t3 - t2
        spent["optimizer step"] += t4 - t3
    return spent, model, opt


def dtype_audit(model, opt, dtype):
    """Messages about parameters, gradients and optimizer state not in the model's dtype."""
    out = []
    for name, p in model.named_parameters():
        for what, a in (("value", p.data), ("grad", p.grad)):
            if a is not None and a.dtype != dtype:
                out.append(f"{name} {what} is {a.dtype}")
    for i, state in enumerate(opt.state):
        for k, a in state.items():
            if isinstance(a, np.ndarray) and a.dtype != dtype:
                out.append(f"optimizer state {k} of parameter {i} is {a.dtype}")
    return out


def profile_classifier(label, problem, w3=None):
    steps = len(problem.batches)
    phases(problem)  # warm-up
    best = None
    for _ in range(3):
        spent, _, _ = phases(problem)
        if best is None or sum(spent.values()) < sum(best.values()):
            best = spent
    meter = OpMeter(np.float32).install()
    try:
        metered, model, opt = phases(problem)
    finally:
        meter.restore()
    total = sum(best.values())
    print(
        f"### {label}: chainrule row, one run of {steps} steps, best of 3: {total:.3f} s "
        f"({total / steps * 1e6:.0f} us/step, {problem.samples / total:,.0f} samples/s)\n"
    )
    rows = [[k, f"{v / steps * 1e6:.0f}", f"{100 * v / total:.0f}%"] for k, v in best.items()]
    print(harness.markdown(["phase", "us/step", "share"], rows, right=(1, 2)))
    fwd_in, bwd_in = meter.total("forward"), meter.total("backward")
    m_total = sum(metered.values())
    print(
        f"\nWith every primitive timed (adds ~1 us per call; this run {m_total:.3f} s): inside primitives' "
        f"forwards {fwd_in / steps * 1e6:.0f} us/step of the forward's {metered['forward'] / steps * 1e6:.0f}; "
        f"inside VJPs {bwd_in / steps * 1e6:.0f} us/step of the backward's {metered['backward'] / steps * 1e6:.0f}. "
        f"The rest is the engine's Python (graph recording, topological order, accumulation, unbroadcast "
        f"checks): about {(metered['forward'] - fwd_in + metered['backward'] - bwd_in) / steps * 1e6:.0f} us/step.\n"
    )
    ops = sorted(meter.seconds.items(), key=lambda kv: -kv[1])
    rows = [
        [f"{name} {kind}", meter.calls[(name, kind)] // steps, f"{s / steps * 1e6:.1f}", f"{100 * s / m_total:.1f}%"]
        for (name, kind), s in ops
        if s / m_total > 0.002
    ]
    print(harness.markdown(["primitive", "calls/step", "us/step", "share of run"], rows, right=(1, 2, 3)))
    gemm = sum(s for (name, kind), s in meter.seconds.items() if name in ("matmul", "linear"))
    print(
        f"\nmatmul/linear forwards and VJPs (GEMMs plus the bias add and its sum): {gemm / steps * 1e6:.0f} us/step, "
        f"{100 * gemm / m_total:.0f}% of the run."
    )
    if w3 is not None:
        top, parts = w3.limit(problem)
        print(
            f"The step's GEMMs alone at NumPy's best: {problem.batch_size / top * 1e6:.0f} us/step "
            f"({100 * problem.batch_size / top / (total / steps):.0f}% of chainrule's step)."
        )
    ups = [f"{key[0]} {key[1]} -> {dt} {shape} x{n}" for (key, dt, shape), n in meter.upcasts.items()]
    audit = dtype_audit(model, opt, np.float32)
    print(
        "float32 end to end: "
        + (
            "yes, no primitive returned float64 and parameters, gradients and optimizer state are float32"
            if not ups and not audit
            else "NO: " + "; ".join(ups + audit)
        )
    )
    prof = cProfile.Profile()
    prof.runcall(phases, problem)
    print("\ncProfile of one run (top 15 by own time):")
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def run(workloads, args):
    for name in workloads:
        print(f"\n## {name} profile\n", flush=True)
        if name == "W1":
            import w1_lessons

            w1_lessons.profile(args.iters, args.repeats or 5)
        elif name == "W2":
            import w2_digits

            profile_classifier("W2 digits", w2_digits.problem())
        elif name == "W3":
            import w3_wide

            profile_classifier("W3 wide", w3_wide.problem(), w3_wide)
        else:
            print(f"{name}: no profile (its chainrule rows are W1's engine, vectorized or looped)")
