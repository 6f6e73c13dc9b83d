"""scikit-learn's test_mlp.py with chainrule's MLPClassifier and MLPRegressor (see conftest.py)."""

from conftest import load_suite

_suite = load_suite()
globals().update({name: value for name, value in vars(_suite).items() if name.startswith("test_")})
