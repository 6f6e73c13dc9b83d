"""The public names of every module stay where users found them (the issue's "public API unchanged")."""

import importlib
import inspect

import pytest

import chainrule as cr

# Public names each module defined (or documented) before the training loop was made one.
# (scalar.train, fit's internal driver of the written-out path, became engines.WrittenOut.)
NAMES = {
    "chainrule": [
        "AnomalyError",
        "ConvergenceWarning",
        "DivergenceError",
        "GradcheckError",
        "GradientHealthWarning",
        "GradientMonitor",
        "History",
        "REGISTRY",
        "Tensor",
        "abs",
        "add",
        "clip",
        "concatenate",
        "detect_anomaly",
        "div",
        "exp",
        "explain",
        "fit",
        "gradcheck",
        "is_grad_enabled",
        "log",
        "log_softmax",
        "logsumexp",
        "matmul",
        "max",
        "maximum",
        "mean",
        "minimum",
        "mul",
        "neg",
        "no_grad",
        "pow",
        "relu",
        "reshape",
        "sigmoid",
        "softmax",
        "softplus",
        "sqrt",
        "stack",
        "sub",
        "sum",
        "tanh",
        "tensor",
        "transpose",
        "where",
        "nn",
        "losses",
        "optim",
        "data",
        "__version__",
    ],
    "chainrule.nn": [
        "ACTIVATIONS",
        "DosageNetwork",
        "Identity",
        "Linear",
        "Module",
        "Parameter",
        "ReLU",
        "Sequential",
        "Sigmoid",
        "SoftPlus",
        "Tanh",
        "mlp",
    ],
    "chainrule.optim": ["Adam", "GradientDescent", "KEEP_LIMIT", "Momentum", "OPTIMIZERS", "Optimizer", "PACK_LIMIT"],
    "chainrule.losses": ["LOSSES", "binary_cross_entropy", "cross_entropy", "get_loss", "mse", "ssr"],
    "chainrule.data": ["CSVData", "Dataset", "Rows", "dosage", "read_csv", "read_data", "read_parquet"],
    "chainrule.modelfile": [
        "DTYPES",
        "Evaluation",
        "FORMAT",
        "Model",
        "Scaling",
        "TASKS",
        "VERSION",
        "architecture",
        "atomic_open",
        "from_dict",
        "load",
        "save",
        "to_dict",
    ],
    "chainrule.sklearn": ["ConvergenceWarning", "NeuralNetworkClassifier", "NeuralNetworkRegressor"],
    "chainrule.trace": ["CompileWarning", "CompiledStep", "RECHECK", "Tape"],
    "chainrule.scalar": [
        "BACKWARD",
        "BLOCK",
        "FORWARD",
        "HYPERPARAMETERS",
        "MATRIX",
        "MAX_ELEMENTS",
        "MAX_OPERATIONS",
        "NAMESPACE",
        "Program",
        "RECHECK",
        "STRUCTURAL",
        "Step",
        "Unsupported",
        "hyperparameters",
        "program_source",
    ],
    "chainrule.train": [
        "ConvergenceWarning",
        "DivergenceError",
        "GradientHealthWarning",
        "GradientMonitor",
        "History",
        "TRACE_LIMIT",
        "Trace",
        "fit",
        "outside_stacklevel",
    ],
    "chainrule.tensor": [
        "AnomalyError",
        "Tensor",
        "apply",
        "constant",
        "detect_anomaly",
        "is_anomaly_enabled",
        "is_grad_enabled",
        "named",
        "no_grad",
        "tensor",
        "tensor_from",
    ],
    "chainrule.ops": [
        "Op",
        "REGISTRY",
        "UNBROADCAST_NAMES",
        "defop",
        "defop_variadic",
        "unbroadcast",
        "unbroadcast_lines",
    ],
    "chainrule.explain": [
        "ELEMENTWISE",
        "Explanation",
        "Factor",
        "INFIX",
        "MAX_LABEL",
        "MAX_PATHS",
        "MAX_POINTS",
        "MAX_WALKED",
        "Term",
        "explain",
    ],
    "chainrule.restarts": ["POPULATION", "draw_starts", "train_population"],
    "chainrule.gradcheck": ["GradcheckError", "gradcheck"],
    "chainrule.plot": ["gradients", "landscape", "loss_curve", "save", "squiggle", "training_curve"],
    "chainrule.cli": ["main"],
}


@pytest.mark.parametrize("module", sorted(NAMES))
def test_every_public_name_is_still_there(module):
    mod = importlib.import_module(module)
    missing = [name for name in NAMES[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"


def test_the_package_exports_what_its_all_lists_and_the_new_names():
    assert set(NAMES["chainrule"]) - {"nn", "losses", "optim", "data", "__version__"} <= set(cr.__all__)
    assert {"Trainer", "graph", "Graph", "FirstIterationWarning"} <= set(cr.__all__)
    assert all(hasattr(cr, name) for name in cr.__all__)


def test_fit_keeps_its_signature():
    parameters = inspect.signature(cr.fit).parameters
    assert list(parameters) == [
        "model",
        "x",
        "y",
        "loss",
        "optimizer",
        "params",
        "tol",
        "max_iter",
        "batch_size",
        "seed",
        "callback",
        "monitor",
        "restarts",
        "compile",
    ]
    defaults = {n: p.default for n, p in parameters.items() if p.default is not inspect.Parameter.empty}
    assert defaults == dict(
        loss="ssr",
        optimizer=None,
        params=None,
        tol=0.001,
        max_iter=1000,
        batch_size=None,
        seed=None,
        callback=None,
        monitor=True,
        restarts=None,
        compile=False,
    )
    assert list(inspect.signature(cr.Trainer).parameters) == list(parameters)
