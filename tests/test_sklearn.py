"""chainrule.sklearn: MLPClassifier and MLPRegressor against scikit-learn's own MLP and its estimator checks.

Expected numbers come from scikit-learn's MLP trained with the same arguments (an
independent implementation: its own forward pass, backward pass and optimizers), from
numpy by hand, or from finite differences; scikit-learn's own test_mlp.py runs against
these classes in tests/sklearn_suite/.
"""

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

import scipy.sparse  # noqa: E402
import sklearn.neural_network as sk  # noqa: E402
from sklearn.datasets import load_digits, load_iris, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler, scale  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402  (a scikit-learn dependency)

import chainrule as cr  # noqa: E402
from chainrule.sklearn import (  # noqa: E402
    ConvergenceWarning,
    MLPClassifier,
    MLPRegressor,
    NeuralNetworkClassifier,
    NeuralNetworkRegressor,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)
X_REG, Y_REG = make_regression(n_samples=120, n_features=5, noise=10.0, random_state=0)
Y_REG = scale(Y_REG)


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: one BLAS thread is fastest, and spinning threads on a busy machine cost 20x."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        return fn(*args, **kwargs)


def both(name, X, y, **params):
    """(scikit-learn's estimator, chainrule's), each fitted with the same arguments."""
    return tuple(quiet(getattr(module, name)(**params).fit, X, y) for module in (sk, cr.sklearn))


# ---- scikit-learn's estimator checks ------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([MLPRegressor(), MLPClassifier(), MLPRegressor(max_iter=50), MLPClassifier(max_iter=50)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- the same numbers as scikit-learn's MLP --------------------------------------------------


def test_glorot_start_is_scikit_learns():
    # scikit-learn draws each layer's (in, out) weights, then its biases, uniform in +-sqrt(6 / (in + out)),
    # sqrt(2 / (in + out)) for logistic units, from one RandomState: drawn here by hand in that order.
    for activation, factor in (("relu", 6.0), ("logistic", 2.0)):
        clf = quiet(MLPClassifier((7, 4), activation=activation, max_iter=1, random_state=3).fit, X_IRIS, Y_IRIS)
        net = cr.nn.mlp(
            [4, 7, 4, 3], clf.model_[1].__class__.__name__.lower(), seed=np.random.RandomState(3), init="glorot"
        )
        rng = np.random.RandomState(3)
        for i, (n_in, n_out) in enumerate([(4, 7), (7, 4), (4, 3)]):
            bound = np.sqrt(factor / (n_in + n_out))
            weight, bias = rng.uniform(-bound, bound, (n_in, n_out)), rng.uniform(-bound, bound, n_out)
            np.testing.assert_array_equal(clf.history_.params[f"{2 * i}.weight"].value[0], weight.T)  # the start
            np.testing.assert_array_equal(clf.history_.params[f"{2 * i}.bias"].value[0], bias)
            np.testing.assert_array_equal(net[2 * i].weight.data, weight.T)
            np.testing.assert_array_equal(net[2 * i].bias.data, bias)


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "sgd", "momentum": 0.0},
        {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True},
        {"solver": "sgd", "momentum": 0.5, "nesterovs_momentum": False, "batch_size": 32},
        {"solver": "sgd", "momentum": 0.0, "learning_rate": "invscaling", "power_t": 0.25, "learning_rate_init": 0.5},
        {"solver": "sgd", "momentum": 0.0, "learning_rate": "adaptive", "tol": 0.05, "n_iter_no_change": 2},
        {"solver": "lbfgs"},
    ],
)
def test_classifier_trains_as_scikit_learns(params):
    # The same start (random_state), batches (shuffled by the same RandomState), loss and update rule:
    # scikit-learn's loss per epoch, to rounding.
    theirs, ours = both(
        "MLPClassifier", X_IRIS, Y_IRIS, hidden_layer_sizes=(10,), max_iter=30, random_state=0, **params
    )
    assert ours.n_iter_ == theirs.n_iter_
    if params["solver"] != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X_IRIS), theirs.predict_proba(X_IRIS), rtol=1e-6, atol=1e-12)
    if params["solver"] == "sgd":  # the schedule's rate at the end: invscaling from t_, adaptive's fifths
        assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)


def test_adam_is_scikit_learns_to_rounding():
    # scikit-learn's Adam adds epsilon to sqrt(v) before the bias correction (the paper's epsilon hat), so
    # the estimators build chainrule's Adam with eps_hat=True: the same steps, to rounding, and so the same
    # epoch at which the loss-improvement rule stops (the iris run converges before max_iter).
    theirs, ours = both("MLPRegressor", X_REG, Y_REG, hidden_layer_sizes=(8,), max_iter=40, random_state=1)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    theirs, ours = both(
        "MLPClassifier", X_IRIS, Y_IRIS, hidden_layer_sizes=(10,), learning_rate_init=0.1, random_state=0
    )
    assert theirs.n_iter_ < theirs.max_iter
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regression_losses_are_scikit_learns(loss):
    X, y = X_REG, Y_REG if loss == "squared_error" else np.random.default_rng(0).poisson(np.exp(X_REG[:, 0] / 2))
    theirs, ours = both(
        "MLPRegressor",
        X,
        y,
        loss=loss,
        hidden_layer_sizes=(6,),
        solver="sgd",
        max_iter=15,
        learning_rate_init=0.01,
        alpha=0.1,
        random_state=2,
    )
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-7)
    assert ours.out_activation_ == theirs.out_activation_ == ("exp" if loss == "poisson" else "identity")


def test_multi_output_regression_and_multi_label_as_scikit_learns():
    # scikit-learn's gradient for 3 outputs is that of 0.5 * sum over outputs of the mean over rows, and chainrule
    # minimizes (and reports) that function; scikit-learn reports its mean over the outputs: a third of it.
    X, Y = make_regression(n_samples=60, n_features=4, n_targets=3, random_state=0)
    theirs, ours = both(
        "MLPRegressor",
        X,
        scale(Y),
        hidden_layer_sizes=(5,),
        solver="sgd",
        max_iter=20,
        alpha=0.0,
        learning_rate_init=0.01,
        random_state=0,
    )
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, 3 * np.array(theirs.loss_curve_), rtol=1e-9)
    X, Y = make_multilabel_classification(n_samples=40, n_classes=4, random_state=0)
    theirs, ours = both(
        "MLPClassifier",
        X,
        Y,
        hidden_layer_sizes=(6,),
        solver="sgd",
        max_iter=10,
        learning_rate_init=0.01,
        random_state=0,
    )
    assert ours.out_activation_ == "logistic" and ours.n_outputs_ == 4
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert not np.allclose(ours.predict_proba(X).sum(axis=1), 1.0)  # one sigmoid per label


def test_sample_weight_as_scikit_learns_and_as_repeated_rows():
    w = np.random.default_rng(0).integers(1, 4, len(X_IRIS)).astype(float)
    params = {"hidden_layer_sizes": (5,), "solver": "lbfgs", "max_iter": 15, "random_state": 0}
    ours = quiet(MLPClassifier(**params).fit, X_IRIS, Y_IRIS, sample_weight=w)
    theirs = quiet(sk.MLPClassifier(**params).fit, X_IRIS, Y_IRIS, sample_weight=w)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
    # Whole-batch loss with weights 1, 2, 3 = the mean loss over the rows repeated that many times.
    rows = np.repeat(np.arange(len(X_IRIS)), w.astype(int))
    repeated = quiet(MLPClassifier(**params).fit, X_IRIS[rows], Y_IRIS[rows])
    np.testing.assert_allclose(ours.loss_, repeated.loss_, rtol=1e-9)


def test_early_stopping_keeps_the_best_validation_weights():
    params = {"hidden_layer_sizes": (8,), "solver": "sgd", "learning_rate_init": 0.3, "max_iter": 60}
    theirs, ours = both(
        "MLPClassifier", X_IRIS, Y_IRIS, early_stopping=True, n_iter_no_change=5, random_state=0, **params
    )
    assert ours.validation_scores_ == pytest.approx(theirs.validation_scores_)
    assert ours.best_validation_score_ == max(ours.validation_scores_) and ours.best_loss_ is None
    best = int(np.argmax(ours.validation_scores_))
    assert best < ours.n_iter_ - 1  # stopped after the best: the weights were put back to epoch best + 1
    np.testing.assert_allclose(ours.coefs_[0], theirs.coefs_[0], rtol=1e-6)
    # Those are the weights recorded at the start of epoch best + 2, i.e. at the end of epoch best + 1.
    np.testing.assert_array_equal(ours.model_[0].weight.data, ours.history_.params["0.weight"].new_value[best])


@pytest.mark.parametrize(
    "kind, weighted", [("log_loss", False), ("log_loss", True), ("poisson", True), ("squared_error", False)]
)
def test_penalty_beside_the_graph_is_the_penalty_in_it(kind, weighted):
    # Training (every solver, through the Trainer) adds 0.5 alpha ||W||^2 / rows and alpha W / rows beside the
    # recorded graph of the data loss; explain and scikit-learn's gradient test use the estimators' objective,
    # the penalty in the graph: the same loss and gradient.
    from chainrule.sklearn import _TRAINER_LOSSES, _Objective

    net = cr.nn.mlp([4, 5, 3], "tanh", seed=0, init="glorot")
    weights, params = [net[0].weight, net[2].weight], net.parameters()
    rng = np.random.default_rng(0)
    y = np.eye(3)[rng.integers(0, 3, 20)] if kind == "log_loss" else rng.poisson(1.0, (20, 3)).astype(float)
    w = rng.uniform(0.5, 2.0, 20) if weighted else None
    x = rng.normal(size=(20, 4))
    objective = _Objective(kind, weights, 0.3, 3, weighted)
    loss_in, grads_in = cr.engines.forward_backward(
        net, cr.tensor(x), objective.pack(y, w, np.float64), objective, params
    )
    grads_in = [g.copy() for g in grads_in]
    targets = y.argmax(axis=1) if kind == "log_loss" else y
    trainer = cr.Trainer(net, x, targets, loss=_TRAINER_LOSSES[kind], alpha=0.3, sample_weight=w, monitor=False)
    s = trainer.settings
    loss_beside, grads_beside = cr.engines.loss_and_grads(s, cr.tensor(x), s.y, s.sample_weight)
    assert loss_beside == pytest.approx(loss_in, rel=1e-12)
    for a, b in zip(grads_in, grads_beside):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)


# ---- partial_fit and warm_start ------------------------------------------------------------------


def test_partial_fit_epochs_are_fit_epochs():
    # No shuffling: each epoch sees the same batches, so k calls of partial_fit are k epochs of fit (Adam's
    # moments carry on from call to call), bit for bit.
    params = {"hidden_layer_sizes": (6,), "batch_size": 40, "shuffle": False, "random_state": 0}
    fitted = quiet(MLPClassifier(max_iter=7, **params).fit, X_IRIS, Y_IRIS)
    stepped = MLPClassifier(**params)
    for _ in range(7):
        stepped.partial_fit(X_IRIS, Y_IRIS, classes=[0, 1, 2])
    assert stepped.loss_curve_ == fitted.loss_curve_ and stepped.t_ == fitted.t_ == 7 * len(X_IRIS)
    for a, b in zip(stepped.coefs_ + stepped.intercepts_, fitted.coefs_ + fitted.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_warm_start_continues_where_it_stopped():
    # Plain SGD at a constant rate has no state but the weights: 5 epochs, then 5 more from there, are 10.
    params = {"hidden_layer_sizes": (6,), "solver": "sgd", "momentum": 0.0, "shuffle": False, "random_state": 0}
    ten = quiet(MLPRegressor(max_iter=10, **params).fit, X_REG, Y_REG)
    warm = MLPRegressor(max_iter=5, warm_start=True, **params)
    quiet(warm.fit, X_REG, Y_REG)
    quiet(warm.fit, X_REG, Y_REG)
    assert warm.loss_curve_ == ten.loss_curve_ and warm.t_ == 10 * len(X_REG) and warm.n_iter_ == 5
    np.testing.assert_array_equal(warm.predict(X_REG), ten.predict(X_REG))
    cold = MLPRegressor(max_iter=5, **params)
    quiet(cold.fit, X_REG, Y_REG)
    quiet(cold.fit, X_REG, Y_REG)
    assert len(cold.loss_curve_) == 5  # without warm_start every fit starts afresh


# ---- what a scikit-learn user relies on ------------------------------------------------------------


def test_coefs_are_settable_in_scikit_learns_layout():
    reg = quiet(MLPRegressor(hidden_layer_sizes=(3,), activation="tanh", max_iter=2, random_state=0).fit, X_REG, Y_REG)
    assert [c.shape for c in reg.coefs_] == [(5, 3), (3, 1)] and reg.n_layers_ == 3
    rng = np.random.default_rng(1)
    reg.coefs_ = [rng.normal(size=(5, 3)), rng.normal(size=(3, 1))]
    reg.intercepts_[1] = np.array([0.5])
    by_hand = np.tanh(X_REG @ reg.coefs_[0] + reg.intercepts_[0]) @ reg.coefs_[1] + 0.5
    np.testing.assert_allclose(reg.predict(X_REG), by_hand.ravel(), rtol=1e-12)
    np.testing.assert_array_equal(reg.model_[0].weight.data, reg.coefs_[0].T)  # model_ took them in
    reg.coefs_[0][0, 0] = 7.0  # in place, through the view, too
    assert reg.model_[0].weight.data[0, 0] == 7.0
    reg.intercepts_ = [np.zeros(4), np.zeros(1)]
    with pytest.raises(ValueError, match=r"coefs_\[0\] has shape \(5, 3\) and intercepts_\[0\] \(4,\); layer 0 needs"):
        reg.predict(X_REG)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_sparse_inputs_give_the_dense_results(solver):
    # Made dense a batch at a time (adam, batches of 32) or whole (lbfgs): the same numbers as dense inputs.
    X = np.where(X_IRIS > 0.5, X_IRIS, 0.0)
    params = {"hidden_layer_sizes": (5,), "solver": solver, "batch_size": 32, "max_iter": 20, "random_state": 0}
    dense = quiet(MLPClassifier(**params).fit, X, Y_IRIS)
    sparse = quiet(MLPClassifier(**params).fit, scipy.sparse.csr_matrix(X), Y_IRIS)
    np.testing.assert_array_equal(sparse.predict_proba(scipy.sparse.csc_matrix(X)), dense.predict_proba(X))
    assert sparse.loss_curve_ == dense.loss_curve_


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_feature_names_are_kept_and_checked(Estimator):
    # scikit-learn's test_preserve_feature_names with a pyarrow table (its own uses pandas): the names are
    # kept, and early stopping's hold-out is scored without a "fitted without feature names" warning.
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"dose": X_IRIS[:, 0], "weight": X_IRIS[:, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = quiet(Estimator(hidden_layer_sizes=(3,), max_iter=5, early_stopping=True).fit, table, Y_IRIS % 2)
    assert list(model.feature_names_in_) == ["dose", "weight"]
    with pytest.warns(UserWarning, match="feature names"):
        model.predict(X_IRIS[:, :2])  # fitted with names, given none


def test_binary_probabilities_and_string_labels():
    mask = Y_IRIS > 0
    y = np.where(Y_IRIS[mask] == 1, "versicolor", "virginica")
    clf = quiet(MLPClassifier((8,), solver="lbfgs", random_state=0).fit, X_IRIS[mask], y)
    assert list(clf.classes_) == ["versicolor", "virginica"] and clf.n_outputs_ == 1  # one logistic output
    z = clf.model_(X_IRIS[mask]).data.ravel()
    proba = clf.predict_proba(X_IRIS[mask])
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-12)
    np.testing.assert_allclose(clf.predict_log_proba(X_IRIS[mask]), np.log(proba), rtol=1e-12)
    assert clf.score(X_IRIS[mask], y) > 0.95


def test_one_class_is_fitted_as_scikit_learn_does():
    clf = quiet(MLPClassifier((3,), max_iter=5).fit, np.zeros((4, 2)), ["a"] * 4)
    assert list(clf.predict(np.ones((2, 2)))) == ["a", "a"]


def test_explain_shows_the_chain_rule_of_a_fitted_estimator():
    reg = quiet(
        MLPRegressor(hidden_layer_sizes=(2,), activation="softplus", max_iter=3, random_state=0).fit,
        X_REG[:5, :1],
        Y_REG[:5],
    )
    explanation = reg.explain(X_REG[:5, :1], Y_REG[:5], "2.bias")
    # d loss / d b (output bias) = sum_i (p_i - y_i) / n for 0.5 * mean squared error (+ no penalty on biases)
    expected = np.mean(reg.predict(X_REG[:5, :1]) - Y_REG[:5])
    assert explanation.total == pytest.approx(expected, rel=1e-9)
    assert explanation.gradient == pytest.approx(expected, rel=1e-9)  # what backward computed
    chain = "dLoss/d2.bias[0] = sum_i dLoss/dDataLoss x dDataLoss/dlinear2_i x dlinear2_i/d2.bias[0]"
    assert explanation.chain.startswith(chain)
    assert reg.history_.n_iter == 3 and len(reg.history_.loss) == 3


def test_ssr_is_the_lessons_loss():
    x, y = cr.data.dosage()
    reg = quiet(
        MLPRegressor(
            loss="ssr",
            hidden_layer_sizes=(2,),
            activation="softplus",
            alpha=0.0,
            max_iter=1,
            solver="sgd",
            batch_size=3,
            random_state=0,
        ).fit,
        x.reshape(-1, 1),
        y,
    )
    mse = quiet(
        MLPRegressor(
            loss="squared_error",
            hidden_layer_sizes=(2,),
            activation="softplus",
            alpha=0.0,
            max_iter=1,
            solver="sgd",
            batch_size=3,
            random_state=0,
        ).fit,
        x.reshape(-1, 1),
        y,
    )
    # Same start; before the first update SSR = sum of squares = 2 n x (0.5 mean of squares), n = 3 dosages.
    assert reg.loss_curve_[0] == pytest.approx(6 * mse.loss_curve_[0], rel=1e-12)


def test_max_iter_warns_as_chainrule_and_as_sklearn():
    for category in (cr.ConvergenceWarning, SklearnConvergenceWarning):
        with pytest.warns(category, match=r"MLPClassifier: stochastic optimizer: maximum iterations \(2\)"):
            MLPClassifier(max_iter=2, random_state=0).fit(X_IRIS, Y_IRIS)
    assert issubclass(ConvergenceWarning, cr.ConvergenceWarning)


def test_the_old_names_are_aliases():
    assert NeuralNetworkClassifier is MLPClassifier and NeuralNetworkRegressor is MLPRegressor


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("hidden_layer_sizes", (4, 0), "an integer >= 1 or a sequence of integers >= 1"),
        ("activation", "gelu", "one of 'identity', 'logistic', 'relu', 'softplus', 'tanh'"),
        ("solver", "gd", "one of 'adam', 'lbfgs', 'sgd'"),
        ("learning_rate", 0.01, "one of 'adaptive', 'constant', 'invscaling'"),
        ("learning_rate_init", 0.0, "a finite number > 0"),
        ("momentum", 1.5, r"a number in \[0, 1\]"),
        ("n_iter_no_change", 0, "an integer >= 1 or inf"),
        ("shuffle", 1, "a bool"),
        ("batch_size", 0, "'auto' or an integer >= 1"),
    ],
)
def test_invalid_parameters_name_the_parameter_and_the_value(name, value, allowed):
    clf = MLPClassifier().set_params(**{name: value})
    with pytest.raises(
        ValueError,
        match=rf"The '{name}' parameter of MLPClassifier must be {allowed}.*Got {re.escape(repr(value))} instead",
    ):
        clf.fit(X_IRIS, Y_IRIS)


def test_invalid_loss():
    with pytest.raises(ValueError, match=r"The 'loss' parameter of MLPRegressor must be one of 'poisson', "):
        MLPRegressor(loss="mse").fit(np.zeros((3, 1)), np.zeros(3))


def test_pipeline_and_grid_search():
    pipe = make_pipeline(StandardScaler(), MLPClassifier(solver="lbfgs", max_iter=100, random_state=0))
    grid = {"mlpclassifier__hidden_layer_sizes": [(2,), (16,)], "mlpclassifier__alpha": [1e-4, 1.0]}
    search = quiet(GridSearchCV(pipe, grid, cv=3).fit, X_IRIS, Y_IRIS)
    assert search.best_score_ > 0.9
    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", random_state=0))
    assert quiet(cross_val_score, reg, X_REG, Y_REG, cv=3).min() > 0.9


# ---- imports and the digits -------------------------------------------------------------------------


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


def test_digits_example_reaches_96_percent(capsys):
    main = runpy.run_path(str(EXAMPLES / "digits.py"))["main"]
    assert main() >= 0.96
    assert "held-out accuracy" in capsys.readouterr().out


def test_digits_classifier_reaches_96_percent():
    images, labels = load_digits(return_X_y=True)
    X = (images / 16).astype(np.float32)
    clf = quiet(MLPClassifier((64,), max_iter=40, random_state=0).fit, X[:1300], labels[:1300])
    assert clf.coefs_[0].dtype == np.float32
    assert clf.score(X[1300:], labels[1300:]) >= 0.88  # scikit-learn's MLPClassifier(same arguments): 0.891


def test_weighted_and_poisson_mini_batches_are_replayed_with_each_batchs_weights():
    # the weights (and Poisson's constant) ride as extra target columns: the replay reads them per batch,
    # and its steps are the eager steps' (history_.engine says "eager" where the replay declined)
    rng = np.random.default_rng(0)
    X, y, w = rng.normal(size=(60, 3)), np.abs(rng.normal(size=60)), rng.uniform(0.5, 2.0, size=60)
    for options, weights in ((dict(), w), (dict(loss="poisson"), None)):
        reg = MLPRegressor(hidden_layer_sizes=(5,), max_iter=4, batch_size=20, random_state=0, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reg.fit(X, y, sample_weight=weights)
            eager = MLPRegressor(hidden_layer_sizes=(5,), max_iter=4, batch_size=20, random_state=0, **options)
            with cr.detect_anomaly():
                eager.fit(X, y, sample_weight=weights)  # anomaly mode: every step eager
        assert reg.history_.engine == "numpy"
        np.testing.assert_allclose(reg.loss_curve_, eager.loss_curve_, rtol=1e-12)
        for a, b in zip(reg.coefs_, eager.coefs_):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


# ---- the stochastic solvers through the Trainer, against scikit-learn's own runs -------------------------


def test_partial_fit_after_fit_goes_on_with_the_fits_optimizer():
    # scikit-learn's partial_fit keeps the optimizer a fit built (its rate, the invscaling clock t_): a fit
    # of 4 epochs, then 3 calls of partial_fit, epoch for epoch as scikit-learn's. (No momentum: with a rate
    # that changes, chainrule scales the velocity by the current rate, see the README's notes.)
    params = {"hidden_layer_sizes": (6,), "solver": "sgd", "momentum": 0.0, "learning_rate": "invscaling"}
    params |= {"power_t": 0.3}
    params |= {"learning_rate_init": 0.2, "max_iter": 4, "batch_size": 50, "random_state": 0}
    runs = []
    for module in (sk, cr.sklearn):
        clf = quiet(module.MLPClassifier(**params).fit, X_IRIS, Y_IRIS)
        for _ in range(3):
            clf.partial_fit(X_IRIS, Y_IRIS)
        runs.append(clf)
    theirs, ours = runs
    assert ours.t_ == theirs.t_ == 7 * len(X_IRIS)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)


def test_warm_start_begins_at_learning_rate_init_as_scikit_learns():
    # A warm-started fit builds a new optimizer: its first epoch takes learning_rate_init, the next ones
    # learning_rate_init / (t_ + 1) ** power_t with t_ counted from the first fit on.
    params = {"hidden_layer_sizes": (5,), "solver": "sgd", "momentum": 0.0, "learning_rate": "invscaling"}
    params |= {"learning_rate_init": 0.5, "max_iter": 3, "warm_start": True, "random_state": 0}
    runs = []
    for module in (sk, cr.sklearn):
        reg = module.MLPRegressor(**params)
        for _ in range(3):
            quiet(reg.fit, X_REG, Y_REG)
        runs.append(reg)
    theirs, ours = runs
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)


def test_verbose_says_what_scikit_learns_says(capsys):
    # The epoch lines, the validation scores and the plateau lines (adaptive: the rate / 5, then stop).
    params = {"hidden_layer_sizes": (4,), "solver": "sgd", "momentum": 0.0, "learning_rate": "adaptive", "tol": 0.05}
    params |= {"n_iter_no_change": 2, "max_iter": 40, "verbose": True, "random_state": 0}
    said = []
    for module in (sk, cr.sklearn):
        for early in (False, True):
            quiet(module.MLPClassifier(early_stopping=early, **params).fit, X_IRIS, Y_IRIS)
        said.append(capsys.readouterr().out.splitlines())
    theirs, ours = said
    assert len(ours) == len(theirs) and any("Setting learning rate to" in line for line in ours)
    for a, b in zip(ours, theirs):
        if a.startswith("Iteration"):  # the loss to rounding
            assert a.split("=")[0] == b.split("=")[0]
            assert float(a.split("=")[1]) == pytest.approx(float(b.split("=")[1]), rel=1e-7)
        else:
            assert a == b


def test_pickling_leaves_the_fitted_estimator_as_it_was_and_lbfgs_stopping_at_once_has_a_loss():
    # pickle read the estimator's own dict and took its run out of it: the next partial_fit started Adam afresh
    import pickle

    est = MLPClassifier(hidden_layer_sizes=(6,), random_state=0)
    twin = MLPClassifier(hidden_layer_sizes=(6,), random_state=0)
    for model in (est, twin):
        for _ in range(3):
            model.partial_fit(X_IRIS, Y_IRIS, classes=[0, 1, 2])
    pickle.dumps(est)
    est.partial_fit(X_IRIS, Y_IRIS)
    twin.partial_fit(X_IRIS, Y_IRIS)
    assert est.loss_curve_ == twin.loss_curve_
    # scipy's gradient test passes at the start (tol=10): no iteration, and loss_ is the loss there, scikit-learn's
    # own from the same Glorot start
    kw = dict(solver="lbfgs", tol=10, random_state=0)
    still = quiet(MLPClassifier(**kw).fit, X_IRIS, Y_IRIS)
    theirs = quiet(sk.MLPClassifier(**kw).fit, X_IRIS, Y_IRIS)
    assert still.n_iter_ == theirs.n_iter_ == 0
    assert still.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
