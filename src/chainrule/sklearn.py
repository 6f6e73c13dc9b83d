"""scikit-learn's MLP, trained by chainrule: :class:`MLPClassifier` and :class:`MLPRegressor`.

A drop-in for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``: the
same constructor parameters (names, meanings, defaults), methods and fitted
attributes, the same loss and stopping rule, the same warnings at the same
moments and the same Glorot-uniform start from ``random_state`` (so the same
starting network as scikit-learn's). Every step is chainrule's: the network is
an :func:`~chainrule.nn.mlp` (``model_``), its derivatives come from the
recorded graph by the chain rule (replayed as NumPy calls, see
:mod:`chainrule.trace`), the updates are :mod:`chainrule.optim`'s, the ``sgd`` and
``adam`` epochs run in the library's one training loop (:class:`~chainrule.Trainer`:
its schedules, stopping count and validation), and each epoch is written in a
:class:`~chainrule.History` (``history_``);
:meth:`MLPRegressor.explain` shows any derivative as its chain of local
derivatives. scikit-learn is an optional dependency (``pip install
"chainrule[sklearn]"``): ``import chainrule`` never imports it, only
``import chainrule.sklearn`` does.

Differences, on purpose (see the README's "scikit-learn drop-in" section):
``activation="softplus"`` and the regressor's ``loss="ssr"`` (the lessons') are
extras; sparse inputs are made dense a batch at a time (the whole matrix for L-BFGS, which
reads every row at every evaluation, and for ``predict``); with ``solver="sgd"``,
momentum and a learning rate that changes (``"invscaling"``, ``"adaptive"``)
the velocity is scaled by the current rate (PyTorch's convention) where
scikit-learn scales each gradient by the rate it entered with.

Example: the same code as with scikit-learn, one import changed::

    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from chainrule.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=2000, random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.95
    True
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d
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


from . import functional as F
from . import train
from .checks import AnyOf, Instance, Integer, Integers, Number, OneOf, Rule, sklearn_message
from .engines import forward_backward, loss_now
from .errors import CompileWarning, DivergenceError
from .explain import Explanation, explain
from .history import History
from .loop import Trainer
from .losses import binary_log_loss, cross_entropy, poisson, squared_error_by_row, ssr
from .nn import Linear, mlp
from .optim import LBFGS, Adam, GradientDescent, Momentum, Optimizer
from .schedules import Adaptive, InvScaling
from .tensor import Tensor, constant, named, no_grad, tensor_from

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "NeuralNetworkClassifier",
    "NeuralNetworkRegressor",
    "ConvergenceWarning",
]

# Inputs keep float32 (a float32 network, about twice as fast); anything else becomes float64.
_FLOATS = (np.float64, np.float32)
# scikit-learn's activation names -> chainrule's (and chainrule's own extra, "softplus").
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "relu": "relu", "softplus": "softplus", "tanh": "tanh"}
_BOOL = Instance((bool, np.bool_), "a bool")
_FRACTION = Number(low=0, high=1)  # [0, 1)

# What each parameter may be, as scikit-learn's _parameter_constraints say (and the extras).
_RULES: dict[str, Rule] = {
    "hidden_layer_sizes": AnyOf((Integer(low=1), Integers(low=1))),
    "activation": OneOf(sorted(_ACTIVATIONS)),
    "solver": OneOf(("adam", "lbfgs", "sgd")),
    "alpha": Number(low=0),
    "batch_size": AnyOf((OneOf(("auto",)), Integer(low=1))),
    "learning_rate": OneOf(("adaptive", "constant", "invscaling")),
    "learning_rate_init": Number(low=0, low_open=True),
    "power_t": Number(low=0),
    "max_iter": Integer(low=1),
    "shuffle": _BOOL,
    "tol": Number(low=0),
    "verbose": AnyOf((_BOOL, Integer(low=0))),
    "warm_start": _BOOL,
    "momentum": Number(low=0, high=1, high_open=False),
    "nesterovs_momentum": _BOOL,
    "early_stopping": _BOOL,
    "validation_fraction": _FRACTION,
    "beta_1": _FRACTION,
    "beta_2": _FRACTION,
    "epsilon": Number(low=0, low_open=True),
    "n_iter_no_change": AnyOf((Integer(low=1), OneOf((math.inf,)))),
    "max_fun": Integer(low=1),
}
_REGRESSION_LOSSES = OneOf(("poisson", "squared_error", "ssr"))
_NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need to be preprocessed."
)


class ConvergenceWarning(train.ConvergenceWarning, _SklearnConvergenceWarning):
    """Training reached ``max_iter``: a chainrule and a scikit-learn ConvergenceWarning at once.

    Filters for either ``chainrule.ConvergenceWarning`` or
    ``sklearn.exceptions.ConvergenceWarning`` catch it.
    """


# ---- the loss scikit-learn minimizes, as a chainrule graph ---------------------------------------


class _Objective:
    """The loss of one batch as a function of the network's raw outputs z and the batch's targets.

    ``kind`` is the output's: "squared_error" (identity), "poisson" (log link: the
    mean is exp(z)), "log_loss" (softmax), "binary_log_loss" (logistic, one
    column per label) or "ssr" (the lessons'). As scikit-learn's, the data loss is
    summed over the output columns and averaged over the rows (weighted by the
    sample weights), and the L2 penalty ``0.5 * alpha * sum ||W||^2`` is divided by
    the rows (the weights' sum). Targets carry extra columns where the loss needs
    them: Poisson's constant ``y log y - y`` and the sample weight, so that one
    recorded graph replays for every batch.

    NOTE: the penalty is part of the graph (``explain`` shows it, and scikit-learn's
    gradient test reads it); training adds it beside the graph (the Trainer's ``alpha``), a
    dozen fewer replayed operations a step; a test holds the two to the same loss and gradient.
    """

    def __init__(self, kind: str, weights: list[Tensor], alpha: float, k: int, weighted: bool) -> None:
        self.kind, self.weights, self.alpha, self.k, self.weighted = kind, weights, alpha, k, weighted
        self.reduction = "sum" if kind == "ssr" else "mean"
        self.__name__ = kind

    def pack(self, y: np.ndarray, sample_weight: np.ndarray | None, dtype: Any) -> np.ndarray:
        """The targets (n, k) as ``dtype``, with the extra columns this loss reads."""
        y = y.astype(dtype)
        columns = [y]
        if self.kind == "poisson":
            with np.errstate(divide="ignore", invalid="ignore"):
                columns.append(np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0.0) - y)
        if self.weighted:
            columns.append(np.ones((len(y), 1)) if sample_weight is None else sample_weight.reshape(-1, 1))
        return columns[0] if len(columns) == 1 else np.hstack(columns).astype(y.dtype)

    def __call__(self, z: Tensor, target: np.ndarray) -> Tensor:
        k, kind = self.k, self.kind
        if kind == "log_loss" and not self.weighted:  # one fused op: softmax and cross-entropy
            total = cross_entropy(z, target)
            return self._penalized(total, z.shape[0])
        t = constant(target, "Observed")
        if t.shape[1] != k:
            # NOTE: tracked, so that the slices of its extra columns (weights, Poisson's constant) are recorded
            # ops on the targets, which a replayed step reads as each batch's data; on a constant they would
            # be folded at the first batch's values (and the replay declined). No derivative is asked of it.
            t.requires_grad = True
        y = t if t.shape[1] == k else t[:, :k]
        if kind in ("squared_error", "ssr"):
            e = (y - z) ** 2 * (1.0 if kind == "ssr" else 0.5)
        elif kind == "poisson":
            e = F.exp(z) - y * z + t[:, k : 2 * k]
        elif kind == "binary_log_loss":
            e = F.softplus(z) - z * y  # -[y log p + (1 - y) log(1 - p)], p = sigmoid(z)
        else:
            e = -(y * F.log_softmax(z, axis=1))
        if kind == "ssr":
            return self._penalized(e.sum(), z.shape[0])
        if not self.weighted:
            return self._penalized(e.sum() * (1.0 / z.shape[0]), z.shape[0])
        w = t[:, -1:]
        total_weight = w.sum()
        data = (e * w).sum() / total_weight
        return self._penalized(data, total_weight)

    def _penalized(self, data: Tensor, rows: Any) -> Tensor:
        """The data loss plus 0.5 alpha sum ||W||^2 / rows, named "Loss" for explanations."""
        if not self.alpha:
            return named(data, "Loss")
        squares = sum(((w * w).sum() for w in self.weights), start=constant(np.zeros((), data.dtype), "zero"))
        return named(named(data, "DataLoss") + named(squares * (0.5 * self.alpha) / rows, "Penalty"), "Loss")


# ---- what the Trainer is handed: scikit-learn's loss, shuffles and learning rate ---------------------

# Each output's objective as the Trainer's loss (each row summed over its outputs, rows averaged, as scikit-learn's).
_TRAINER_LOSSES = {
    "squared_error": squared_error_by_row,
    "poisson": poisson,
    "log_loss": cross_entropy,
    "binary_log_loss": binary_log_loss,
    "ssr": ssr,
}


class _Shuffle:
    """scikit-learn's order of the rows, epoch after epoch: each epoch shuffles the last one's order
    (``sklearn.utils.shuffle(order, random_state=rng)``, the same draws), starting from the rows in
    order at each call of fit or partial_fit (``restart``). The Trainer calls it once an epoch."""

    def __init__(self, rng: np.random.RandomState) -> None:
        self.restart(rng)

    def restart(self, rng: np.random.RandomState) -> None:
        self.rng, self.order = rng, np.arange(0)

    def __call__(self, n: int) -> np.ndarray:
        if len(self.order) != n:
            self.order = np.arange(n)
        self.order = _shuffled(self.order, self.rng)
        return self.order


class _LearningRate:
    """What scikit-learn's tests read of its ``_optimizer``: ``learning_rate``, the rate of the next epoch."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    @property
    def learning_rate(self) -> float:
        return self.trainer.next_rate


def _say(verbose: Any, text: str) -> None:
    if verbose:
        print(text)


# ---- what both estimators share ---------------------------------------------------------------------


class _MLP(BaseEstimator):
    """Parameters, the network, the two solvers (stochastic epochs, L-BFGS), the forward pass."""

    _loss_kind: str  # set by each fit: the output layer's loss

    # ---- parameters -------------------------------------------------------------------------------

    def _check_params(self) -> list[int]:
        """Raise ValueError naming any parameter out of range; return the hidden sizes as a list."""
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, np.ndarray):
            sizes = sizes.tolist()
        for name, rule in _RULES.items():
            value = sizes if name == "hidden_layer_sizes" else getattr(self, name)
            if not rule.accepts(value):
                raise ValueError(sklearn_message(type(self).__name__, name, getattr(self, name), rule))
        return [int(sizes)] if isinstance(sizes, numbers.Integral) else [int(s) for s in sizes]

    # ---- fit and partial_fit ----------------------------------------------------------------------

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> Any:
        hidden = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _checked_weights(sample_weight, X)
        Y = Y.reshape(len(Y), -1)
        self.n_outputs_ = Y.shape[1]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize([X.shape[1], *hidden, self.n_outputs_], X.dtype)
        self.out_activation_, self._loss_kind = self._output()
        self._sync_model(X.dtype)
        with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", CompileWarning)  # a declined replay trains eagerly: same numbers
            if self.solver != "lbfgs":  # (the Trainer keeps time and engine)
                self._fit_stochastic(X, Y, sample_weight, incremental)
            else:
                self._fit_lbfgs(X, Y, sample_weight)
        self._publish()
        if not all(np.isfinite(p.data).all() for p in self.model_.parameters()):
            raise ValueError(_NON_FINITE)
        return self

    def _initialize(self, sizes: list[int], dtype: Any) -> None:
        """A fresh network from random_state (scikit-learn's Glorot start) and fresh fitted attributes."""
        self.n_iter_, self.t_ = 0, 0
        self.n_layers_ = len(sizes)
        self.model_ = mlp(
            sizes, activation=_ACTIVATIONS[self.activation], seed=self._random_state, dtype=dtype, init="glorot"
        )
        self._publish()
        self._trainer: Trainer | None = None  # a stochastic solver's run, kept for partial_fit
        self._best_values: list[np.ndarray] | None = None  # early stopping: the best validation score's parameters
        self.history_ = self._new_history()
        self.loss_curve_: list[float] = []
        self._no_improvement_count = 0
        if self.early_stopping and self.solver != "lbfgs":
            self.validation_scores_: list[float] | None = []
            self.best_validation_score_: float | None = -np.inf
            self.best_loss_: float | None = None
        else:
            self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None

    def _new_history(self) -> History:
        return History([(n, p.shape) for n, p in self.model_.named_parameters()], self.tol)

    def _fit_stochastic(self, X: np.ndarray, Y: np.ndarray, sample_weight: Any, incremental: bool) -> None:
        """Epochs of sgd or adam, run by chainrule's Trainer as scikit-learn runs its own: its batches and
        shuffles, loss, schedules and count of epochs without improvement, carried on from earlier calls."""
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.early_stopping and self.validation_scores_ is None:  # early_stopping switched on for a warm start
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        if not self.early_stopping and self.best_loss_ is None:  # or off
            self.best_loss_ = np.inf
        X_train, X_val, Y_train, Y_val, w_train, w_val = self._split(X, Y, sample_weight)
        n, size = X_train.shape[0], self._batch_size(X_train.shape[0])
        trainer = getattr(self, "_trainer", None)  # (none after coefs_ were set by hand, or a pickle)
        # scikit-learn keeps its optimizer (its state, its rate) from call to call of partial_fit, and from a
        # fit to the partial_fit calls after it; a fit builds a new one
        if incremental and trainer is not None and trainer.model is self.model_ and not self.early_stopping:
            if callable(trainer.settings.shuffle):
                trainer.settings.shuffle.restart(self._random_state)
            trainer.resume(1)
            trainer.set_data(X_train, self._trainer_targets(Y_train), w_train, batch_size=size)
            fresh = False
        else:
            trainer = self._new_trainer(X_train, Y_train, w_train, X_val, Y_val, w_val, size, incremental)
            fresh = True
        start, t = trainer.history.n_iter, self.t_
        trainer.callback = self._teller(start) if self.verbose else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", train.ConvergenceWarning)  # said below, in scikit-learn's words
                if fresh and t:  # a new optimizer's first epoch takes learning_rate_init, as scikit-learn's
                    trainer.step()
                    trainer.seen = t + n  # and the schedule goes on from the rows seen before
                trainer.run()
        except DivergenceError:
            self._took(trainer, start, t, n)
            self._trainer = None
            if not self.early_stopping:
                raise ValueError(_NON_FINITE) from None
            # scikit-learn scores the diverged epoch nan and puts back the best validation score's weights
            # (the Trainer did); it trains on to max_iter with weights that are not finite, the Trainer stops
            assert self.validation_scores_ is not None
            self.n_iter_, self.t_ = self.n_iter_ + 1, self.t_ + n
            self.loss_ = math.nan
            self.loss_curve_.append(math.nan)
            self.validation_scores_.append(math.nan)
            return
        except KeyboardInterrupt:
            trainer.history.end("interrupted (Ctrl-C)")
            warnings.warn("Training interrupted by user.", stacklevel=4)
        self._took(trainer, start, t, n)
        if not incremental and self.n_iter_ == self.max_iter and not trainer.history.converged:
            warnings.warn(
                f"{type(self).__name__}: stochastic optimizer: maximum iterations ({self.max_iter}) "
                "reached and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _new_trainer(
        self, X: Any, Y: np.ndarray, w: Any, X_val: Any, Y_val: Any, w_val: Any, size: int, incremental: bool
    ) -> Trainer:
        """A Trainer set as scikit-learn's solver: its optimizer, schedule (sgd's), stopping count and order."""
        optimizer: Optimizer
        if self.solver == "adam":
            # scikit-learn's Adam adds epsilon to sqrt(v) before the bias correction (Adam's eps_hat form)
            optimizer = Adam(self.learning_rate_init, betas=(self.beta_1, self.beta_2), eps=self.epsilon, eps_hat=True)
        elif self.momentum > 0:
            optimizer = Momentum(self.learning_rate_init, momentum=self.momentum, nesterov=self.nesterovs_momentum)
        else:
            optimizer = GradientDescent(self.learning_rate_init)
        name = self.learning_rate if self.solver == "sgd" else "constant"  # Adam's rate stays as it is
        schedule = InvScaling(self.power_t) if name == "invscaling" else Adaptive() if name == "adaptive" else None
        early = X_val is not None
        trainer = Trainer(
            self.model_,
            X,
            self._trainer_targets(Y),
            loss=_TRAINER_LOSSES[self._loss_kind],
            optimizer=optimizer,
            tol=float(self.tol),
            max_iter=1 if incremental else self.max_iter,  # (partial_fit: one epoch a call, see resume)
            batch_size=size,
            monitor=False,
            compile=True,
            alpha=float(self.alpha),
            sample_weight=w,
            schedule=schedule,
            validation=(X_val, self._trainer_targets(Y_val), w_val) if early else None,
            stopping="early" if early else "improvement",
            n_iter_no_change=self.n_iter_no_change,
            shuffle=_Shuffle(self._random_state) if self.shuffle else False,
        )
        if early:
            y_val = self._validation_targets(Y_val)
            trainer.scorer = lambda z, _, w_val: self._score_raw(z, y_val, w_val)
        trainer.on_plateau = self._plateau_teller(isinstance(schedule, Adaptive))
        best = self.best_validation_score_ if early else self.best_loss_
        assert best is not None  # (set by _initialize, or above, for the rule in use)
        best_values = getattr(self, "_best_values", None) if early else None
        trainer.carry_on(float(best), self._no_improvement_count, best_values)
        return trainer

    def _took(self, trainer: Trainer, start: int, t: int, n: int) -> None:
        """The fitted attributes after the Trainer's epochs from iteration ``start`` on (``t``: t_ before them)."""
        h = trainer.history
        self.history_, self._trainer, self._optimizer = h, trainer, _LearningRate(trainer)
        self.n_iter_ = h.n_iter - start
        self.t_ = t + self.n_iter_ * n
        trainer.seen = self.t_
        self.loss_curve_.extend(h.loss[start:])
        if self.n_iter_:
            self.loss_ = h.loss[-1]
        self._no_improvement_count = trainer.count.count
        if self.early_stopping:
            assert self.validation_scores_ is not None
            self.validation_scores_.extend(h.validation_score[start:])
            self.best_validation_score_ = trainer.count.best
            self._best_values = [p.data.copy() for p in trainer.settings.params]  # (put back by the Trainer)
        else:
            self.best_loss_ = trainer.count.best

    def _teller(self, start: int) -> Any:
        """scikit-learn's verbose lines of an epoch, as the Trainer's callback."""

        def tell(h: History) -> None:
            print(f"Iteration {h.n_iter - start}, loss = {h.loss[-1]:.8f}")
            if self.early_stopping:
                print(f"Validation score: {h.validation_score[-1]:f}")

        return tell

    def _plateau_teller(self, adaptive: bool) -> Any:
        """scikit-learn's verbose line at a plateau of the count (the rate lowered, or the run stopping)."""

        def tell(rate: float | None) -> None:
            why = self._no_improvement_sentence()
            if rate is not None:
                _say(self.verbose, why + f" Setting learning rate to {rate:f}")
            else:
                _say(self.verbose, why + (" Learning rate too small. Stopping." if adaptive else " Stopping."))

        return tell

    def _trainer_targets(self, Y: np.ndarray) -> np.ndarray:
        """The targets as the Trainer's loss reads them: class indices for the softmax, else as they are."""
        return Y.argmax(axis=1) if self._loss_kind == "log_loss" else Y

    def _no_improvement_sentence(self) -> str:
        what = "Validation score" if self.early_stopping else "Training loss"
        return f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."

    def _split(self, X: np.ndarray, Y: np.ndarray, w: Any) -> tuple:
        """(X_train, X_val, Y_train, Y_val, w_train, w_val): scikit-learn's hold-out for early stopping."""
        if not self.early_stopping:
            return X, None, Y, None, w, None
        stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = (X, Y) if w is None else (X, Y, w)
        parts = train_test_split(
            *arrays, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify
        )
        X_train, X_val, Y_train, Y_val = parts[:4]
        w_train, w_val = (None, None) if w is None else parts[4:]
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
            )
        return X_train, X_val, Y_train, Y_val, w_train, w_val

    def _validation_targets(self, Y_val: np.ndarray) -> np.ndarray:
        return Y_val

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=5
            )
        return int(np.clip(self.batch_size, 1, n))

    def _fit_lbfgs(self, X: np.ndarray, Y: np.ndarray, sample_weight: Any) -> None:
        """scipy's L-BFGS-B on the packed parameters, run by chainrule's Trainer (``optimizer=LBFGS()``):
        the loss, the penalty and the NumPy replay of every other solver; the History one row an iteration."""
        trainer = Trainer(
            self.model_,
            X,
            self._trainer_targets(Y),
            loss=_TRAINER_LOSSES[self._loss_kind],
            optimizer=LBFGS(max_iter=self.max_iter, max_fun=self.max_fun, tol=float(self.tol)),
            max_iter=self.max_iter,
            monitor=False,
            compile=True,
            alpha=float(self.alpha),
            sample_weight=sample_weight,
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", train.ConvergenceWarning)  # said below, in scikit-learn's words
                trainer.run()
        except DivergenceError:
            self.history_ = trainer.history
            raise ValueError(_NON_FINITE) from None
        h = self.history_ = trainer.history
        # loss_curve_ holds the loss after each iteration: the History's loss before the next, then the end's
        losses = [*h.loss[1:], loss_now(trainer.settings)] if h.n_iter else []
        self.loss_curve_.extend(losses)
        for k, loss in enumerate(losses, start=1):
            _say(self.verbose, f"Iteration {k}, loss = {loss:.8f}")
        self.n_iter_ = min(h.n_iter, self.max_iter)
        self.loss_ = losses[-1] if losses else loss_now(trainer.settings)  # (scipy may stop before iterating)
        if not h.converged:  # (the History's reason gives scipy's message)
            warnings.warn(
                f"{type(self).__name__}: lbfgs failed to converge after {self.n_iter_} iteration(s) "
                f"({h.stop_reason}). "
                f"Increase the number of iterations (max_iter={self.max_iter}) or max_fun "
                f"(max_fun={self.max_fun}), or scale the data (StandardScaler).",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _loss_grad_lbfgs(self, packed: np.ndarray, X: Any, Y: Any, sample_weight: Any = None, *scratch: Any) -> tuple:
        """scikit-learn's private hook, for its own gradient test: (loss, gradient) at ``packed``, the
        coefs_ then the intercepts_ flattened in scikit-learn's order; the network is left there.
        (``scratch``: scikit-learn's preallocated lists, not needed here.)"""
        self._sync_model()
        linears, dtype = self._linears(), self._linears()[0].weight.dtype
        start = 0
        for layer in linears:
            n_in, n_out = layer.in_features, layer.out_features
            layer.weight.data[...] = packed[start : start + n_in * n_out].reshape(n_in, n_out).T
            start += n_in * n_out
        for layer in linears:
            assert layer.bias is not None
            layer.bias.data[...] = packed[start : start + layer.out_features]
            start += layer.out_features
        Y = np.asarray(Y).reshape(len(Y), -1)
        objective = _Objective(
            self._loss_kind, self._weights(), float(self.alpha), Y.shape[1], sample_weight is not None
        )
        params = self.model_.parameters()
        loss, grads = forward_backward(
            self.model_,
            tensor_from(_dense(X).astype(dtype)),
            objective.pack(Y, sample_weight, dtype),
            objective,
            params,
        )
        by_name = dict(zip([id(p) for p in params], grads))
        coefs = [by_name[id(layer.weight)].T.ravel() for layer in linears]
        intercepts = [by_name[id(layer.bias)] for layer in linears]
        return loss, np.concatenate(coefs + intercepts)

    # ---- the network and scikit-learn's view of it -----------------------------------------------

    def _weights(self) -> list[Tensor]:
        return [layer.weight for layer in self._linears()]

    def _linears(self) -> list[Linear]:
        return [layer for layer in self.model_.layers if isinstance(layer, Linear)]

    def _publish(self) -> None:
        """coefs_ and intercepts_ as views of the network's parameters, in scikit-learn's (in, out) layout."""
        linears = self._linears()
        self.coefs_ = [layer.weight.data.T for layer in linears]
        self.intercepts_ = [layer.bias.data for layer in linears if layer.bias is not None]
        self._views = (list(self.coefs_), list(self.intercepts_))

    def _sync_model(self, dtype: Any = None) -> None:
        """Take in coefs_ and intercepts_ that were assigned since the last publish (or build model_ from them)."""
        views = getattr(self, "_views", None)
        if (
            views is not None
            and hasattr(self, "model_")
            and len(views[0]) == len(self.coefs_)
            and all(a is b for a, b in zip(views[0], self.coefs_))
            and all(a is b for a, b in zip(views[1], self.intercepts_))
        ):
            return
        coefs = [np.asarray(c) for c in self.coefs_]
        intercepts = [np.asarray(b).reshape(-1) for b in self.intercepts_]
        _check_layers(type(self).__name__, coefs, intercepts)
        dtype = dtype or coefs[0].dtype
        if not hasattr(self, "model_") or [lin.weight.shape[::-1] for lin in self._linears()] != [
            c.shape for c in coefs
        ]:
            sizes = [coefs[0].shape[0], *(c.shape[1] for c in coefs)]
            self.model_ = mlp(sizes, activation=_ACTIVATIONS[self.activation], dtype=dtype)
            self.history_ = self._new_history()
        for layer, c, b in zip(self._linears(), coefs, intercepts):
            layer.weight.data[...] = c.T
            assert layer.bias is not None
            layer.bias.data[...] = b
        self._publish()

    def _raw(self, X: np.ndarray) -> np.ndarray:
        """The network's outputs before the output activation, for checked X."""
        with no_grad():
            dtype = self._linears()[0].weight.dtype
            return self.model_(tensor_from(np.asarray(_dense(X), dtype=dtype))).data

    def _checked_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coefs_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False, dtype=_FLOATS)
        self._sync_model()
        return _dense(X)

    def explain(self, X: Any, y: Any, parameter: str = "0.weight", index: Any = None) -> Explanation:
        """The derivative of the training loss on (X, y) with respect to one parameter of ``model_``,
        as its chain of local derivatives (see :func:`chainrule.explain`).

        ``parameter`` is a name of ``model_.named_parameters()`` ("0.weight" is the first
        layer's weights, as ``coefs_[0].T``); ``index`` picks one element of it.

        Example: the lessons' data and a 1-2-1 SoftPlus network; a first-layer weight's
        derivative passes through the output layer, the SoftPlus and the first layer::

            >>> import numpy as np
            >>> from chainrule.sklearn import MLPRegressor
            >>> X, y = np.array([[0.0], [0.5], [1.0]]), np.array([0.0, 1.0, 0.0])
            >>> reg = MLPRegressor(hidden_layer_sizes=(2,), activation="softplus", alpha=0.0, solver="lbfgs",
            ...                    random_state=0).fit(X, y)
            >>> for factor in reg.explain(X, y, "0.weight", index=(1, 0)).chain.split(" x "):
            ...     print(factor)
            dLoss/d0.weight[1, 0] = sum_i dLoss/dlinear2_i
            dlinear2_i/dsoftplus1_i
            dsoftplus1_i/dlinear0_i
            dlinear0_i/d0.weight[1, 0]
        """
        X = self._checked_X(X)
        Y = self._targets_for_explain(y)
        param = dict(self.model_.named_parameters())[parameter]
        objective = _Objective(self._loss_kind, self._weights(), float(self.alpha), self.n_outputs_, False)
        loss = objective(self.model_(tensor_from(X.astype(param.dtype))), objective.pack(Y, None, param.dtype))
        return explain(loss, param, index)

    def _targets_for_explain(self, y: Any) -> np.ndarray:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # (a copy: for a class outside sklearn it is the object's own dict)
        state.pop("_views", None)  # views do not survive a pickle: published again after loading
        state.pop("_trainer", None)  # a run in progress (recorded steps): a loaded estimator's partial_fit
        state.pop("_optimizer", None)  # starts a new one, as after a fit
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "model_" in state:
            for p in self.model_.parameters():  # loaded arrays may be read-only (a memory map): own copies
                p.data = np.array(p.data)
            self._sync_model()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _check_layers(owner: str, coefs: list[np.ndarray], intercepts: list[np.ndarray]) -> None:
    """Assigned coefs_ and intercepts_ must chain: (n_in, n_1), (n_1, n_2), ... with intercepts (n_1,), (n_2,), ..."""
    if len(coefs) != len(intercepts) or not coefs:
        raise ValueError(
            f"{owner}: coefs_ and intercepts_ need one array per layer, got {len(coefs)} and {len(intercepts)}"
        )
    for i, (c, b) in enumerate(zip(coefs, intercepts)):
        if c.ndim != 2 or b.shape != (c.shape[1],) or (i and c.shape[0] != coefs[i - 1].shape[1]):
            raise ValueError(
                f"{owner}: coefs_[{i}] has shape {c.shape} and intercepts_[{i}] {b.shape}; layer {i} needs "
                f"({coefs[i - 1].shape[1] if i else 'n_in'}, n_out) and (n_out,)"
            )


def _shuffled(order: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """``sklearn.utils.shuffle(order, random_state=rng)`` without its argument checks (the same draws)."""
    perm = np.arange(len(order))
    rng.shuffle(perm)
    return order[perm]


def _rows(X: Any) -> Any:
    """X as training reads it: dense as given, sparse as CSR (rows are cut from it a batch at a time)."""
    return X.tocsr() if hasattr(X, "tocsr") else X


def _dense(X: Any) -> np.ndarray:
    """A sparse matrix made dense (chainrule's ops work on dense arrays); a dense one as it is."""
    return X.toarray() if hasattr(X, "toarray") else X


def _checked_weights(sample_weight: Any, X: np.ndarray) -> np.ndarray:
    """One finite weight per row of X, in X's dtype (a single number weighs every row alike)."""
    n = X.shape[0]
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, bool):
        return np.full(n, sample_weight, dtype=X.dtype)
    try:
        w = np.asarray(sample_weight, dtype=X.dtype)
    except (TypeError, ValueError):
        raise ValueError(f"sample_weight must be numbers, one per row of X, got {sample_weight!r:.60}") from None
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row of X, got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("sample_weight must be finite; it holds nan or inf")
    if n and not w.any():
        raise ValueError("sample_weight is zero for every row: there is nothing to fit (give some row a weight)")
    return w


_PARAMETERS = """
    Parameters
    ----------
    Those of scikit-learn's ``{name}``, with the same names, meanings and defaults:
    ``hidden_layer_sizes=(100,)``, ``activation="relu"`` ("identity", "logistic",
    "tanh", "relu", and chainrule's "softplus"), ``solver="adam"`` ("sgd", "lbfgs"),
    ``alpha=0.0001`` (L2 penalty ``0.5 * alpha * sum ||W||^2 / n``), ``batch_size="auto"``
    (``min(200, n)``), ``learning_rate="constant"`` ("invscaling", "adaptive"; sgd
    only), ``learning_rate_init=0.001``, ``power_t=0.5``, ``max_iter=200`` (epochs, or
    L-BFGS iterations), ``shuffle=True``, ``random_state=None``, ``tol=1e-4`` and
    ``n_iter_no_change=10`` (stop when the training loss, or with ``early_stopping``
    the validation score, has not improved by ``tol`` for that many epochs),
    ``verbose=False``, ``warm_start=False``, ``momentum=0.9``,
    ``nesterovs_momentum=True``, ``early_stopping=False``,
    ``validation_fraction=0.1``, ``beta_1=0.9``, ``beta_2=0.999``, ``epsilon=1e-8``,
    ``max_fun=15000``.{loss}

    Attributes
    ----------
    scikit-learn's: ``loss_``, ``best_loss_``, ``loss_curve_``, ``validation_scores_``,
    ``best_validation_score_``, ``t_``, ``coefs_`` and ``intercepts_`` (lists of
    (in, out) and (out,) arrays: views of ``model_``'s parameters, and settable),
    ``n_features_in_``, ``feature_names_in_``, ``n_iter_``, ``n_layers_``,
    ``n_outputs_``, ``out_activation_``{classes}. chainrule's: ``model_`` (the trained
    :func:`~chainrule.nn.mlp`, raw outputs before ``out_activation_``) and ``history_``
    (a :class:`~chainrule.History`: every epoch's loss, and per parameter its
    values, derivatives and steps).
"""


class MLPRegressor(RegressorMixin, _MLP):
    """Multi-layer perceptron regressor: scikit-learn's, trained by chainrule's backpropagation.

    Minimizes ``0.5 * mean((y - p)^2)`` (``loss="squared_error"``), scikit-learn's
    half Poisson deviance with a log link (``loss="poisson"``, predictions
    ``exp(z)``), or the lessons' sum of squared residuals (``loss="ssr"``), plus the
    L2 penalty.
    {parameters}
    Example::

        >>> import numpy as np
        >>> from chainrule.sklearn import MLPRegressor
        >>> X = np.linspace(-1, 1, 50).reshape(-1, 1); y = X.ravel() ** 2
        >>> reg = MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0).fit(X, y)
        >>> reg.score(X, y) > 0.99, reg.coefs_[0].shape, reg.predict(X[:2]).shape
        (True, (1, 8), (2,))
    """

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int | float = 10,
        max_fun: int = 15000,
    ) -> None:
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Fit the network to X (n, features), dense or sparse, and y (n,) or (n, outputs); return self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over (X, y) from where the network stands (a fresh one on the first call); return self."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _check_solver(self) -> bool:
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not.")
        return True

    def _output(self) -> tuple[str, str]:
        if not _REGRESSION_LOSSES.accepts(self.loss):
            raise ValueError(sklearn_message(type(self).__name__, "loss", self.loss, _REGRESSION_LOSSES))
        return ("exp", "poisson") if self.loss == "poisson" else ("identity", self.loss)

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True, dtype=_FLOATS, reset=reset
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return _rows(X), np.asarray(y, dtype=X.dtype)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions: (n,) for one output, (n, outputs) for several."""
        return self._predict(self._checked_X(X))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._from_raw(self._raw(X))

    def _from_raw(self, z: np.ndarray) -> np.ndarray:
        if self.out_activation_ == "exp":
            z = np.exp(z)
        return z.ravel() if z.shape[1] == 1 else z

    def _score_raw(self, z: np.ndarray, y: np.ndarray, sample_weight: Any) -> float:
        """R^2 of the predictions from the network's raw outputs z (early stopping's validation score)."""
        return _score_with(self._from_raw(z), y, sample_weight, r2_score)

    def _targets_for_explain(self, y: Any) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        return y.reshape(len(y), -1)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MLPClassifier(ClassifierMixin, _MLP):
    """Multi-layer perceptron classifier: scikit-learn's, trained by chainrule's backpropagation.

    Two classes: one logistic output; more: softmax outputs; a 2-D 0/1 target
    (multi-label): one logistic output per label. Minimizes the log-loss (the
    cross-entropy) plus the L2 penalty.
    {parameters}
    Example::

        >>> from sklearn.datasets import load_iris
        >>> from chainrule.sklearn import MLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = MLPClassifier((8,), solver="lbfgs", max_iter=300, random_state=0).fit(X, y)
        >>> clf.score(X, y) > 0.95, clf.out_activation_, clf.predict_proba(X[:1]).shape
        (True, 'softmax', (1, 3))
    """

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int | float = 10,
        max_fun: int = 15000,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Fit the network to X (n, features), dense or sparse, and labels y (n,) or 0/1 labels (n, k)."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> MLPClassifier:
        """One epoch over (X, y); ``classes`` (every label there will be) is needed on the first call."""
        if _first_partial_fit(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _check_solver(self) -> bool:
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not.")
        return True

    def _output(self) -> tuple[str, str]:
        if self._label_binarizer.y_type_ == "multiclass":
            return "softmax", "log_loss"
        return "logistic", "binary_log_loss"

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, dtype=_FLOATS, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous "
                        f"call to fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        return _rows(X), self._label_binarizer.transform(y).astype(bool)

    def _validation_targets(self, Y_val: np.ndarray) -> np.ndarray:
        return self._label_binarizer.inverse_transform(Y_val)

    def predict(self, X: Any) -> np.ndarray:
        """The predicted classes: (n,), or (n, labels) of 0/1 for a multi-label fit."""
        return self._predict(self._checked_X(X))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._from_raw(self._raw(X))

    def _from_raw(self, z: np.ndarray) -> np.ndarray:
        p = F.softmax(tensor_from(z), axis=1).data if self.out_activation_ == "softmax" else _sigmoid(z)
        return self._label_binarizer.inverse_transform(p.ravel() if self.n_outputs_ == 1 else p)

    def _score_raw(self, z: np.ndarray, y: np.ndarray, sample_weight: Any) -> float:
        """The accuracy of the classes from the network's raw outputs z (early stopping's validation score)."""
        if not np.isfinite(z).all():
            return np.nan
        return float(accuracy_score(y, self._from_raw(z), sample_weight=sample_weight))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """log P(class | row): ``log(predict_proba(X))``, as scikit-learn's (so the two argmaxes agree)."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def predict_proba(self, X: Any) -> np.ndarray:
        """P(class | row): (n, classes), rows summing to 1; one column per label for multi-label."""
        z = self._raw(self._checked_X(X))
        if self.out_activation_ == "softmax":
            return F.softmax(tensor_from(z), axis=1).data
        if self.n_outputs_ == 1:
            return np.hstack([_sigmoid(-z), _sigmoid(z)])
        return _sigmoid(z)

    def _targets_for_explain(self, y: Any) -> np.ndarray:
        return self._label_binarizer.transform(y).astype(self._linears()[0].weight.dtype)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0, -z))


def _score_with(pred: np.ndarray, y: np.ndarray, sample_weight: Any, score: Any) -> float:
    if np.issubdtype(pred.dtype, np.floating) and not np.isfinite(pred).all():
        return np.nan
    return float(score(y, pred, sample_weight=sample_weight))


def _first_partial_fit(estimator: Any, classes: Any) -> bool:
    """scikit-learn's rule for classes= in partial_fit: needed first, the same afterwards."""
    if getattr(estimator, "classes_", None) is None and classes is None:
        raise ValueError("classes must be passed on the first call to partial_fit.")
    if classes is None:
        return False
    if getattr(estimator, "classes_", None) is not None:
        if not np.array_equal(estimator.classes_, unique_labels(classes)):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, was: {estimator.classes_!r}"
            )
        return False
    estimator.classes_ = unique_labels(classes)
    return True


# The names of chainrule's first estimators, kept as aliases of the drop-ins (their parameters are now
# scikit-learn's: learning_rate_init for the rate, solver for the optimizer; the lessons' stopping rule
# lives on in chainrule.fit).
NeuralNetworkClassifier = MLPClassifier
NeuralNetworkRegressor = MLPRegressor

_LOSS_DOC = """ The regressor's ``loss``: "squared_error" (the default), "poisson", or
    chainrule's "ssr" (the lessons' sum of squared residuals: not divided by the rows)."""

# One parameter list for both docstrings, filled in here (docstrings are None under python -OO).
if MLPRegressor.__doc__ and MLPClassifier.__doc__:
    MLPRegressor.__doc__ = MLPRegressor.__doc__.format(
        parameters=_PARAMETERS.format(name="MLPRegressor", loss=_LOSS_DOC, classes="")
    )
    MLPClassifier.__doc__ = MLPClassifier.__doc__.format(
        parameters=_PARAMETERS.format(name="MLPClassifier", loss="", classes=", ``classes_``")
    )
