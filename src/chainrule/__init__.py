"""chainrule: neural networks trained by backpropagation, derivatives you can see.

The engine is reverse-mode automatic differentiation on NumPy arrays::

    >>> import chainrule as cr
    >>> b3 = cr.tensor(0.0, requires_grad=True)
    >>> ssr = ((cr.tensor([0.0, 1.0, 0.0]) - (cr.tensor([1.0, 2.0, 1.0]) + b3)) ** 2).sum()
    >>> ssr.backward()
    >>> b3.grad          # sum_i -2 (observed_i - predicted_i) = -2 (-1 - 1 - 1) = 6
    array(6.)
"""

from . import data, losses, nn, optim, schedules  # noqa: E402  (sub-modules as cr.nn, cr.optim, ...)
from .explain import explain  # noqa: E402  (the function; the module stays importable as chainrule.explain)
from .functional import (
    abs,
    add,
    clip,
    concatenate,
    div,
    exp,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    minimum,
    mul,
    neg,
    pow,
    relu,
    reshape,
    sigmoid,
    softmax,
    softplus,
    sqrt,
    stack,
    sub,
    sum,
    tanh,
    transpose,
    where,
)
from .gradcheck import GradcheckError, gradcheck
from .ops import REGISTRY
from .picture import graph  # the recorded graph (tensor.graph) that draws itself
from .tensor import AnomalyError, Graph, Tensor, detect_anomaly, is_grad_enabled, no_grad, tensor
from .train import (
    ConvergenceWarning,
    DivergenceError,
    FirstIterationWarning,
    GradientHealthWarning,
    GradientMonitor,
    History,
    PrematureStopWarning,
    Trainer,
    fit,
)
from .version import __version__ as __version__

__all__ = [
    "Tensor",
    "tensor",
    "no_grad",
    "detect_anomaly",
    "is_grad_enabled",
    "AnomalyError",
    "graph",
    "Graph",
    "gradcheck",
    "GradcheckError",
    "REGISTRY",
    "nn",
    "losses",
    "optim",
    "schedules",
    "data",
    "fit",
    "Trainer",
    "History",
    "ConvergenceWarning",
    "FirstIterationWarning",
    "PrematureStopWarning",
    "DivergenceError",
    "explain",
    "GradientMonitor",
    "GradientHealthWarning",
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "neg",
    "matmul",
    "maximum",
    "minimum",
    "where",
    "exp",
    "log",
    "sqrt",
    "abs",
    "tanh",
    "sigmoid",
    "softplus",
    "relu",
    "clip",
    "sum",
    "mean",
    "max",
    "logsumexp",
    "softmax",
    "log_softmax",
    "reshape",
    "transpose",
    "concatenate",
    "stack",
]
