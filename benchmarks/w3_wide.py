"""W3 "wide": a 784-512-512-10 ReLU network on random data, where the matrix products dominate.

8192 x 784 standard-normal float32 inputs and 8192 random labels in 0..9
(numpy.random.default_rng(SEED)), softmax cross-entropy, plain gradient
descent lr 0.01, batches of 256 (32 per epoch), 3 epochs = 96 steps =
24,576 training samples. Reported: training samples per second; the
machine's limit for this workload from timed NumPy matrix products of one
step's shapes, and each implementation's percentage of it; peak memory.
"""

from __future__ import annotations

import harness  # noqa: F401  (first: pins every library to one thread)

import json
import os
import subprocess
import sys
import time

import numpy as np

import classifier

NAME = "W3 wide"
REPEATS = 3
SEED = 0
ROWS, FEATURES, CLASSES = 8192, 784, 10
RTOL = 1e-3  # on the final training loss
GAP = 0.02  # on the parameters, relative to how far training moved them


def problem():
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((ROWS, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, ROWS).astype(np.int64)
    return classifier.Problem(
        x=x, y=y, sizes=(FEATURES, 512, 512, CLASSES), optimizer="gd", lr=0.01, batch_size=256, epochs=3, seed=SEED
    )


# ---- the machine's limit ---------------------------------------------------------------------


def gemms(p):
    """The matrix products of one training step, as (label, a, b) with the operands' real layouts.

    Forward a_k @ W_k per layer; backward g @ W^T (gradient for the layer's input) and a^T @ g
    (gradient for W) per layer, except the first layer's input gradient: the data needs none,
    and no implementation computes it (it is timed separately, for information).
    """
    rng = np.random.default_rng(1)
    B = p.batch_size
    acts = [rng.standard_normal((B, n), dtype=np.float32) for n in p.sizes[:-1]]
    Ws = [W for W, _ in p.init]
    outs = [rng.standard_normal((B, n), dtype=np.float32) for n in p.sizes[1:]]
    out = []
    for k, (a, W) in enumerate(zip(acts, Ws)):
        out.append((f"a{k}@W{k + 1} {a.shape}x{W.shape}", a, W))
    for k in range(len(Ws) - 1, -1, -1):
        a, W, g = acts[k], Ws[k], outs[k]
        out.append((f"a{k}^T@g{k + 1} {a.T.shape}x{g.shape}", a.T, g))
        if k:
            out.append((f"g{k + 1}@W{k + 1}^T {g.shape}x{W.T.shape}", g, W.T))
    first_input = (f"g1@W1^T {outs[0].shape}x{Ws[0].T.shape} (not needed)", outs[0], Ws[0].T)
    return out, first_input


def best_time(a, b, reps=30):
    """Best wall-clock seconds of ``a @ b`` (result buffer reused), after a warm-up."""
    out = a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return best


def limit(p):
    """(samples per second if a step were only its GEMMs at NumPy's best speed, [(label, seconds, GFLOP/s)])."""
    products, extra = gemms(p)
    parts = []
    for label, a, b in products + [extra]:
        s = best_time(a, b)
        parts.append((label, s, 2 * a.shape[0] * a.shape[1] * b.shape[1] / s / 1e9))
    total = sum(s for _, s, _ in parts[:-1])
    return p.batch_size / total, parts


# ---- peak memory, one subprocess per implementation ---------------------------------------------


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    return None


def memory_child(row_name):
    """In a fresh process: one warm-up of 2 steps, reset the peak, train once; print the peaks as JSON."""
    p = problem()
    rows, _ = classifier.rows(p, p.batches[:2], quiet=True)
    row = next(r for r in rows if r.name == row_name)
    row.warmup()
    before = _status("VmHWM")  # imports, data and warm-up
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets this process's peak resident set (VmHWM), Linux >= 4.0
        reset = True
    except OSError:
        reset = False
    base = _status("VmRSS")
    row.run()
    after = _status("VmHWM")
    print(json.dumps({"base_kb": base, "hwm_kb": after, "reset": reset, "process_kb": max(before, after)}))


def memory(names):
    """{row name: (MB above the pre-training baseline, whole-process peak MB)}, or messages why not."""
    out = {}
    for name in names:
        cmd = [
            sys.executable,
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py"),
            "--memory-child",
            name,
        ]
        # NOTE: a fixed mmap threshold stops glibc from keeping freed large arrays in its heap
        # (its default threshold grows with use), so the peak counts live arrays, not the allocator's cache.
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        try:
            m = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            out[name] = f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
            continue
        delta = (m["hwm_kb"] - m["base_kb"]) / 1024 if m["reset"] else float("nan")
        out[name] = (delta, m["process_kb"] / 1024)
    return out


# ---- the workload ------------------------------------------------------------------------------------


def run(wanted, repeats, with_memory=True):
    p = problem()
    measured = classifier.measure(p, NAME, p.batches[:2], wanted, repeats or REPEATS)
    if measured is None:
        return []
    results, notes = measured
    top, parts = limit(p)
    mem = memory(list(results)) if with_memory else {}
    print(table(p, results, repeats or REPEATS, top, mem))
    print()
    print(
        "GEMMs of one step (best of 30, NumPy float32, 1 thread): "
        + "; ".join(f"{label} {s * 1e3:.2f} ms ({gf:.0f} GFLOP/s)" for label, s, gf in parts)
    )
    print(
        f"Limit: {p.batch_size} samples / {sum(s for _, s, _ in parts[:-1]) * 1e3:.2f} ms of GEMMs "
        f"= {top:,.0f} samples/s."
    )
    for name, m in mem.items():
        if isinstance(m, str):
            print(f"Note: peak memory of {name}: {m}")
    for note in notes:
        print(f"Note: {note}.")
    problems = classifier.check(p, results, RTOL, GAP)
    if not problems:
        print(f"All final losses agree (rtol {RTOL:g}) and all parameters (gap below {GAP:g}).")
    cr_mem, torch_mem = mem.get("chainrule"), mem.get("PyTorch eager")
    if isinstance(cr_mem, tuple) and isinstance(torch_mem, tuple):
        verdict = "meets" if cr_mem[0] <= torch_mem[0] else "misses"
        print(
            f"Memory target (chainrule's training peak at most PyTorch's): {verdict} it "
            f"({cr_mem[0]:.0f} MB against {torch_mem[0]:.0f} MB)."
        )
    return [f"{NAME}: {m}" for m in problems]


def table(p, results, repeats, top, mem):
    torch_row = results.get("PyTorch eager")
    ref = harness.median_best(torch_row["seconds"]) if torch_row else None
    body = []
    for name, r in results.items():
        med, best = harness.median_best(r["seconds"])
        m = mem.get(name)
        peak = (f"{m[0]:.0f}", f"{m[1]:.0f}") if isinstance(m, tuple) else ("n/a", "n/a")
        body.append(
            [
                name,
                f"{p.samples / med:,.0f}",
                f"{p.samples / best:,.0f}",
                f"{100 * p.samples / best / top:.0f}%",
                harness.ratio(med, ref[0]) if ref else "n/a",
                harness.ratio(best, ref[1]) if ref else "n/a",
                f"{max(r['cpu']):.2f}",
                *peak,
                f"{r['loss']:.6f}",
                f"{r['gap']:.1e}",
            ]
        )
    head = [
        "implementation",
        "median samples/s",
        "best samples/s",
        "best % of GEMM limit",
        "median time / PyTorch",
        "best time / PyTorch",
        "cpu/wall",
        "training peak MB",
        "process peak MB",
        "final loss",
        "param gap",
    ]
    return (
        f"{NAME}: 8192x784 random, MLP 784-512-512-10 ReLU, cross-entropy, gradient descent lr 0.01, "
        f"batch 256, {p.epochs} epochs ({len(p.batches)} steps), float32, {repeats} repeat{'s' * (repeats != 1)}; "
        f"GEMM limit {top:,.0f} samples/s\n\n" + harness.markdown(head, body, right=range(1, 11))
    )
