"""How fast can a NumPy training step for the digits benchmark be? A floor for W6's time target.

W6 (``sklearn_datasets.py``) asks chainrule's MLPClassifier to fit in at most half of
scikit-learn's time. This script measures, in one run on one thread, the time per step
(one mini-batch of 200 rows, 64-100-10 ReLU network, softmax cross-entropy, L2 penalty,
Adam) of:

- scikit-learn's MLPClassifier (a whole fit's time over its steps),
- chainrule's MLPClassifier (the same),
- the same step written out by hand in NumPy, every array preallocated and every
  operation in place (no graph, no History, no checks): the least a NumPy step of this
  network costs, whatever library runs it.

    .venv/bin/python benchmarks/digits_floor.py [--repeats 5]
"""

from __future__ import annotations

import harness  # first: pins every library to one thread before NumPy is imported

import argparse
import time
import warnings

import numpy as np
import sklearn.neural_network as sk
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import chainrule.sklearn as cs

ROWS, HIDDEN = 200, 100


class HandStep:
    """One Adam step of a 64-100-10 ReLU network on a batch, every buffer made once."""

    def __init__(self, x: np.ndarray, labels: np.ndarray, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x, self.y = x, np.eye(10)[labels]
        d, h, c = x.shape[1], HIDDEN, 10
        sizes = [h * d, h, c * h, c]
        self.flat = rng.normal(0, 0.1, sum(sizes))
        self.grad = np.zeros_like(self.flat)
        ends = np.cumsum(sizes)
        cut = list(zip(ends - sizes, ends))
        shapes = [(h, d), (h,), (c, h), (c,)]
        self.w1, self.b1, self.w2, self.b2 = (self.flat[a:b].reshape(s) for (a, b), s in zip(cut, shapes))
        self.g1, self.gb1, self.g2, self.gb2 = (self.grad[a:b].reshape(s) for (a, b), s in zip(cut, shapes))
        self.m, self.v, self.s1, self.s2 = (np.zeros_like(self.flat) for _ in range(4))
        self.xb, self.yb = np.empty((ROWS, d)), np.empty((ROWS, c))
        self.hid, self.dh, self.mask = np.empty((ROWS, h)), np.empty((ROWS, h)), np.empty((ROWS, h), bool)
        self.z, self.ones = np.empty((ROWS, c)), np.ones(ROWS)
        self.t = 0

    def __call__(self, rows: np.ndarray, lr: float = 1e-3, alpha: float = 1e-4) -> float:
        xb, yb, hid, z, dh = self.xb, self.yb, self.hid, self.z, self.dh
        np.take(self.x, rows, axis=0, out=xb)
        np.take(self.y, rows, axis=0, out=yb)
        np.matmul(xb, self.w1.T, out=hid)
        np.add(hid, self.b1, out=hid)
        np.maximum(hid, 0.0, out=hid)
        np.matmul(hid, self.w2.T, out=z)
        np.add(z, self.b2, out=z)
        np.subtract(z, z.max(axis=1, keepdims=True), out=z)
        e = np.exp(z)
        total = e.sum(axis=1, keepdims=True)
        loss = -(np.vdot(yb, z) - np.log(total).sum()) / ROWS
        np.divide(e, total, out=e)  # (softmax - y) / n: the derivative at z
        np.subtract(e, yb, out=e)
        np.multiply(e, 1.0 / ROWS, out=e)
        np.matmul(e.T, hid, out=self.g2)
        np.matmul(self.ones, e, out=self.gb2)
        np.matmul(e, self.w2, out=dh)
        np.greater(hid, 0.0, out=self.mask)
        np.multiply(dh, self.mask, out=dh)
        np.matmul(dh.T, xb, out=self.g1)
        np.matmul(self.ones, dh, out=self.gb1)
        c = alpha / ROWS  # the L2 penalty's derivative
        np.add(self.g1, np.multiply(self.w1, c), out=self.g1)
        np.add(self.g2, np.multiply(self.w2, c), out=self.g2)
        self.t += 1
        b1, b2, g, m, v, s1, s2 = 0.9, 0.999, self.grad, self.m, self.v, self.s1, self.s2
        np.multiply(m, b1, out=m)
        np.add(m, np.multiply(g, 1 - b1, out=s1), out=m)
        np.multiply(v, b2, out=v)
        np.multiply(g, g, out=s1)
        np.multiply(s1, 1 - b2, out=s1)
        np.add(v, s1, out=v)
        np.sqrt(v, out=s2)
        np.add(s2, 1e-8, out=s2)
        np.divide(m, s2, out=s2)
        np.multiply(s2, lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t), out=s2)
        np.subtract(self.flat, s2, out=self.flat)
        return float(loss)


def per_step(module, x, labels) -> float:
    """Seconds per mini-batch step of a default MLPClassifier fit (random_state=0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model = module.MLPClassifier(random_state=0).fit(x, labels)
        seconds = time.perf_counter() - start
    return seconds / (model.n_iter_ * -(-len(x) // ROWS))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timings of each (the best counts)")
    args = parser.parse_args(argv)
    harness.pin_to_one_core()
    print(harness.machine_line())
    x, labels = load_digits(return_X_y=True)
    x = StandardScaler().fit_transform(x[:1437])  # a training fold's size
    labels = labels[:1437]
    hand, order = HandStep(x, labels), np.random.default_rng(0).permutation(len(x))[:ROWS]
    best = {"scikit-learn": np.inf, "chainrule": np.inf, "by hand": np.inf}
    for _ in range(args.repeats):
        best["scikit-learn"] = min(best["scikit-learn"], per_step(sk, x, labels))
        best["chainrule"] = min(best["chainrule"], per_step(cs, x, labels))
        start = time.perf_counter()
        for _ in range(1000):
            hand(order)
        best["by hand"] = min(best["by hand"], (time.perf_counter() - start) / 1000)
    for name, seconds in best.items():
        ratio = seconds / best["scikit-learn"]
        print(f"{name:13s} {seconds * 1e6:6.0f} us a step  ({ratio:.2f} of scikit-learn's)")


if __name__ == "__main__":
    main()
