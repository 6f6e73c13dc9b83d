"""Side-by-side timing of chainrule against hand-written NumPy, PyTorch and JAX.

Workloads (one module each, beside this file):

- W1 lessons  (w1_lessons.py):  the lessons' 7-parameter network, 1000 iterations, us per iteration
- W2 digits   (w2_digits.py):   64-128-64-10 ReLU MLP on scikit-learn's digits, Adam, samples per second
- W3 wide     (w3_wide.py):     784-512-512-10 ReLU MLP, gradient descent, samples per second,
                                % of the machine's GEMM limit, peak memory
- W4 restarts (w4_restarts.py): W1's network from 1000 random starts, total seconds
- W5 data     (w5_data.py):     reading a 200,000-row CSV / Parquet file, and `chainrule fit` end to end
                                against scikit-learn and PyTorch; then 10^5 and 10^6 rows
- W6 sklearn   (sklearn_datasets.py): chainrule.sklearn's MLP against scikit-learn's on five bundled data
                                sets, 5-fold CV: scores and the fit-time ratio (about 40 s)

Every implementation of a workload starts from the same parameters and sees the
same data in the same order; their final losses must agree, else the script
prints MISMATCH and exits 1 (after running everything).

    .venv/bin/python benchmarks/run.py [--only W1,W3] [--only W2,pytorch] [--repeats 3] [--iters 1000]
                                       [--profile] [--no-memory] [--quick]
"""

from __future__ import annotations

import harness  # first: pins every library to one thread before NumPy is imported

import argparse  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6")


def split_only(only):
    """(workloads, row-name parts) from --only: 'W1,W3' picks workloads, other words pick rows."""
    words = [w.strip() for w in only.split(",") if w.strip()]
    workloads = [w.upper() for w in words if re.fullmatch(r"[wW]\d+", w)]
    rows = [w.lower() for w in words if not re.fullmatch(r"[wW]\d+", w)]
    return workloads, rows


def run_workload(name, rows, args):
    """Run one workload; return its mismatch messages."""
    print(f"\n## {name}\n", flush=True)
    if name == "W1":
        import w1_lessons

        return w1_lessons.run(rows, args.iters, args.repeats or 5)
    if name == "W2":
        import w2_digits

        return w2_digits.run(rows, args.repeats)
    if name == "W3":
        import w3_wide

        return w3_wide.run(rows, args.repeats, with_memory=not args.no_memory)
    if name == "W4":
        import w4_restarts

        return w4_restarts.run(rows, args.repeats)
    if name == "W5":
        import w5_data

        return w5_data.run(rows, args.repeats, quick=args.quick)
    import sklearn_datasets

    return sklearn_datasets.run(rows, args.repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per implementation (default per workload: W1 5, W2 5, W3 3, W4 3, W5 3; W4's sampled loops 2)",
    )
    parser.add_argument(
        "--iters", type=int, default=1000, help="W1's gradient-descent iterations per run (default 1000)"
    )
    parser.add_argument(
        "--only",
        default="",
        metavar="NAMES",
        help="comma-separated workloads (W1..W6) and/or parts of row names, e.g. 'W1,W3' or "
        "'W2,chainrule,pytorch' (default everything)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="where chainrule's time goes in the chosen workloads (W1, W2, W3; default all three), then stop",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip W3's peak-memory subprocesses")
    parser.add_argument(
        "--quick", action="store_true", help="W5 on 20,000 rows, once, without the 10^5 and 10^6 rows: does it run?"
    )
    parser.add_argument("--memory-child", metavar="ROW", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (args.repeats is not None and args.repeats < 1) or args.iters < 1:
        parser.error(f"--repeats and --iters must be at least 1, got {args.repeats} and {args.iters}")
    core = harness.pin_to_one_core()
    if args.memory_child:
        import w3_wide

        w3_wide.memory_child(args.memory_child)
        return 0
    workloads, rows = split_only(args.only)
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"--only names unknown workload(s) {unknown}; the workloads are {list(WORKLOADS)}")
    if args.profile:
        import profile_chainrule

        profile_chainrule.run(workloads or ["W1", "W2", "W3"], args)
        return 0
    print(
        f"Threads: one per library (OMP/MKL/OpenBLAS variables, torch.set_num_threads(1), XLA flags); "
        f"{'process pinned to core ' + str(core) if core is not None else 'no core affinity (unsupported)'}."
    )
    problems = []
    for name in workloads or WORKLOADS:
        problems += run_workload(name, rows, args)
    print()
    print(harness.machine_line())
    if problems:
        print("\nMISMATCH: the implementations disagree:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
