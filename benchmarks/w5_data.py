"""W5 "data": reading a big CSV or Parquet file, and `chainrule fit` end to end against its peers.

A generated table of ROWS x 20 standard-normal features (rounded to 6 decimals,
about 190 bytes a CSV line) and a target y = sin(x1) + x2 * x3 + 0.5 * x4^2 +
0.1 * noise (numpy.random.default_rng(SEED)), written as CSV and as Parquet.

Reading: each reader in a fresh subprocess, best of the repeats for the time;
the peak is the process's resident memory high-water mark during the read
above what it held after its imports (Linux /proc/self/clear_refs + VmHWM;
it includes what pyarrow allocates outside Python, which tracemalloc misses),
against the float64 array of the 21 columns (the target: 2x that plus 50 MB).

Fit end to end: read, standardize features and target, 3 epochs of a 20-64-64-1
ReLU network with Adam (lr 0.001), mini-batches of 256 shuffled each epoch, float64,
write the model: `chainrule fit` (its command line, in-process: cli.main), against
pandas (or numpy.loadtxt when pandas is not installed) + scikit-learn's MLPRegressor
and the same + a PyTorch loop. Wall time from before reading to after writing (the
interpreter's start and the imports left out), the time reading, the peak as above,
and the final MSE on the training rows in the target's units (computed after the clock
stops). The implementations start from different random weights and shuffles, so
their losses agree only roughly; the check is that every one learned (MSE below the
target's variance).

    python benchmarks/w5_data.py [--rows 200000] [--quick] [--repeats 3]
    python benchmarks/run.py --only W5 [--quick]

Streaming: `chainrule fit --stream` (the same settings, a shuffle buffer of 100,000 rows;
the standardization in one pass first, the final loss in one more) at 10^5, 10^6 and
STREAM_ROWS = 10^7 rows (a CSV of about 1.9 GB, written by numpy.savetxt in slices: it
takes minutes; skipped with --quick). Its final MSE is the one the model file records
(computed streaming). `--streaming` runs that table alone.
"""

from __future__ import annotations

import harness  # noqa: F401  (first: pins every library to one thread)

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

NAME = "W5 data"
SEED = 0
FEATURES = 20
MAIN_ROWS = 200_000
SCALING_ROWS = (100_000, 1_000_000)
STREAM_ROWS = 10_000_000  # with --stream only (the streaming table)
QUICK_ROWS = 20_000
REPEATS = 3
EPOCHS, BATCH, LR, HIDDEN = 3, 256, 1e-3, (64, 64)
HERE = os.path.dirname(os.path.abspath(__file__))


# ---- the data ---------------------------------------------------------------------------------


def make_files(folder, rows, parquet=True):
    """(csv path, parquet path or None): the table written in slices of 100,000 rows."""
    rng = np.random.default_rng(SEED)
    header = ",".join([f"x{j + 1}" for j in range(FEATURES)] + ["y"])
    csv_path = os.path.join(folder, f"w5-{rows}.csv")
    parts = []
    with open(csv_path, "w") as f:
        f.write(header + "\n")
        for start in range(0, rows, 100_000):
            x = rng.standard_normal((min(100_000, rows - start), FEATURES)).round(6)
            y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] ** 2 + 0.1 * rng.standard_normal(len(x))
            table = np.column_stack([x, y.round(6)])
            np.savetxt(f, table, fmt="%.6f", delimiter=",")
            if parquet:
                parts.append(table)
    if not parquet:
        return csv_path, None
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return csv_path, None
    table = np.concatenate(parts)
    parquet_path = csv_path[:-4] + ".parquet"
    names = header.split(",")
    pq.write_table(pa.table({n: table[:, j] for j, n in enumerate(names)}), parquet_path)
    return csv_path, parquet_path


# ---- one measurement, in a child process ------------------------------------------------------------


def _reset_peak():
    """True when the kernel's high-water mark of resident memory could be reset (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status(field):
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _read(task, path):
    """The table as (x, y) by one of the readers."""
    if task == "loadtxt":
        a = np.loadtxt(path, delimiter=",", skiprows=1)
        return a[:, :-1], a[:, -1]
    if task == "pandas":
        import pandas

        a = pandas.read_csv(path).to_numpy(dtype=np.float64)
        return a[:, :-1], a[:, -1]
    if task == "pandas-parquet":
        import pandas

        a = pandas.read_parquet(path).to_numpy(dtype=np.float64)
        return a[:, :-1], a[:, -1]
    if task == "pyarrow-csv":
        import pyarrow.csv

        t = pyarrow.csv.read_csv(path)
        return np.column_stack([c.to_numpy() for c in t.columns[:-1]]), t.columns[-1].to_numpy()
    if task == "pyarrow-parquet":
        import pyarrow.parquet

        t = pyarrow.parquet.read_table(path)
        return np.column_stack([c.to_numpy() for c in t.columns[:-1]]), t.columns[-1].to_numpy()
    import chainrule.data  # chainrule, CSV or Parquet by the suffix

    if task == "chainrule-numpy":  # blocks parsed by numpy.loadtxt even when pyarrow is installed
        chainrule.data._arrow_csv = lambda: None
    data = chainrule.data.read_data(path, target="y")
    return data.x, data.y


def _standardize(x, y):
    mx, sx, my, sy = x.mean(axis=0), x.std(axis=0), y.mean(), y.std()
    return (x - mx) / sx, (y - my) / sy, (my, sy)


def _fit_chainrule(path, folder):
    from chainrule import cli, modelfile

    seen = {}
    original = cli.read_data

    def timed_read(*args, **kwargs):
        t0 = time.perf_counter()
        seen["data"] = original(*args, **kwargs)
        seen["read"] = time.perf_counter() - t0
        return seen["data"]

    cli.read_data = timed_read
    out = os.path.join(folder, "w5-chainrule.json")
    argv = ["fit", path, "--target", "y", "--hidden", ",".join(map(str, HIDDEN)), "--activation", "relu"]
    argv += ["--optimizer", "adam", "--lr", str(LR), "--batch-size", str(BATCH), "--max-iter", str(EPOCHS)]
    argv += ["--tol", "0", "--standardize", "--loss", "mse", "--quiet", "--out", out]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"chainrule fit exited {code}")
    return seen["read"], lambda: _mse(modelfile.load(out).predict(seen["data"].x), seen["data"].y)


def _fit_stream(path, folder):
    """`chainrule fit --stream`: no whole-file read to time; the final MSE is the model file's (streamed)."""
    from chainrule import cli

    out = os.path.join(folder, "w5-chainrule-stream.json")
    argv = ["fit", path, "--target", "y", "--hidden", ",".join(map(str, HIDDEN)), "--activation", "relu"]
    argv += ["--optimizer", "adam", "--lr", str(LR), "--batch-size", str(BATCH), "--max-iter", str(EPOCHS)]
    argv += ["--tol", "0", "--standardize", "--loss", "mse", "--quiet", "--stream", "--out", out]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"chainrule fit --stream exited {code}")
    with open(out) as f:
        loss = json.load(f)["training"]["final_loss"]
    return float("nan"), lambda: loss


def _fit_sklearn(path, folder, reader):
    import pickle

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    t0 = time.perf_counter()
    x, y = _read(reader, path)
    read = time.perf_counter() - t0
    xs, ys, (my, sy) = _standardize(x, y)
    net = MLPRegressor(
        hidden_layer_sizes=HIDDEN, activation="relu", solver="adam", learning_rate_init=LR, batch_size=BATCH,
        max_iter=EPOCHS, tol=0.0, n_iter_no_change=10**9, alpha=0.0, shuffle=True, random_state=SEED,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net.fit(xs, ys)
    with open(os.path.join(folder, "w5-sklearn.pickle"), "wb") as f:
        pickle.dump(net, f)
    return read, lambda: _mse(net.predict(xs) * sy + my, y)


def _fit_torch(path, folder, reader):
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    x, y = _read(reader, path)
    read = time.perf_counter() - t0
    xs, ys, (my, sy) = _standardize(x, y)
    torch.manual_seed(SEED)
    sizes = [FEATURES, *HIDDEN, 1]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b, dtype=torch.float64), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    xt, yt = torch.from_numpy(xs), torch.from_numpy(ys)[:, None]
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), BATCH):
            rows = order[start : start + BATCH]
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(xt[rows]), yt[rows])
            loss.backward()
            optimizer.step()
    torch.save(net.state_dict(), os.path.join(folder, "w5-torch.pt"))

    def final():
        with torch.no_grad():
            return _mse(net(xt).numpy()[:, 0] * sy + my, y)

    return read, final


def _mse(predicted, observed):
    return float(np.mean((np.asarray(predicted, dtype=np.float64) - observed) ** 2))


def child(task, path, folder):
    """Run one task; print one JSON line: seconds, reading seconds, peak bytes above the start, and more."""
    kind, _, how = task.partition(":")
    if kind == "fit":  # the imports first, outside the clock and the peak
        import chainrule.cli  # noqa: F401

        if "sklearn" in how:
            import sklearn.neural_network  # noqa: F401
        if "torch" in how:
            import torch  # noqa: F401
    if how.startswith("chainrule") or kind == "fit":
        import chainrule.data  # noqa: F401

        chainrule.data._arrow_csv()  # imports pyarrow.csv when installed (about 0.3 s, once per process)
    if "pandas" in how:
        import pandas  # noqa: F401
    if "pyarrow" in how or path.endswith(".parquet"):
        import pyarrow.csv  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    exact = _reset_peak()
    start = _status("VmRSS")
    t0 = time.perf_counter()
    if kind == "read":
        x, y = _read(how, path)
        read, final, shape = time.perf_counter() - t0, None, [len(x), x.shape[1] + 1]
    else:
        fit = {"chainrule": _fit_chainrule, "chainrule-stream": _fit_stream}.get(how)
        if fit is not None:
            read, final = fit(path, folder)
        else:
            peer, _, reader = how.partition("+")
            read, final = (_fit_sklearn if peer == "sklearn" else _fit_torch)(path, folder, reader)
        shape = None
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM") - start if exact else None
    loss = final() if final is not None else None
    print(json.dumps({"seconds": seconds, "read": read, "peak": peak, "loss": loss, "shape": shape}))


def measure(task, path, folder, repeats):
    """The best of ``repeats`` children's times, the largest peak, the last loss; None when the task cannot run."""
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, os.path.join(HERE, "w5_data.py"), "--child", task, path, folder],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            print(f"skipped {task}: {last}")
            return None
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    peaks = [r["peak"] for r in runs if r["peak"] is not None]
    return {
        "seconds": min(r["seconds"] for r in runs),
        "read": min(r["read"] for r in runs),
        "peak": max(peaks) if peaks else None,
        "loss": runs[-1]["loss"],
    }


# ---- the tables ---------------------------------------------------------------------------------------


def _have(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _mb(n):
    return "n/a" if n is None else f"{n / 2**20:.0f} MB"


def reading(csv_path, parquet_path, rows, folder, repeats):
    """The readers' table at ``rows``; returns problems (a target missed)."""
    array = rows * (FEATURES + 1) * 8
    candidates = [("numpy.loadtxt", "read:loadtxt", csv_path), ("chainrule read_csv", "read:chainrule", csv_path)]
    if _have("pyarrow"):
        candidates.append(("chainrule read_csv, numpy.loadtxt alone", "read:chainrule-numpy", csv_path))
    if _have("pandas"):
        candidates.append(("pandas.read_csv", "read:pandas", csv_path))
    else:
        print("skipped pandas.read_csv: pandas is not installed")
    if parquet_path:
        candidates += [
            ("pyarrow.csv.read_csv", "read:pyarrow-csv", csv_path),
            ("chainrule read_parquet", "read:chainrule", parquet_path),
            ("pyarrow.parquet.read_table", "read:pyarrow-parquet", parquet_path),
        ]
    else:
        print("skipped the pyarrow and Parquet rows: pyarrow is not installed")
    results = {name: measure(task, path, folder, repeats) for name, task, path in candidates}
    base = results["numpy.loadtxt"]
    table = []
    for name, r in results.items():
        if r is not None:
            peak = "n/a" if r["peak"] is None else f"{_mb(r['peak'])} ({r['peak'] / array:.2f}x)"
            table.append([name, f"{r['seconds']:.2f}", harness.ratio(r["seconds"], base["seconds"]), peak])
    print(f"\nReading {rows:,} x {FEATURES + 1} ({os.path.getsize(csv_path) / 2**20:.0f} MB of CSV; the float64 array "
          f"is {_mb(array)}), best of {repeats}:\n")  # fmt: skip
    print(harness.markdown(["reader", "seconds", "time / loadtxt", "peak (/ the array)"], table, right=(1, 2, 3)))
    problems = []
    for name in ("chainrule read_csv", "chainrule read_csv, numpy.loadtxt alone"):
        ours = results.get(name)
        if ours is not None and ours["seconds"] > 1.5 * base["seconds"]:
            problems.append(f"{name} took {ours['seconds'] / base['seconds']:.2f}x numpy.loadtxt's time (target 1.5x)")
        if ours is not None and ours["peak"] is not None and ours["peak"] > 2 * array + 50 * 2**20:
            problems.append(f"{name}: the peak {_mb(ours['peak'])} is over 2x the array + 50 MB")
    return problems


def fitting(csv_path, parquet_path, rows, folder, repeats, quick):
    """The end-to-end table at ``rows``."""
    reader = "pandas" if _have("pandas") else "loadtxt"
    if reader == "loadtxt":
        print("pandas is not installed: the peers read with numpy.loadtxt instead")
    candidates = [("chainrule fit (CSV)", "fit:chainrule", csv_path)]
    if parquet_path:
        candidates.append(("chainrule fit (Parquet)", "fit:chainrule", parquet_path))
    candidates.append((f"{reader} + scikit-learn MLPRegressor", f"fit:sklearn+{reader}", csv_path))
    if _have("torch"):
        candidates.append((f"{reader} + PyTorch loop", f"fit:torch+{reader}", csv_path))
    else:
        print("skipped the PyTorch loop: torch is not installed (make bench installs torch==2.13.0)")
    results = {name: measure(task, path, folder, repeats) for name, task, path in candidates}
    table = []
    for name, r in results.items():
        if r is not None:
            table.append([name, f"{r['seconds']:.2f}", f"{r['read']:.2f}", _mb(r["peak"]), f"{r['loss']:.4f}"])
    print(f"\n`fit` end to end, {rows:,} rows: {EPOCHS} epochs, batches of {BATCH}, Adam, 20-64-64-1 ReLU, best of "
          f"{repeats}:\n")  # fmt: skip
    print(harness.markdown(["implementation", "wall s", "reading s", "peak", "final MSE"], table, right=(1, 2, 3, 4)))
    variance = np.var(np.loadtxt(csv_path, delimiter=",", skiprows=1, usecols=[FEATURES]))
    return [f"{name} did not learn (MSE {r['loss']:.3f}, variance {variance:.3f})"
            for name, r in results.items() if r is not None and r["loss"] >= variance]  # fmt: skip


def growth(sizes, folder, repeats):
    """`chainrule fit` (CSV) at each size, and the row that needs streaming."""
    table = []
    for rows in sizes:
        csv_path, _ = make_files(folder, rows)
        r = measure("fit:chainrule", csv_path, folder, repeats)
        peer = measure("fit:sklearn+" + ("pandas" if _have("pandas") else "loadtxt"), csv_path, folder, repeats)
        base = measure("read:loadtxt", csv_path, folder, repeats)
        if r is not None:
            row = [f"{rows:,}", f"{r['seconds']:.2f}", f"{r['read']:.2f}", f"{base['seconds']:.2f}" if base else "n/a"]
            row += [_mb(r["peak"]), f"{r['loss']:.4f}"]
            table.append(row + ([f"{peer['seconds']:.2f}"] if peer else ["n/a"]))
        for name in os.listdir(folder):
            if name.startswith(f"w5-{rows}."):
                os.remove(os.path.join(folder, name))
    print("\n`chainrule fit` (CSV) as the rows grow (scikit-learn with the same reader for comparison):\n")
    head = ["rows", "wall s", "reading s", "numpy.loadtxt s", "peak", "final MSE", "scikit-learn wall s"]
    print(harness.markdown(head, table, right=(1, 2, 3, 4, 5, 6)))


def streaming(sizes, folder):
    """`chainrule fit --stream` (CSV) at each size, once: time and peak memory should stay flat in the rows' memory."""
    table = []
    for rows in sizes:
        csv_path, _ = make_files(folder, rows, parquet=False)
        r = measure("fit:chainrule-stream", csv_path, folder, 1)
        if r is not None:
            table.append([f"{rows:,}", f"{os.path.getsize(csv_path) / 2**20:.0f} MB", f"{r['seconds']:.1f}",
                          _mb(r["peak"]), _mb(rows * (FEATURES + 1) * 8), f"{r['loss']:.4f}"])  # fmt: skip
        os.remove(csv_path)
    print("\n`chainrule fit --stream` (CSV, a shuffle buffer of 100,000 rows) as the rows grow, one run each:\n")
    head = ["rows", "CSV", "wall s", "peak", "the float64 array", "final MSE"]
    print(harness.markdown(head, table, right=(1, 2, 3, 4, 5)))


def run(rows_wanted=(), repeats=None, quick=False, rows=None):
    """Everything W5 prints; returns problems (targets missed or a model that did not learn)."""
    del rows_wanted  # W5's rows are picked by size, not by name
    repeats = repeats or (1 if quick else REPEATS)
    rows = rows or (QUICK_ROWS if quick else MAIN_ROWS)
    with tempfile.TemporaryDirectory(prefix="chainrule-w5-") as folder:
        csv_path, parquet_path = make_files(folder, rows)
        problems = reading(csv_path, parquet_path, rows, folder, repeats)
        problems += fitting(csv_path, parquet_path, rows, folder, repeats, quick)
        for name in os.listdir(folder):
            if name.startswith(f"w5-{rows}."):
                os.remove(os.path.join(folder, name))
        if not quick:
            growth(SCALING_ROWS, folder, 1)
            streaming((*SCALING_ROWS, STREAM_ROWS), folder)
    if problems:  # targets missed are reported, not failures of correctness
        print("\nW5 targets missed: " + "; ".join(problems))
    return [p for p in problems if "did not learn" in p]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help=f"rows of the main table (default {MAIN_ROWS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows, one repeat, no growth table")
    parser.add_argument("--repeats", type=int, default=None, help=f"children per row (default {REPEATS})")
    parser.add_argument("--streaming", action="store_true", help="only the --stream table (10^5 to 10^7 rows)")
    parser.add_argument("--child", nargs=3, metavar=("TASK", "PATH", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    harness.pin_to_one_core()
    if args.streaming:
        with tempfile.TemporaryDirectory(prefix="chainrule-w5-") as folder:
            streaming((*SCALING_ROWS, STREAM_ROWS), folder)
        return 0
    return 1 if run(repeats=args.repeats, quick=args.quick, rows=args.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
