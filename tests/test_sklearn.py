"""chainrule.sklearn: scikit-learn's own estimator checks, Pipeline and GridSearchCV, the digits."""

import os
import re
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, load_iris, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402  (a scikit-learn dependency)

import chainrule as cr  # noqa: E402
from chainrule.sklearn import ConvergenceWarning, NeuralNetworkClassifier, NeuralNetworkRegressor  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: one BLAS thread is fastest, and spinning threads on a busy machine cost 20x."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


# ---- scikit-learn's estimator checks ------------------------------------------------------


# Fewer, larger steps than the defaults keep the ~110 checks near 2 s (the defaults pass too, in ~6 s).
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [NeuralNetworkRegressor(learning_rate=0.01, max_iter=50), NeuralNetworkClassifier(learning_rate=0.01, max_iter=50)]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- the estimators inside scikit-learn's tools ----------------------------------------------


def test_pipeline_and_grid_search_on_iris():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), NeuralNetworkClassifier(random_state=0, max_iter=100))
    grid = {
        "neuralnetworkclassifier__hidden_layer_sizes": [(4,), (16,)],
        "neuralnetworkclassifier__learning_rate": [0.001, 0.01],
    }
    search = quiet(GridSearchCV(pipe, grid, cv=3).fit, X, y)
    assert search.best_params_["neuralnetworkclassifier__learning_rate"] == 0.01  # 100 epochs at 0.001 is too few
    assert search.best_score_ > 0.9
    assert search.score(X, y) > 0.95


def test_cross_val_score_regression():
    X, y = make_regression(n_samples=120, n_features=4, noise=5.0, random_state=0)
    reg = make_pipeline(StandardScaler(), NeuralNetworkRegressor((16,), learning_rate=0.01, random_state=0))
    assert quiet(cross_val_score, reg, X, y / y.std(), cv=3).min() > 0.9


# ---- regression ----------------------------------------------------------------------------


def test_linear_network_matches_least_squares():
    # No hidden layer, full-batch gradient descent on the MSE: the least-squares solution,
    # which scikit-learn's LinearRegression computes independently.
    X, y = make_regression(n_samples=50, n_features=3, noise=2.0, bias=1.5, random_state=1)
    reg = NeuralNetworkRegressor(
        (), optimizer="gd", learning_rate=0.1, batch_size=None, tol=1e-10, max_iter=5000, random_state=0
    ).fit(X, y)
    ols = LinearRegression().fit(X, y)
    assert reg.history_.converged
    np.testing.assert_allclose(reg.model_[0].weight.data.ravel(), ols.coef_, rtol=1e-6)
    np.testing.assert_allclose(reg.model_[0].bias.item(), ols.intercept_, rtol=1e-6)


@pytest.mark.parametrize("shape", [(40,), (40, 1), (40, 3)])
def test_regressor_predicts_the_shape_of_y(shape):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = rng.normal(size=shape)
    reg = quiet(NeuralNetworkRegressor((4,), max_iter=5, random_state=0).fit, X, y)
    assert reg.predict(X).shape == shape
    assert reg.n_outputs_ == (1 if len(shape) == 1 else shape[1])


def test_ssr_loss_is_the_lessons_loss():
    # Same random_state, same starting network: before the first update SSR = n x MSE (n = 3 dosages).
    x, y = cr.data.dosage()
    first = {
        loss: quiet(
            NeuralNetworkRegressor((2,), "softplus", loss=loss, max_iter=1, random_state=0).fit, x.reshape(-1, 1), y
        ).loss_curve_[0]
        for loss in ("ssr", "mse")
    }
    assert first["ssr"] == pytest.approx(3 * first["mse"], rel=1e-12)


def test_float32_inputs_train_a_float32_network():
    X, y = make_regression(n_samples=30, n_features=2, random_state=0)
    reg = quiet(NeuralNetworkRegressor((4,), max_iter=3, random_state=0).fit, X.astype(np.float32), y)
    assert reg.model_[0].weight.dtype == np.float32
    assert reg.predict(X).dtype == np.float32  # float64 inputs are cast to the network's dtype


# ---- classification ----------------------------------------------------------------------------


def test_string_labels_and_binary_probabilities():
    X, y = load_iris(return_X_y=True)
    Xs, y = StandardScaler().fit_transform(X[y > 0]), np.where(y[y > 0] == 1, "versicolor", "virginica")
    clf = NeuralNetworkClassifier((8,), learning_rate=0.01, tol=0, random_state=0).fit(Xs, y)
    proba = clf.predict_proba(Xs)
    assert list(clf.classes_) == ["versicolor", "virginica"]
    assert proba.shape == (len(Xs), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    with cr.no_grad():
        logits = clf.model_(Xs).data
    # softmax of two logits = sigmoid of their difference
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(logits[:, 0] - logits[:, 1])), rtol=1e-12)
    np.testing.assert_allclose(clf.predict_log_proba(Xs), np.log(proba), rtol=1e-9, atol=1e-12)
    assert (clf.predict(Xs) == clf.classes_[proba.argmax(axis=1)]).all()
    assert clf.score(Xs, y) > 0.9


def test_one_class_is_an_error():
    with pytest.raises(ValueError, match="at least 2 classes.*only one class: 'a'"):
        NeuralNetworkClassifier().fit(np.zeros((3, 2)), ["a", "a", "a"])


# ---- warnings, errors, imports ----------------------------------------------------------------


def test_max_iter_warns_as_chainrule_and_as_sklearn():
    X, y = load_iris(return_X_y=True)
    for category in (cr.ConvergenceWarning, SklearnConvergenceWarning):
        with pytest.warns(category, match=r"NeuralNetworkClassifier: reached max_iter = 2 iterations"):
            NeuralNetworkClassifier(max_iter=2, random_state=0).fit(X, y)


def test_tol_zero_runs_max_iter_epochs_without_a_warning():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = NeuralNetworkClassifier(max_iter=3, tol=0, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3 and not clf.history_.converged


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("hidden_layer_sizes", (4, 0), "an integer >= 1 or a sequence of integers >= 1"),
        ("hidden_layer_sizes", True, "an integer >= 1 or a sequence of integers >= 1"),
        ("activation", "gelu", "one of 'identity', 'relu', 'sigmoid', 'softplus', 'tanh'"),
        ("optimizer", "sgd", "one of 'adagrad', 'adam', 'adamw', 'gd', 'momentum', 'rmsprop'"),
        ("learning_rate", 0.0, "a finite number > 0"),
        ("momentum", 1.0, r"a number in \[0, 1\)"),
        ("tol", -1.0, "a finite number >= 0"),
        ("tol", "0.1", "a finite number >= 0"),
        ("max_iter", 0, "an integer >= 1"),
        ("max_iter", 10.0, "an integer >= 1"),
        ("batch_size", 0, "'auto' or None or an integer >= 1"),
    ],
)
def test_invalid_parameters_name_the_parameter_and_the_value(name, value, allowed):
    X, y = load_iris(return_X_y=True)
    clf = NeuralNetworkClassifier().set_params(**{name: value})
    with pytest.raises(
        ValueError,
        match=rf"The '{name}' parameter of NeuralNetworkClassifier must be "
        rf"{allowed}.*Got {re.escape(repr(value))} instead",
    ):
        clf.fit(X, y)


def test_invalid_loss():
    with pytest.raises(
        ValueError,
        match=r"The 'loss' parameter of NeuralNetworkRegressor must be one of "
        r"'mse', 'ssr'. Got 'cross_entropy' instead.",
    ):
        NeuralNetworkRegressor(loss="cross_entropy").fit(np.zeros((3, 1)), np.zeros(3))


@pytest.mark.filterwarnings("ignore::chainrule.GradientHealthWarning")  # exploding, on the way to inf
def test_divergence_is_reported_by_chainrule():
    X, y = make_regression(n_samples=30, n_features=2, random_state=0)
    with pytest.raises(cr.DivergenceError, match="Try a smaller learning rate"):
        quiet(NeuralNetworkRegressor((4,), loss="ssr", optimizer="gd", learning_rate=10.0).fit, X, y * 1e3)


def run_python(code):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_import_chainrule_does_not_import_sklearn():
    done = run_python("import sys, chainrule; print('sklearn' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_missing_sklearn_says_how_to_install_it():
    done = run_python("import sys; sys.modules['sklearn'] = None; import chainrule.sklearn")
    assert "ImportError: chainrule.sklearn needs scikit-learn" in done.stderr
    assert 'pip install "chainrule[sklearn]"' in done.stderr


# ---- the digits: 64-128-64-10 ReLU, Adam, held-out quarter ------------------------------------


def test_digits_example_reaches_96_percent(capsys):
    main = runpy.run_path(str(EXAMPLES / "digits.py"))["main"]
    assert main() >= 0.96
    assert "held-out accuracy" in capsys.readouterr().out


def test_digits_classifier_reaches_96_percent():
    images, labels = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        (images / 16).astype(np.float32), labels, test_size=0.25, stratify=labels, random_state=0
    )
    clf = NeuralNetworkClassifier((128, 64), batch_size=64, max_iter=40, tol=0, random_state=0)
    clf.fit(X_train, y_train)
    assert clf.n_iter_ == 40
    assert clf.score(X_test, y_test) >= 0.96
