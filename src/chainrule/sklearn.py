"""scikit-learn estimators: chainrule networks in Pipeline, GridSearchCV and cross_val_score.

:class:`NeuralNetworkRegressor` and :class:`NeuralNetworkClassifier` build an
:func:`~chainrule.nn.mlp` and train it with :func:`chainrule.fit`, so they stop
by the lessons' rule (every step size of an epoch below ``tol``) or after
``max_iter`` epochs, with a :class:`ConvergenceWarning` that is both chainrule's
and scikit-learn's (none when ``tol=0``, which asks for exactly ``max_iter``
epochs). scikit-learn is an optional dependency (``pip install
"chainrule[sklearn]"``): ``import chainrule`` never imports it, only
``import chainrule.sklearn`` does.

Example: standardize, then a network with one hidden layer of 16 units,
trained for 200 epochs (``tol=0``: a fixed number of epochs, no warning)::

    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from chainrule.sklearn import NeuralNetworkClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(),
    ...                     NeuralNetworkClassifier((16,), learning_rate=0.01, tol=0, random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.95
    True
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "chainrule.sklearn needs scikit-learn, which is not installed; install it with "
        '`pip install "chainrule[sklearn]"` or `pip install scikit-learn`'
    ) from error

try:
    from sklearn.utils.validation import validate_data  # scikit-learn >= 1.6
except ImportError:  # pragma: no cover - older scikit-learn: the same checks as a method

    def validate_data(estimator, /, X="no_validation", y="no_validation", reset=True, **check_params):
        return estimator._validate_data(X, y, reset=reset, **check_params)


from . import train
from .checks import AnyOf, Integer, Integers, Number, OneOf, Rule, sklearn_message
from .functional import log_softmax, softmax
from .nn import ACTIVATIONS, mlp
from .optim import OPTIMIZERS, Momentum
from .tensor import no_grad

__all__ = ["NeuralNetworkRegressor", "NeuralNetworkClassifier", "ConvergenceWarning"]

# Inputs keep float32 (a float32 network, about twice as fast); anything else becomes float64.
_FLOATS = (np.float64, np.float32)

# What each parameter may be (the estimators' own fit checks loss: it is the regressor's alone).
_RULES: dict[str, Rule] = {
    "hidden_layer_sizes": AnyOf((Integer(low=1), Integers(low=1))),
    "activation": OneOf(sorted(ACTIVATIONS)),
    "optimizer": OneOf(sorted(OPTIMIZERS)),
    "learning_rate": Number(low=0, low_open=True),
    "momentum": Number(low=0, high=1),
    "tol": Number(low=0),
    "max_iter": Integer(low=1),
    "batch_size": AnyOf((OneOf(("auto",)), Integer(low=1, optional=True))),
}
_LOSS = OneOf(("mse", "ssr"))


class ConvergenceWarning(train.ConvergenceWarning, _SklearnConvergenceWarning):
    """Training reached ``max_iter``: a chainrule and a scikit-learn ConvergenceWarning at once.

    Filters for either ``chainrule.ConvergenceWarning`` or
    ``sklearn.exceptions.ConvergenceWarning`` catch it.
    """


class _NeuralNetwork(BaseEstimator):
    """What both estimators share: parameter checks, building the network, training, the forward pass."""

    def _train(self, X, targets, n_outputs, loss):
        """Build ``model_`` for X's dtype and fit it to ``targets``; set the fitted attributes."""
        sizes = self._check_params()
        rng = check_random_state(self.random_state)
        init_seed, shuffle_seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=2))
        self.model_ = mlp([X.shape[1], *sizes, n_outputs], activation=self.activation, seed=init_seed, dtype=X.dtype)
        batch_size = min(200, len(X)) if self.batch_size == "auto" else self.batch_size
        with warnings.catch_warnings():  # re-emitted below as a warning scikit-learn also knows
            warnings.simplefilter("ignore", train.ConvergenceWarning)
            history = train.fit(
                self.model_,
                X,
                targets,
                loss=loss,
                optimizer=self._optimizer(),
                tol=self.tol,
                max_iter=self.max_iter,
                batch_size=batch_size,
                seed=shuffle_seed,
                compile=True,
            )  # an mlp replays exactly: the same numbers, faster
        self.history_, self.n_iter_ = history, history.n_iter
        self.loss_curve_, self.loss_ = list(history.loss), history.final_loss
        if not history.converged and self.tol > 0:  # tol=0 asked for max_iter epochs: nothing to warn about
            warnings.warn(
                f"{type(self).__name__}: {history.stop_reason}. Raise max_iter or learning_rate, "
                "or scale the inputs (StandardScaler).",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _optimizer(self):
        if self.optimizer == "momentum":
            return Momentum(self.learning_rate, momentum=self.momentum)
        return OPTIMIZERS[self.optimizer](self.learning_rate)

    def _forward(self, X):
        """The network's raw outputs for X (a Tensor of the network's dtype, no graph recorded)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=_FLOATS)
        with no_grad():
            return self.model_(X.astype(self.model_[0].weight.dtype, copy=False))

    def _check_params(self) -> tuple[int, ...]:
        """Raise ValueError naming any parameter out of range; return the hidden sizes as a tuple."""
        for name, rule in _RULES.items():
            self._check(name, rule)
        sizes = self.hidden_layer_sizes
        return (int(sizes),) if isinstance(sizes, numbers.Integral) else tuple(int(s) for s in sizes)

    def _check(self, name: str, rule: Rule) -> None:
        """A ValueError in scikit-learn's sentence unless ``rule`` accepts the parameter ``name``."""
        value = getattr(self, name)
        if not rule.accepts(value):
            raise ValueError(sklearn_message(type(self).__name__, name, value, rule))


_PARAMETERS = """
    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(100,)
        Units per hidden layer; ``()`` gives a {linear} model.
    activation : {{"relu", "tanh", "sigmoid", "softplus", "identity"}}, default="relu"
        Between the layers (the lessons' network uses "softplus").{loss}
    optimizer : {{"adam", "momentum", "gd"}}, default="adam"
        :class:`~chainrule.optim.Adam`, :class:`~chainrule.optim.Momentum` or
        :class:`~chainrule.optim.GradientDescent`.
    learning_rate : float, default=0.001
        The optimizer's ``lr``. Plain "gd" usually wants a larger one (0.01 - 0.1).
    momentum : float, default=0.9
        Used by ``optimizer="momentum"`` only.
    tol : float, default=1e-4
        The lessons' stopping rule: stop when every step size of an epoch is below ``tol``.
        Adam's steps are about ``learning_rate`` in size until the gradients fade (with
        mini-batches they rarely do), so keep ``tol`` well below ``learning_rate``; ``tol=0``
        runs exactly ``max_iter`` epochs.
    max_iter : int, default=200
        Epochs (passes over the data). Reaching it with ``tol > 0`` emits a :class:`ConvergenceWarning`.
    batch_size : int, "auto" or None, default="auto"
        Rows per update, shuffled each epoch; "auto" is ``min(200, n_samples)``, None the full batch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and the shuffling; an int makes ``fit`` reproducible.

    Attributes
    ----------
    model_ : chainrule.nn.Sequential
        The trained network; call it on a :class:`~chainrule.Tensor` or see its parameters.
    history_ : chainrule.History
        What :func:`chainrule.fit` recorded: loss per epoch, step sizes, why it stopped.
    loss_curve_ : list of float
        The training loss at the start of each epoch.
    loss_ : float
        The last entry of ``loss_curve_``.
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
        Number of input features seen by ``fit``.
"""


class NeuralNetworkRegressor(RegressorMixin, _NeuralNetwork):
    """A multilayer perceptron for regression, trained by backpropagation; 1-D or 2-D targets.

    Predictions have the shape of the ``y`` given to ``fit``: (n,) for 1-D y,
    (n, outputs) for 2-D y. Scale the inputs (StandardScaler) for best results.
    {parameters}
    Example::

        >>> from sklearn.datasets import make_regression
        >>> from chainrule.sklearn import NeuralNetworkRegressor
        >>> X, y = make_regression(n_samples=100, n_features=3, noise=1.0, random_state=0)
        >>> reg = NeuralNetworkRegressor((), optimizer="gd", learning_rate=0.1, batch_size=None, random_state=0)
        >>> reg.fit(X, y).score(X, y) > 0.99       # no hidden layer: least squares by gradient descent
        True
        >>> reg.history_.stop_reason
        'every step size fell below 0.0001 at iteration 65'
        >>> reg.predict(X[:2]).shape
        (2,)
    """

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        *,
        loss: str = "mse",
        optimizer: str = "adam",
        learning_rate: float = 0.001,
        momentum: float = 0.9,
        tol: float = 1e-4,
        max_iter: int = 200,
        batch_size: int | str | None = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.tol = tol
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> NeuralNetworkRegressor:
        """Train a fresh network on X (n, features) and y (n,) or (n, outputs); return self."""
        self._check("loss", _LOSS)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=_FLOATS)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self._y_shape = y.shape[1:]
        targets = y.reshape(len(y), self.n_outputs_).astype(X.dtype)
        return self._train(X, targets, self.n_outputs_, self.loss)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, shaped (n,) or (n, outputs) as the y given to ``fit``."""
        out = self._forward(X).data
        return out.reshape(len(out), *self._y_shape)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}


class NeuralNetworkClassifier(ClassifierMixin, _NeuralNetwork):
    """A multilayer perceptron for classification: one logit per class, trained by cross-entropy.

    Labels may be any values ``numpy.unique`` can sort (ints, strings);
    ``classes_`` holds them and the network's output k is the logit of
    ``classes_[k]``. ``predict_proba`` is the softmax of the logits, for two
    classes as for more.
    {parameters}
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.

    Example::

        >>> from sklearn.datasets import load_iris
        >>> from chainrule.sklearn import NeuralNetworkClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = NeuralNetworkClassifier((8,), learning_rate=0.01, tol=0, random_state=0).fit(X, y)
        >>> clf.score(X, y) > 0.95
        True
        >>> clf.predict(X[:1]), clf.predict_proba(X[:1]).round(2)
        (array([0]), array([[0.99, 0.01, 0.  ]]))
    """

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        *,
        optimizer: str = "adam",
        learning_rate: float = 0.001,
        momentum: float = 0.9,
        tol: float = 1e-4,
        max_iter: int = 200,
        batch_size: int | str | None = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.tol = tol
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> NeuralNetworkClassifier:
        """Train a fresh network on X (n, features) and class labels y (n,); return self."""
        X, y = validate_data(self, X, y, dtype=_FLOATS)
        check_classification_targets(y)  # class labels, not continuous values (y is 1-D by now)
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in y; "
                f"got only one class: {self.classes_.tolist()[0]!r}"
            )
        return self._train(X, labels, len(self.classes_), "cross_entropy")

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        logits = self._forward(X).data
        return self.classes_[np.argmax(logits, axis=1)]

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """log P(class | row): the log-softmax of the logits, shape (n, n_classes)."""
        return log_softmax(self._forward(X), axis=1).data

    def predict_proba(self, X: Any) -> np.ndarray:
        """P(class | row): the softmax of the logits, shape (n, n_classes); rows sum to 1."""
        return softmax(self._forward(X), axis=1).data


_REGRESSION_LOSS = """
    loss : {"mse", "ssr"}, default="mse"
        Mean squared error, or the lessons' sum of squared residuals (its
        gradients grow with the number of rows: lower ``learning_rate``)."""

# One parameter list for both docstrings, filled in here (docstrings are None under python -OO).
if NeuralNetworkRegressor.__doc__ and NeuralNetworkClassifier.__doc__:
    NeuralNetworkRegressor.__doc__ = NeuralNetworkRegressor.__doc__.format(
        parameters=_PARAMETERS.format(linear="linear", loss=_REGRESSION_LOSS)
    )
    NeuralNetworkClassifier.__doc__ = NeuralNetworkClassifier.__doc__.format(
        parameters=_PARAMETERS.format(linear="linear (multinomial logistic)", loss="")
    )
