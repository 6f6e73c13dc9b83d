"""ONNX export: onnxruntime, an independent implementation, computes chainrule's predictions."""

import itertools
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule import export, modelfile
from chainrule.cli import main
from chainrule.modelfile import Model, Scaling
from chainrule.nn import ACTIVATIONS, DosageNetwork, Linear, ReLU, Sequential, Tanh, mlp

TASKS = {  # the class labels of each kind of model (None: regression)
    "regression": None,
    "binary-text": ["no", "yes"],
    "three-integers": [7, 1, 3],
    "three-text": ["cat", "dog", "fish"],
    "two-floats": [0.5, 2.5],
}


def _model(activation, task, standardize, seed=0, dtype=np.float64):
    """A small mlp whose hidden units leave their linear range on the inputs of _inputs."""
    classes = TASKS[task]
    rng = np.random.default_rng(seed)
    network = mlp([3, 5, 4, 1 if classes is None else len(classes)], activation, seed=rng, dtype=dtype)
    for p in network.parameters():
        p.data[...] = rng.normal(0.0, 1.5, p.shape)  # biases too, so that nothing is zero by chance
    scaling = None
    if standardize:
        target = (rng.normal(), rng.uniform(0.5, 3.0)) if classes is None else (None, None)
        scaling = Scaling(rng.normal(0, 2, 3).tolist(), rng.uniform(0.5, 3.0, 3).tolist(), *target)
    return Model(network, features=["a", "b", "c"], target="y", classes=classes, scaling=scaling)


def _inputs(seed=1, rows=40, dtype=np.float64):
    return np.random.default_rng(seed).normal(0.0, 3.0, (rows, 3)).astype(dtype)


def _run(proto_or_path, x):
    source = proto_or_path if isinstance(proto_or_path, str) else proto_or_path.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": x})))


def _assert_same(model, out, x, tol, margin=0.0):
    """onnxruntime's outputs ``out`` against chainrule's predictions on ``x`` (float64 inputs)."""
    if model.classes is None:
        np.testing.assert_allclose(out["prediction"], model.predict(x), rtol=tol, atol=tol)
        return
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), rtol=tol, atol=tol)
    logits = np.sort(model.outputs(x), axis=1)
    clear = logits[:, -1] - logits[:, -2] > margin  # rows whose label a rounding cannot flip
    assert clear.sum() > len(x) // 2
    assert list(out["label"][clear]) == list(model.predict(x)[clear])


@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardized"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_onnxruntime_predicts_what_chainrule_predicts_in_float64(activation, task, standardize):
    model = _model(activation, task, standardize)
    x = _inputs()
    out = _run(export.onnx_model(model), x)
    _assert_same(model, out, x, tol=1e-6)
    if model.classes is not None:  # every label, and of the labels' own type
        assert list(out["label"]) == list(model.predict(x))
        kind = {str: object, int: np.int64, float: np.float64}[type(model.classes[0])]
        assert out["label"].dtype == kind


@pytest.mark.parametrize("task", ["regression", "three-text", "three-integers"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_float32_export_agrees_to_1e_5(activation, task):
    model = _model(activation, task, standardize=True)
    x = _inputs()
    proto = export.onnx_model(model, dtype="float32")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    out = _run(proto, x.astype(np.float32))
    assert out["probabilities" if model.classes else "prediction"].dtype == np.float32
    _assert_same(model, out, x, tol=1e-5, margin=1e-3)


def test_a_float32_model_exports_float32_unless_asked():
    model = _model("tanh", "regression", standardize=True, dtype=np.float32)
    x = _inputs(dtype=np.float32)
    out = _run(export.onnx_model(model), x)
    assert out["prediction"].dtype == np.float32
    np.testing.assert_allclose(out["prediction"], model.predict(x), rtol=1e-5, atol=1e-5)
    wide = export.onnx_model(model, dtype=np.float64)  # the float32 weights, computed in float64
    np.testing.assert_allclose(_run(wide, x.astype(np.float64))["prediction"], model.predict(x), rtol=1e-5, atol=1e-5)


def test_softplus_stays_finite_and_exact_far_out():
    # softplus(800) = 800 exactly in float64; log(1 + e^800) would overflow to inf
    model = Model(mlp([1, 2, 1], "softplus", seed=0))
    x = np.array([[-800.0], [-40.0], [0.0], [40.0], [800.0]])
    for dtype in ("float64", "float32"):
        out = _run(export.onnx_model(model, dtype=dtype), x.astype(dtype))["prediction"]
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out, model.predict(x), rtol=1e-6 if dtype == "float64" else 1e-5)


def test_the_lessons_network_exports_with_the_lessons_numbers(tmp_path):
    # predicted = w3 softplus(x w1 + b1) + w4 softplus(x w2 + b2) + b3 at the lessons' values, e.g. dosage 0:
    # -1.22 log(1 + e^-1.43) - 2.30 log(1 + e^0.57) + 2.61 = -1.22 * 0.21455 - 2.30 * 1.01822 + 2.61 = 0.00633
    # (dosage 0.5: 1.00098, dosage 1: -0.00487): the squiggle through the observed 0, 1, 0
    net = DosageNetwork.from_lesson()
    path = str(tmp_path / "dosage.onnx")
    export.to_onnx(net, path)
    x = np.array([[0.0], [0.5], [1.0]])
    out = _run(path, x)["prediction"]
    np.testing.assert_allclose(out, [0.006335, 1.000981, -0.004870], atol=1e-6)
    np.testing.assert_allclose(out, net(x).data[:, 0], rtol=1e-12, atol=1e-12)


def test_any_number_of_rows_and_the_metadata():
    model = _model("relu", "three-text", standardize=True)
    proto = export.onnx_model(model)
    for rows in (1, 7, 300):
        x = _inputs(rows=rows)
        assert _run(proto, x)["label"].shape == (rows,)
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["rows", ""]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["features"]) == ["a", "b", "c"]
    assert json.loads(meta["classes"]) == ["cat", "dog", "fish"]
    assert (meta["task"], meta["target"]) == ("classification", '"y"')
    assert proto.opset_import[0].version == export.OPSET
    assert proto.producer_name == "chainrule"


def test_every_activation_of_nn_has_an_onnx_rule():
    assert set(export.ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize("task", ["binary-text", "three-integers", "regression"])
def test_to_onnx_takes_a_model_file_path_and_writes_a_checked_file(tmp_path, task):
    model = _model("sigmoid", task, standardize=True)
    model.save(tmp_path / "m.json")
    export.to_onnx(tmp_path / "m.json", tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    x = _inputs()
    _assert_same(modelfile.load(tmp_path / "m.json"), _run(str(tmp_path / "m.onnx"), x), x, tol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["m.json", "m.onnx"]  # no temporary file left


# ---- the command line -----------------------------------------------------------------------


def _csv(path, rows, header, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 4, (rows, 2)) + [10.0, -3.0]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for a, b in x.tolist():
            label = "big" if a + b > 7.5 else "small" if a > 10 else "other"
            f.write(f"{a!r},{b!r},{a * 0.5 - b + 1.0!r},{label}\n")
    return x


def _predicted(path):
    with open(path) as f:
        lines = [line.rstrip("\n").split(",") for line in f]
    return lines[0], lines[1:]


@pytest.mark.parametrize(
    "target,options,dtype",
    [
        ("y", ["--standardize", "--activation", "tanh"], "float64"),
        ("kind", ["--loss", "cross-entropy", "--standardize", "--activation", "relu"], "float64"),
        ("y", ["--activation", "softplus"], "float32"),
    ],
)
def test_export_on_the_command_line_gives_what_predict_writes(tmp_path, capsys, target, options, dtype):
    data, model, onnx_path = (str(tmp_path / name) for name in ("data.csv", "model.json", "model.onnx"))
    x = _csv(data, 30, ["a", "b", "y", "kind"])
    features = ["--features", "a,b"]
    fit = ["fit", data, "--target", target, *features, "--hidden", "4", "--max-iter", "30", "--quiet"]
    assert main([*fit, "--optimizer", "adam", "--lr", "0.05", *options, "--out", model]) == 0
    assert main(["export", model, "--out", onnx_path, "--dtype", dtype]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {onnx_path}: input 'input' takes rows of a, b")
    assert main(["predict", model, data, "--out", str(tmp_path / "p.csv")]) == 0
    header, rows = _predicted(str(tmp_path / "p.csv"))
    out = _run(onnx_path, x.astype(dtype))
    if target == "kind":
        assert header[-1] == "predicted_kind"
        assert list(out["label"]) == [row[-1] for row in rows]
    else:
        expected = [float(row[-1]) for row in rows]
        tol = 1e-6 if dtype == "float64" else 1e-5
        np.testing.assert_allclose(out["prediction"], expected, rtol=tol, atol=tol)


# ---- bad inputs -----------------------------------------------------------------------------


def _fails(capsys, argv, words):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own mistakes (chainrule's _Parser words them in one line)
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chainrule") and words in err, err


def test_bad_inputs_on_the_command_line_exit_2_with_one_line_and_write_nothing(tmp_path, capsys):
    model = str(tmp_path / "m.json")
    Model(mlp([2, 3, 1], "relu", seed=0)).save(model)
    (tmp_path / "notes.txt").write_text("not a model\n")
    (tmp_path / "folder").mkdir()
    out = str(tmp_path / "out.onnx")
    _fails(capsys, ["export", str(tmp_path / "notes.txt"), "--out", out], "is not a chainrule model file")
    _fails(capsys, ["export", str(tmp_path / "missing.json"), "--out", out], "No such file")
    _fails(capsys, ["export", model, "--out", str(tmp_path / "folder")], "it is a directory")
    _fails(capsys, ["export", model, "--out", model], "is the input file")
    _fails(capsys, ["export", model, "--out", str(tmp_path / "nowhere" / "m.onnx")], "does not exist")
    _fails(capsys, ["export", model, "--out", out, "--dtype", "float16"], "invalid choice: 'float16'")
    _fails(capsys, ["export", model], "--out")
    content = json.loads(open(model).read())
    content["architecture"]["activation"] = "elu"
    (tmp_path / "elu.json").write_text(json.dumps(content))
    _fails(capsys, ["export", str(tmp_path / "elu.json"), "--out", out], "architecture.activation must be one of")
    assert sorted(os.listdir(tmp_path)) == ["elu.json", "folder", "m.json", "notes.txt"]
    assert os.listdir(tmp_path / "folder") == []


def test_bad_inputs_in_python_raise_one_clear_line(tmp_path):
    model = Model(mlp([2, 3, 1], "relu", seed=0))
    out = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match=r"^to_onnx: dtype must be one of 'float64', 'float32', got 'float16'$"):
        export.to_onnx(model, out, dtype="float16")
    with pytest.raises(TypeError, match=r"^to_onnx: model_or_path must be a Model, a model file or a network, got"):
        export.to_onnx(42, out)
    with pytest.raises(
        ValueError, match=r"^to_onnx: exports networks made by chainrule.nn.mlp .*got Sequential of Linear, Linear$"
    ):
        export.to_onnx(Sequential(Linear(2, 3), Linear(3, 1)), out)
    mixed_layers = Sequential(Linear(2, 3), Tanh(), Linear(3, 3), ReLU(), Linear(3, 1))  # one line, not the repr
    with pytest.raises(ValueError, match=r"^[^\n]*got Sequential of Linear, Tanh, Linear, ReLU, Linear$"):
        export.to_onnx(mixed_layers, out)
    with pytest.raises(TypeError, match=r"^to_onnx: path must be a file name \(str or os.PathLike\), got None$"):
        export.to_onnx(model, None)
    with pytest.raises(ValueError, match="exists and is a directory"):
        export.to_onnx(model, tmp_path)
    model.save(tmp_path / "m.json")
    with pytest.raises(ValueError, match="is the model file itself"):
        export.to_onnx(tmp_path / "m.json", tmp_path / "m.json")
    model.activation = "elu"  # an activation nn might gain without an ONNX rule
    with pytest.raises(ValueError, match=r"^to_onnx: activation 'elu' has no ONNX form; exported are softplus, relu"):
        export.to_onnx(model, out)
    mixed = Model(mlp([2, 2], seed=0), classes=["a", 1])
    with pytest.raises(ValueError, match=r"^to_onnx: class labels must be all text or all numbers, got \['a', 1\]$"):
        export.to_onnx(mixed, out)
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


def test_without_the_onnx_package_export_says_what_to_install(tmp_path, capsys, monkeypatch):
    model = str(tmp_path / "m.json")
    Model(mlp([2, 3, 1], "relu", seed=0)).save(model)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    _fails(capsys, ["export", model, "--out", str(tmp_path / "m.onnx")], 'pip install "chainrule[export]"')
    assert os.listdir(tmp_path) == ["m.json"]


RUNS = itertools.count()
MODELS = ["m.json", "c.json", "m.json", "c.json", "notes.txt", "missing.json", "{folder}", "{run}"]
OUTS = ["out.onnx", "out.onnx", "out.onnx", "{folder}", "{input}", "missing/out.onnx", "", "{run}"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(MODELS), out=st.sampled_from(OUTS), dtype=st.sampled_from([None, "float32", "int8", ""]))
def test_random_export_command_lines_exit_0_or_2_and_write_nothing_on_2(tmp_path_factory, capsys, model, out, dtype):
    base = tmp_path_factory.getbasetemp() / "export-fuzz"
    if not base.exists():
        base.mkdir()
        (base / "folder").mkdir()
        (base / "notes.txt").write_text("not a model\n")
        Model(mlp([2, 3, 1], "tanh", seed=0)).save(base / "m.json")
        Model(mlp([2, 3, 2], "relu", seed=0), classes=[0, 1]).save(base / "c.json")
    run = base / f"run{next(RUNS)}"
    run.mkdir()
    places = {"{folder}": str(base / "folder"), "{run}": str(run)}
    model_path = places.get(model, str(base / model))
    out_path = {**places, "{input}": model_path, "": ""}.get(out, str(run / out))
    argv = ["export", model_path, "--out", out_path] + ([] if dtype is None else ["--dtype", dtype])
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, (argv, err)
    if code == 2:
        assert err.count("\n") == 1 and "error: " in err, (argv, err)
        assert os.listdir(run) == [], argv
    else:
        assert os.listdir(run) == ["out.onnx"], argv
