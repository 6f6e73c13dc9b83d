"""scikit-learn's own MLP tests, run against chainrule's classes (see README.md here): its fixture.

``test_sklearn_mlp.py`` loads the installed ``sklearn/neural_network/tests/test_mlp.py`` with
chainrule's classes swapped in; this file gives it scikit-learn's ``global_random_seed``
fixture, and marks a test that reads scikit-learn's private attributes as not applicable
(``NOT_APPLICABLE``, with the reason). Today there is none: chainrule keeps the few private
names the tests read (``_optimizer.learning_rate``, ``_no_improvement_count``,
``_loss_grad_lbfgs``).
"""

from __future__ import annotations

import pytest

# test name -> why it cannot apply to chainrule's classes (it reads or writes scikit-learn's internals).
NOT_APPLICABLE: dict[str, str] = {}


@pytest.fixture
def global_random_seed() -> int:
    """scikit-learn's fixture (its conftest runs seed 42 unless told otherwise)."""
    return 42


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        if name in NOT_APPLICABLE and "sklearn_suite" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason="not applicable: " + NOT_APPLICABLE[name]))
