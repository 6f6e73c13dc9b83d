"""chainrule.sklearn against scikit-learn's MLP on scikit-learn's bundled data sets: score and fit time.

Five data sets (digits, breast cancer, iris, wine: classification, accuracy; diabetes:
regression, R^2), 5-fold cross-validation (the same folds for both), the same settings for
both libraries (a StandardScaler, then the MLP with the arguments below; diabetes' target is
standardized too). In every fold scikit-learn and chainrule are fitted one after the other in
this process, on one thread, and each fit is timed. The table gives the mean and spread
(standard deviation over the folds) of each library's score, whether chainrule's mean lies
within scikit-learn's mean +- its spread, and chainrule's total fit time as a fraction of
scikit-learn's (below 1: chainrule is faster).

    .venv/bin/python benchmarks/sklearn_datasets.py [--only digits,iris] [--repeats 1]
"""

from __future__ import annotations

import harness  # first: pins every library to one thread before NumPy is imported

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import sklearn.neural_network as sk  # noqa: E402
from sklearn.compose import TransformedTargetRegressor  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import KFold, StratifiedKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import chainrule.sklearn as cs  # noqa: E402

# data set -> (loader, estimator class name, the arguments both libraries get)
DATASETS = {
    "digits": (load_digits, "MLPClassifier", {"random_state": 0}),
    "breast cancer": (load_breast_cancer, "MLPClassifier", {"random_state": 0}),
    "iris": (load_iris, "MLPClassifier", {"max_iter": 1000, "random_state": 0}),
    "wine": (load_wine, "MLPClassifier", {"random_state": 0}),
    "diabetes": (load_diabetes, "MLPRegressor", {"solver": "lbfgs", "alpha": 1.0, "random_state": 0}),
}


def make(module, name, params):
    model = make_pipeline(StandardScaler(), getattr(module, name)(**params))
    if name == "MLPRegressor":
        return TransformedTargetRegressor(model, transformer=StandardScaler())
    return model


def folds(X, y, name):
    split = (
        StratifiedKFold(5, shuffle=True, random_state=0)
        if name == "MLPClassifier"
        else KFold(5, shuffle=True, random_state=0)
    )
    return list(split.split(X, y))


def run_dataset(label, repeats):
    """One data set: per library, the fold scores and the total fit seconds (the best of ``repeats``)."""
    loader, name, params = DATASETS[label]
    X, y = loader(return_X_y=True)
    scores = {"scikit-learn": [], "chainrule": []}
    seconds = {"scikit-learn": 0.0, "chainrule": 0.0}
    for train, test in folds(X, y, name):
        for lib, module in (("scikit-learn", sk), ("chainrule", cs)):
            best = np.inf
            for _ in range(repeats):
                model = make(module, name, params)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    start = time.perf_counter()
                    model.fit(X[train], y[train])
                    best = min(best, time.perf_counter() - start)
            seconds[lib] += best
            scores[lib].append(model.score(X[test], y[test]))
    return name, params, scores, seconds


def row(label, name, params, scores, seconds):
    sk_mean, sk_std = np.mean(scores["scikit-learn"]), np.std(scores["scikit-learn"])
    cr_mean, cr_std = np.mean(scores["chainrule"]), np.std(scores["chainrule"])
    within = "yes" if abs(cr_mean - sk_mean) <= sk_std else "NO"
    metric = "R^2" if name == "MLPRegressor" else "accuracy"
    shown = ", ".join(f"{k}={v}" for k, v in params.items() if k != "random_state") or "defaults"
    return (
        f"| {label} | {metric} | {shown} | {sk_mean:.4f} +- {sk_std:.4f} | {cr_mean:.4f} +- {cr_std:.4f} | "
        f"{within} | {seconds['scikit-learn']:.2f} | {seconds['chainrule']:.2f} | "
        f"{seconds['chainrule'] / seconds['scikit-learn']:.2f} |"
    )


def run(rows=(), repeats=None):
    """The table (as benchmarks/run.py's W6); ``rows`` may name data sets. Returns the mismatch messages."""
    chosen = [d for d in DATASETS if any(r in d for r in rows)] or list(DATASETS)
    print(
        "| data set | score | MLP arguments (both) | scikit-learn | chainrule | within spread | "
        "scikit-learn s | chainrule s | time ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    outside = []
    for label in chosen:
        name, params, scores, seconds = run_dataset(label, repeats or 1)
        line = row(label, name, params, scores, seconds)
        print(line, flush=True)
        if "| NO |" in line:
            outside.append(f"W6 {label}: chainrule's mean score lies outside scikit-learn's mean +- spread")
    return outside


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated data sets (default all five)")
    parser.add_argument("--repeats", type=int, default=1, help="timed fits per fold and library (the best counts)")
    args = parser.parse_args(argv)
    chosen = [d.strip() for d in args.only.split(",") if d.strip()]
    unknown = sorted(set(chosen) - set(DATASETS))
    if unknown:
        parser.error(f"--only: unknown data set(s) {unknown}; choose from {list(DATASETS)}")
    harness.pin_to_one_core()
    print(harness.machine_line())
    outside = run(chosen, args.repeats)
    for message in outside:
        print(message)
    return 1 if outside else 0


if __name__ == "__main__":
    raise SystemExit(main())
