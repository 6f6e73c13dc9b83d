"""scikit-learn's own MLP tests, run against chainrule's classes (see README.md here).

The installed ``sklearn/neural_network/tests/test_mlp.py`` is loaded as a module while
``sklearn.neural_network.MLPClassifier`` and ``MLPRegressor`` are chainrule's, so its
``from sklearn.neural_network import MLPClassifier, MLPRegressor`` takes ours; its tests
are then collected from ``test_sklearn_mlp.py``. The tests that read scikit-learn's
private attributes would be marked as not applicable (``NOT_APPLICABLE``), with the reason:
today there are none (chainrule keeps the few private names they read: ``_optimizer.learning_rate``,
``_no_improvement_count``, ``_loss_grad_lbfgs``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("sklearn")

import sklearn.neural_network  # noqa: E402

from chainrule import sklearn as chainrule_sklearn  # noqa: E402

# test name -> why it cannot apply to chainrule's classes (it reads or writes scikit-learn's internals).
NOT_APPLICABLE: dict[str, str] = {}


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


@pytest.fixture
def global_random_seed() -> int:
    """scikit-learn's fixture (its conftest runs seed 42 unless told otherwise)."""
    return 42


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        if name in NOT_APPLICABLE and "sklearn_suite" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason="not applicable: " + NOT_APPLICABLE[name]))
