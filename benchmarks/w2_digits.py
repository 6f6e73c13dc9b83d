"""W2 "digits": scikit-learn's handwritten digits, a 64-128-64-10 ReLU network, Adam, mini-batches.

All 1797 images (8x8 pixels / 16, float32), softmax cross-entropy, Adam
lr 1e-3 (betas 0.9, 0.999, eps 1e-8), batches of 64 (28 of 64 and one of 5
per epoch), 20 epochs = 580 steps = 35,940 training samples. Reported:
training samples per second.
"""

from __future__ import annotations

import harness  # noqa: F401  (first: pins every library to one thread)

import numpy as np

import classifier

NAME = "W2 digits"
REPEATS = 5
SEED = 0
RTOL = 1e-3  # on the final training loss (float32 for 580 steps)
GAP = 0.1  # on the parameters, relative to how far training moved them: loose, see README (ReLU flips)


def problem():
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return classifier.Problem(
        x=(images / 16.0).astype(np.float32),
        y=labels.astype(np.int64),
        sizes=(64, 128, 64, 10),
        optimizer="adam",
        lr=1e-3,
        batch_size=64,
        epochs=20,
        seed=SEED,
    )


def run(wanted, repeats):
    try:
        p = problem()
    except ImportError:
        print(f"{NAME}: skipped: scikit-learn is not installed (it ships the data)")
        return []
    # NOTE: the warm-up is a whole run: JAX compiles once per batch shape, and the last batch is shorter.
    measured = classifier.measure(p, NAME, p.batches, wanted, repeats or REPEATS)
    if measured is None:
        return []
    results, notes = measured
    print(table(p, results, repeats or REPEATS))
    for note in notes:
        print(f"Note: {note}.")
    problems = classifier.check(p, results, RTOL, GAP)
    if not problems:
        print(f"All final losses agree (rtol {RTOL:g}) and all parameters (gap below {GAP:g}).")
    return [f"{NAME}: {m}" for m in problems]


def table(p, results, repeats):
    torch_row = results.get("PyTorch eager")
    ref = harness.median_best(torch_row["seconds"]) if torch_row else None
    body = []
    for name, r in results.items():
        med, best = harness.median_best(r["seconds"])
        body.append(
            [
                name,
                f"{p.samples / med:,.0f}",
                f"{p.samples / best:,.0f}",
                harness.ratio(med, ref[0]) if ref else "n/a",
                harness.ratio(best, ref[1]) if ref else "n/a",
                f"{max(r['cpu']):.2f}",
                f"{r['loss']:.6f}",
                f"{r['gap']:.1e}",
            ]
        )
    head = [
        "implementation",
        "median samples/s",
        "best samples/s",
        "median time / PyTorch",
        "best time / PyTorch",
        "cpu/wall",
        "final loss",
        "param gap",
    ]
    return (
        f"{NAME}: 1797x64, MLP 64-128-64-10 ReLU, cross-entropy, Adam lr 1e-3, batch 64, "
        f"{p.epochs} epochs ({len(p.batches)} steps), float32, {repeats} repeat{'s' * (repeats != 1)}\n\n"
        + harness.markdown(head, body, right=range(1, 8))
    )
