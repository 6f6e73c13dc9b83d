"""scikit-learn's test_mlp.py with chainrule's MLPClassifier and MLPRegressor (see README.md here).

The installed ``sklearn/neural_network/tests/test_mlp.py`` is imported while
``sklearn.neural_network.MLPClassifier`` and ``MLPRegressor`` are chainrule's, so its
``from sklearn.neural_network import MLPClassifier, MLPRegressor`` binds ours; its test
functions (with their parametrize marks) are then this module's, for pytest to collect.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("sklearn")

import sklearn.neural_network  # noqa: E402

from chainrule import sklearn as chainrule_sklearn  # noqa: E402


def load_suite() -> ModuleType:
    """scikit-learn's test_mlp.py, imported with chainrule's MLPClassifier and MLPRegressor in its namespace."""
    path = Path(sklearn.neural_network.__file__).parent / "tests" / "test_mlp.py"
    spec = importlib.util.spec_from_file_location("sklearn_test_mlp_on_chainrule", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = sklearn.neural_network.MLPClassifier, sklearn.neural_network.MLPRegressor
    sklearn.neural_network.MLPClassifier = chainrule_sklearn.MLPClassifier  # type: ignore[misc]
    sklearn.neural_network.MLPRegressor = chainrule_sklearn.MLPRegressor  # type: ignore[misc]
    try:
        spec.loader.exec_module(module)
    finally:
        sklearn.neural_network.MLPClassifier, sklearn.neural_network.MLPRegressor = saved  # type: ignore[misc]
    assert module.MLPClassifier is chainrule_sklearn.MLPClassifier
    return module


_suite = load_suite()
globals().update({name: value for name, value in vars(_suite).items() if name.startswith("test_")})
