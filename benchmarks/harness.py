"""What every workload shares: one thread per library, timing, Markdown tables, the machine line.

Import this module before NumPy, torch or JAX: it pins their thread pools to
one thread through environment variables, which they read only at import.
"""

from __future__ import annotations

import os

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
for _var in THREAD_VARS:
    os.environ[_var] = "1"
# XLA (JAX) ignores the variables above: its CPU thread pools take flags.
_XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
if _XLA_ONE_THREAD not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _XLA_ONE_THREAD).strip()

import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import chainrule as cr  # noqa: E402


def pin_to_one_core():
    """Keep this process (and the threads and subprocesses it starts) on one logical core.

    NOTE: the environment variables above keep each library to one worker thread;
    the affinity also catches any helper thread a library starts anyway, so no
    row can borrow the second core. Returns the core, or None where unsupported.
    """
    try:
        core = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return core
    except (AttributeError, OSError):
        return None


_torch = _jax = None


def load_torch():
    """torch with one intra-op thread, or None when it is not installed."""
    global _torch
    if _torch is None:
        try:
            import torch
        except ImportError:
            return None
        torch.set_num_threads(1)
        _torch = torch
    return _torch


def load_jax():
    """jax (CPU, float32 by default), or None when it is not installed."""
    global _jax
    if _jax is None:
        try:
            import jax
        except ImportError:
            return None
        _jax = jax
    return _jax


# ---- timing -----------------------------------------------------------------------------


class Row:
    """One implementation of a workload: ``run()`` does a whole timed run and returns its result.

    ``repeats`` overrides the workload's count (fewer for slow rows); ``scale``
    multiplies each measured time (extrapolation from a sample); ``note`` is
    printed under the table.
    """

    def __init__(self, name, run, warmup=None, repeats=None, scale=1.0, note=None):
        self.name, self.run, self.warmup = name, run, warmup or run
        self.repeats, self.scale, self.note = repeats, scale, note


def timed(fn, gc_off):
    """(seconds, cpu seconds, result) of one call of ``fn``; garbage from earlier rows collected first."""
    gc.collect()
    gc_was = gc.isenabled()
    if gc_off:
        gc.disable()
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        return time.perf_counter() - t0, time.process_time() - c0, result
    finally:
        if gc_was:
            gc.enable()


def measure(rows, repeats, gc_off=False):
    """{row name: {"seconds": [...], "cpu": [...], "result": last result}}, after one untimed warm-up per row.

    Repeats go round-robin over the rows, so a slow spell of the machine hits
    every row alike.
    """
    for row in rows:
        row.warmup()
    results = {row.name: {"seconds": [], "cpu": [], "result": None} for row in rows}
    for r in range(max(row.repeats or repeats for row in rows)):
        for row in rows:
            if r >= (row.repeats or repeats):
                continue
            seconds, cpu, result = timed(row.run, gc_off)
            out = results[row.name]
            out["seconds"].append(seconds * row.scale)
            out["cpu"].append(cpu / seconds if seconds else 1.0)
            out["result"] = result
    return results


def try_rows(candidates):
    """The rows whose warm-up runs; prints why any other is skipped (APIs that are still growing)."""
    rows = []
    for row in candidates:
        try:
            row.warmup()
        except Exception as e:  # noqa: BLE001  (any failure of a moving API means: skip this row)
            print(f"skipped {row.name}: {type(e).__name__}: {e}")
            continue
        rows.append(row)
    return rows


def keep(rows, wanted):
    """Rows whose lower-case name contains one of ``wanted`` (all rows when it is empty)."""
    return [r for r in rows if not wanted or any(w in r.name.lower() for w in wanted)]


# ---- report -------------------------------------------------------------------------------


def markdown(head, rows, right=()):
    """A Markdown table; columns whose index is in ``right`` are right-aligned."""
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def median_best(seconds):
    return statistics.median(seconds), min(seconds)


def ratio(a, b):
    """a / b as "0.58x"; small ratios keep two significant digits ("0.0015x")."""
    if not b:
        return "n/a"
    r = a / b
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def _version(package):
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_line():
    torch = _torch.__version__ if _torch is not None else _version("torch")
    jax = _version("jax")
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = [
        platform.platform(),
        f"CPU {cpu} ({os.cpu_count()} logical cores, 1 thread used)",
        f"Python {platform.python_version()}",
        f"NumPy {np.__version__}",
        f"torch {torch}" if torch else "torch not installed",
        f"jax {jax}" if jax else "jax not installed",
        f"chainrule {cr.__version__}",
    ]
    return "Machine: " + "; ".join(parts)
