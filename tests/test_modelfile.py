"""modelfile: save and load bit for bit, atomically, and refuse anything that is not a valid model file."""

import base64
import json
import os
import stat

import numpy as np
import pytest

from chainrule import modelfile
from chainrule.data import read_csv
from chainrule.losses import ssr
from chainrule.modelfile import Model, Scaling, atomic_open, load, save
from chainrule.nn import DosageNetwork, mlp


def _regressor(dtype=np.float64, scaling=True):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (20, 2))
    y = x[:, 0] * 10 - x[:, 1]
    scale = Scaling.fit(x, y) if scaling else None
    model = Model(
        mlp([2, 5, 3, 1], "tanh", seed=1, dtype=dtype), ["a", "b"], "y", scaling=scale, training={"n_iter": 7}
    )
    return model, x, y


def _classifier():
    return Model(mlp([1, 4, 3], "relu", seed=2), ["x"], "kind", classes=["ant", "bee", "cat"], loss="cross_entropy")


def _content(tmp_path, model=None):
    path = tmp_path / "m.json"
    save(path, model or _regressor()[0])
    return json.loads(path.read_text())


def _load_dict(tmp_path, content):
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(content))
    return load(path)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_saved_and_loaded_model_predicts_bit_for_bit_the_same(tmp_path, dtype):
    model, x, _ = _regressor(dtype)
    save(tmp_path / "m.json", model)
    loaded = load(tmp_path / "m.json")
    assert np.array_equal(loaded.predict(x), model.predict(x))
    for (name, p), (_, q) in zip(model.network.named_parameters(), loaded.network.named_parameters()):
        assert q.dtype == dtype and p.data.tobytes() == q.data.tobytes(), name
    assert loaded.scaling == model.scaling and loaded.training == {"n_iter": 7}


def test_classifier_keeps_its_labels_and_probabilities(tmp_path):
    model = _classifier()
    save(tmp_path / "c.json", model)
    loaded = load(tmp_path / "c.json")
    x = np.linspace(-3, 3, 11)[:, None]
    assert loaded.classes == ["ant", "bee", "cat"] and loaded.task == "classification"
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert np.allclose(loaded.predict_proba(x).sum(axis=1), 1.0)
    assert set(loaded.predict(x)) <= {"ant", "bee", "cat"}


def test_numeric_class_labels_come_back_as_the_numbers_they_were(tmp_path):
    model = Model(mlp([1, 2, 2], seed=0), ["x"], "k", classes=[0, 2.5])
    save(tmp_path / "n.json", model)
    labels = load(tmp_path / "n.json").predict([[0.0], [1.0]])
    assert all(type(v) in (int, float) and v in (0, 2.5) for v in labels)


def test_predicts_from_an_array_a_csv_table_or_a_csv_path(tmp_path):
    model, x, _ = _regressor()
    path = tmp_path / "rows.csv"
    path.write_text(
        "b,id,a\n" + "".join(f"{float(r[1])!r},{i},{float(r[0])!r}\n" for i, r in enumerate(x))
    )  # another order
    from_array = model.predict(x)
    assert np.array_equal(model.predict(path), from_array)
    assert np.array_equal(model.predict(model.read_csv(path)), from_array)


def test_one_feature_models_take_a_flat_array_too():
    model = Model(mlp([1, 2, 1], seed=0), ["x"])
    assert np.array_equal(model.predict([0.0, 1.0]), model.predict([[0.0], [1.0]]))
    with pytest.raises(ValueError, match=r"expected inputs of shape \(rows, 1\).*got shape \(2, 2\)"):
        model.predict(np.zeros((2, 2)))


def test_evaluate_gives_the_training_loss_on_the_original_scale(tmp_path):
    model, x, y = _regressor()
    result = model.evaluate(x, y)
    assert result.loss_name == "ssr" and result.rows == 20 and result.accuracy is None
    assert result.loss == ssr(model.predict(x), y).item()


def test_evaluate_a_classifier_counts_the_right_labels(tmp_path):
    model = _classifier()
    x = np.array([[-2.0], [0.0], [2.0]])
    labels = model.predict(x)
    assert model.evaluate(x, labels).accuracy == 1.0
    with pytest.raises(ValueError, match=r"label 'zebra' is not one of the model's classes"):
        model.evaluate(x, ["zebra"] * 3)


def test_regression_has_no_probabilities():
    with pytest.raises(ValueError, match="does regression"):
        _regressor()[0].predict_proba(np.zeros((1, 2)))


def test_scaling_leaves_constant_columns_at_zero_instead_of_dividing_by_zero():
    s = Scaling.fit([[1.0, 5.0], [3.0, 5.0]], [2.0, 2.0])
    assert s.feature_std == [1.0, 1.0] and s.target_std == 1.0 and s.feature_mean == [2.0, 5.0]


def test_the_file_is_documented_json_without_temp_files_left(tmp_path):
    content = _content(tmp_path)
    assert list(content) == [
        "format",
        "version",
        "written_by",
        "architecture",
        "parameters",
        "preprocessing",
        "training",
    ]
    assert content["format"] == "chainrule-model" and content["version"] == 1
    assert content["architecture"] == {"kind": "mlp", "sizes": [2, 5, 3, 1], "activation": "tanh", "task": "regression"}
    weight = content["parameters"]["0.weight"]
    assert weight["shape"] == [5, 2] and weight["dtype"] == "float64"
    assert len(base64.b64decode(weight["data"])) == 2 * 5 * 8
    assert content["preprocessing"]["features"] == ["a", "b"] and content["training"]["loss"] == "ssr"
    assert os.listdir(tmp_path) == ["m.json"]


def test_the_file_gets_an_ordinary_mode_not_a_private_temp_files(tmp_path):
    save(tmp_path / "m.json", _regressor()[0])
    mode = stat.S_IMODE(os.stat(tmp_path / "m.json").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half of the new")
        raise RuntimeError("disk on fire")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_a_model_that_cannot_be_encoded_writes_nothing(tmp_path):
    model = _regressor()[0]
    model.training["final_loss"] = float("nan")  # not JSON: refused before any file exists
    with pytest.raises(ValueError):
        save(tmp_path / "m.json", model)
    assert os.listdir(tmp_path) == []


def test_save_takes_a_bare_mlp_with_keywords_and_refuses_other_networks(tmp_path):
    save(tmp_path / "m.json", mlp([3, 1], seed=0), features=["p", "q", "r"], target="s")
    assert load(tmp_path / "m.json").features == ["p", "q", "r"]
    with pytest.raises(ValueError, match="networks made by chainrule.nn.mlp"):
        save(tmp_path / "d.json", DosageNetwork.from_lesson())
    with pytest.raises(TypeError, match="given by the Model itself"):
        save(tmp_path / "x.json", _classifier(), target="other")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"features": ["a"]}, r"features must be 2 distinct names"),
        ({"features": ["a", "a"]}, r"features must be 2 distinct names"),
        ({"classes": ["only"]}, r"one network output per class"),
        ({"loss": "hinge"}, r"loss must be one of"),
    ],
)
def test_model_checks_its_parts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Model(mlp([2, 3, 1], seed=0), **{"features": ["a", "b"], **kwargs})


# ---- loading refuses what is not a valid model file -------------------------------------


def _edit(path, value):
    """A function setting content[path...] = value (or deleting it when value is DELETE)."""

    def apply(content):
        *keys, last = path
        target = content
        for k in keys:
            target = target[k]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
        return content

    return apply


DELETE = object()
ZEROS_2x5_F4 = base64.b64encode(np.zeros((2, 5), "<f4").tobytes()).decode()
NAN_2x5 = base64.b64encode(np.full((2, 5), np.nan).astype("<f8").tobytes()).decode()


@pytest.mark.parametrize(
    "edit, message",
    [
        (_edit(["format"], "keras"), r"not a chainrule model file \(format 'keras', expected 'chainrule-model'\)"),
        (_edit(["version"], 2), r"version 2 is not supported; this chainrule reads version 1"),
        (_edit(["architecture"], DELETE), r"architecture is missing"),
        (_edit(["parameters"], []), r"parameters must be an object, got \[\]"),
        (_edit(["architecture", "kind"], "cnn"), r"architecture.kind must be 'mlp'"),
        (
            _edit(["architecture", "sizes"], [2, 0, 1]),
            r"architecture.sizes must be a sequence of at least 2 integers >= 1, got \[2, 0, 1\]",
        ),
        (_edit(["architecture", "activation"], "swish"), r"activation must be one of .* got 'swish'"),
        (_edit(["architecture", "task"], "ranking"), r"task must be one of"),
        (
            _edit(["architecture", "sizes"], [2, 5, 4, 1]),
            r"parameters.2.weight.shape is \[3, 5\], the architecture needs \[4, 5\]",
        ),
        (
            _edit(["parameters", "0.weight", "shape"], [2, 5]),
            r"parameters.0.weight.shape is \[2, 5\], the architecture needs \[5, 2\]",
        ),
        (
            _edit(["parameters", "0.weight", "dtype"], "int32"),
            r"parameters.0.weight.dtype must be one of 'float32', 'float64', got 'int32'",
        ),
        (_edit(["parameters", "0.weight", "data"], "!!!"), r"parameters.0.weight.data is not valid base64"),
        (
            _edit(["parameters", "0.weight", "data"], ZEROS_2x5_F4),
            r"parameters.0.weight.data holds 40 bytes, shape \[5, 2\] of float64 needs 80",
        ),
        (
            _edit(["parameters", "0.weight", "data"], NAN_2x5),
            r"parameters.0.weight contains NaN or inf \(10 of 10 values\)",
        ),
        (
            _edit(["parameters", "0.bias"], DELETE),
            r"parameters for architecture.sizes \[2, 5, 3, 1\] are .*: missing \['0.bias'\], unexpected \[\]",
        ),
        (
            _edit(["parameters", "9.weight"], {"shape": [1], "dtype": "float64", "data": ""}),
            r"missing \[\], unexpected \['9.weight'\]",
        ),
        (_edit(["preprocessing", "features"], ["a"]), r"features must be 2 distinct names"),
        (_edit(["preprocessing", "features"], "ab"), r"preprocessing.features must be a list, got 'ab'"),
        (_edit(["preprocessing", "target"], 3), r"target must be a column name or null"),
        (
            _edit(["preprocessing", "classes"], ["p", "q"]),
            r"task is 'regression' but preprocessing.classes is \['p', 'q'\]",
        ),
        (
            _edit(["preprocessing", "feature_std"], [1.0, 0.0]),
            r"preprocessing.feature_std.1 must be a finite number >= MIN_STD = 1e-150, got 0.0",
        ),
        (
            _edit(["preprocessing", "feature_mean"], [1.0]),
            r"preprocessing.feature_mean must be 2 finite numbers \(one per feature\), got \[1.0\]",
        ),
        (_edit(["preprocessing", "target_std"], -1.0), r"target_mean/target_std must be finite numbers"),
        (_edit(["training", "loss"], "hinge"), r"training.loss must be one of .* got 'hinge'"),
        (_edit(["training", "loss"], "cross_entropy"), r"training.loss must be one of 'mse', 'ssr' for regression"),
    ],
)
def test_load_names_what_is_wrong(tmp_path, edit, message):
    content = edit(_content(tmp_path))
    with pytest.raises(ValueError, match=message) as info:
        _load_dict(tmp_path, content)
    assert "edited.json" in str(info.value)


def test_classifier_labels_must_match_the_outputs(tmp_path):
    content = _content(tmp_path, _classifier())
    content["preprocessing"]["classes"] = ["ant", "bee"]
    with pytest.raises(ValueError, match=r"one network output per class"):
        _load_dict(tmp_path, content)
    content["preprocessing"]["classes"] = ["ant", 1, "cat"]
    with pytest.raises(ValueError, match=r"all text or all finite numbers"):
        _load_dict(tmp_path, content)


def test_absurd_parameters_are_refused_when_read_and_when_written(tmp_path):
    # the reproduction: weights of 1e200 loaded, and predict gave 2e198 without a word
    model = _regressor()[0]
    weight = model.network.parameters()[0]
    weight.data[0, 0] = 1e200
    with pytest.raises(
        ValueError, match=r"cannot save the model: parameters.0.weight holds a value of magnitude 1e\+200"
    ):
        save(tmp_path / "m.json", model)
    assert not (tmp_path / "m.json").exists()
    weight.data[0, 0] = -1e100  # MAX_MAGNITUDE itself is a parameter a file may hold
    save(tmp_path / "m.json", model)
    assert load(tmp_path / "m.json").network.parameters()[0].data[0, 0] == -1e100
    content = json.loads((tmp_path / "m.json").read_text())
    raw = np.frombuffer(base64.b64decode(content["parameters"]["2.bias"]["data"]), "<f8").copy()
    raw[0] = 1e200
    content["parameters"]["2.bias"]["data"] = base64.b64encode(raw.tobytes()).decode("ascii")
    with pytest.raises(
        ValueError, match=r"edited.json: parameters.2.bias holds a value of magnitude 1e\+200, beyond .*1e\+100"
    ):
        _load_dict(tmp_path, content)


@pytest.mark.parametrize(
    "model, field, names, message",
    [
        ("regressor", "features", [f"f{k}" for k in range(100_000)], r"got 100000 \(100000 distinct\): \['f0', "),
        ("regressor", "features", ["a"] * 100_000, r"got 100000 \(1 distinct\): \['a', 'a', "),
        ("classifier", "classes", [f"c{k}" for k in range(100_000)], r"3 outputs for the 100000 classes \['c0', "),
    ],
)
def test_a_long_list_in_a_model_file_is_shortened_in_the_error(tmp_path, model, field, names, message):
    # 100,000 names where the network has 2 inputs (or 3 outputs): one line of about 200 characters, the
    # first 10 names and "... and 99990 more", not every name (about 1 MB)
    content = _content(tmp_path, _regressor()[0] if model == "regressor" else _classifier())
    content["preprocessing"][field] = names
    with pytest.raises(ValueError, match=message) as raised:
        _load_dict(tmp_path, content)
    text = str(raised.value)
    assert len(text) < 400 and "\n" not in text and text.endswith("... and 99990 more]")


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json at all", r"is not a chainrule model file \(not JSON"),
        ('{"format": "chainrule-model", "version": NaN}', r"NaN is not allowed in a model file"),
        ("[1, 2]", r"not a chainrule model file \(format 'list'"),
    ],
)
def test_load_refuses_files_that_are_not_model_files(tmp_path, text, message):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        load(tmp_path / "bad.json")


def test_load_refuses_binary_files(tmp_path):
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    with pytest.raises(ValueError, match="not a chainrule model file"):
        load(tmp_path / "image.png")


def test_loading_executes_nothing(tmp_path):
    content = _content(tmp_path)
    content["training"]["note"] = "__import__('os').system('touch pwned')"  # stays a string
    loaded = _load_dict(tmp_path, content)
    assert loaded.training["note"].startswith("__import__") and not (tmp_path / "pwned").exists()


def test_evaluate_and_predict_read_csv_columns_by_name(tmp_path):
    model = _classifier()
    path = tmp_path / "rows.csv"
    path.write_text("kind,x\nant,-2\nbee,0\ncat,2\n")
    data = read_csv(path, target="kind", features=["x"])
    assert model.evaluate(path) == model.evaluate(data)
    assert modelfile.Evaluation._fields == ("loss_name", "loss", "accuracy", "rows")


# ---- nothing a file claims costs anything before it is checked --------------------------


def _refused(tmp_path, content, message):
    with pytest.raises(ValueError, match=message) as info:
        _load_dict(tmp_path, content)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_huge_sizes_with_small_data_fail_fast_without_allocating(tmp_path):
    content = _content(tmp_path)
    content["architecture"]["sizes"] = [2, 1000000, 1000000, 1]  # 10**12 parameters: 8 TB as float64
    _refused(tmp_path, content, r"architecture.sizes .* more than MAX_PARAMETERS = 50000000")
    content["architecture"]["sizes"] = [2, 1000, 1000, 1]  # under the cap, but the data is not there
    _refused(tmp_path, content, r"parameters.0.weight.shape is \[5, 2\], the architecture needs \[1000, 2\]")


def test_the_parameter_cap_can_be_raised(tmp_path, monkeypatch):
    content = _content(tmp_path)
    monkeypatch.setattr(modelfile, "MAX_PARAMETERS", 10)
    _refused(tmp_path, content, r"means 37 parameters, more than MAX_PARAMETERS = 10")
    monkeypatch.setattr(modelfile, "MAX_PARAMETERS", 37)
    assert _load_dict(tmp_path, content).sizes == [2, 5, 3, 1]


def test_data_longer_than_the_shape_is_refused_before_decoding(tmp_path):
    content = _content(tmp_path)
    content["parameters"]["0.bias"]["data"] = "AAAA" * 1000
    _refused(tmp_path, content, r"parameters.0.bias.data holds 3000 bytes, shape \[5\] of float64 needs 40")


def test_a_file_over_the_size_cap_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    save(path, _regressor()[0])
    monkeypatch.setattr(modelfile, "MAX_FILE_BYTES", 100)
    with pytest.raises(ValueError, match=r"m.json is \d+ bytes, more than MAX_FILE_BYTES = 100"):
        load(path)


def test_json_of_many_values_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    path = tmp_path / "many.json"
    path.write_text("[" + "0," * 2_000_000 + "0]")  # 4 MB of text, 2,000,001 values: about 16 MB parsed
    parsed = []
    monkeypatch.setattr(modelfile.json, "loads", lambda *a, **k: parsed.append(1))
    with pytest.raises(
        ValueError,
        match=r"many.json is not a chainrule model file \(it holds up to 2000002 JSON values, "
        r"more than MAX_VALUES = 1000000",
    ):
        load(path)  # 2,000,000 commas + 1 bracket + 1
    assert parsed == []  # refused before json.loads ran
    save(tmp_path / "m.json", _regressor()[0])  # a real model file is far below the limit
    monkeypatch.undo()
    assert load(tmp_path / "m.json").sizes


def test_deeply_nested_json_is_one_line_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"nested deeper than MAX_DEPTH = 100") as info:
        load(path)
    assert "\n" not in str(info.value)
    path.write_text("[" * 150 + "]" * 150)  # within what json.loads can parse, deeper than MAX_DEPTH
    with pytest.raises(ValueError, match=r"nested deeper than MAX_DEPTH = 100"):
        load(path)
    content = _content(tmp_path)
    content["training"]["note"] = {"a": [[["brackets in text do not count: [[[[[[["]]]}
    assert _load_dict(tmp_path, content).training["note"]["a"][0][0][0].startswith("brackets")


def test_load_refuses_what_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match=r"pipe is a FIFO \(named pipe\), not a model file"):
        load(tmp_path / "pipe")  # would block forever if it were opened
    with pytest.raises(ValueError, match=r"is a directory"):
        load(tmp_path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            _edit(["architecture", "activation"], ["relu"]),
            r"architecture.activation must be one of .*, got \['relu'\]",
        ),
        (_edit(["architecture", "task"], {"a": 1}), r"architecture.task must be one of .*, got \{'a': 1\}"),
        (
            _edit(["parameters", "0.weight", "dtype"], "float16"),
            r"parameters.0.weight.dtype must be one of 'float32', 'float64', got 'float16'",
        ),
        (_edit(["parameters", "0.weight", "dtype"], ["float64"]), r"dtype must be one of .*, got \['float64'\]"),
        (_edit(["parameters", "0.weight", "dtype"], DELETE), r"parameters.0.weight.dtype is missing"),
        (_edit(["parameters", "2.bias", "dtype"], "float32"), r"parameters.2.bias.dtype is 'float32' but"),
        (_edit(["parameters", "0.weight", "data"], DELETE), r"parameters.0.weight.data is missing"),
        (_edit(["parameters", "0.weight", "data"], 12), r"parameters.0.weight.data must be a string, got 12"),
        (_edit(["parameters", "0.weight", "shape"], [5.0, 2.0]), r"parameters.0.weight.shape is \[5.0, 2.0\]"),
        (_edit(["parameters", "0.weight", "shape"], [True, 2]), r"parameters.0.weight.shape is \[True, 2\]"),
        (_edit(["training", "loss"], ["ssr"]), r"training.loss must be one of .*, got \['ssr'\]"),
        (_edit(["version"], 1.0), r"version 1.0 is not supported; this chainrule reads version 1 \(an integer\)"),
        (_edit(["version"], True), r"version True is not supported"),
        (_edit(["version"], "1"), r"version '1' is not supported"),
        (_edit(["preprocessing", "feature_std"], [1.0, 1e-200]), r"preprocessing.feature_std.1 .*got 1e-200"),
        (_edit(["preprocessing", "feature_std"], [1.0, 10**400]), r"preprocessing.feature_std.1 must be a finite"),
        (_edit(["preprocessing", "target_std"], 1e-300), r"target_std must be finite numbers \(std >= MIN_STD"),
    ],
)
def test_errors_name_the_field_and_the_value_given(tmp_path, edit, message):
    _refused(tmp_path, edit(_content(tmp_path)), message)


def test_nan_or_inf_weights_are_refused_naming_the_parameter(tmp_path):
    content = _content(tmp_path)
    values = np.ones(3)
    values[1] = np.inf
    content["parameters"]["2.bias"]["data"] = base64.b64encode(values.astype("<f8").tobytes()).decode()
    _refused(tmp_path, content, r"parameters.2.bias contains NaN or inf \(1 of 3 values\)")


def test_huge_numbers_in_json_are_refused_not_read_as_inf(tmp_path):
    content = json.dumps(_content(tmp_path)).replace('"n_iter": 7', '"n_iter": 1e999')
    (tmp_path / "big.json").write_text(content)
    with pytest.raises(ValueError, match=r"1e999 is not a finite number"):
        load(tmp_path / "big.json")


def test_a_loss_must_fit_the_task():
    with pytest.raises(
        ValueError, match=r"Model: loss must be one of 'mse', 'ssr' for regression, got 'cross_entropy'"
    ):
        Model(mlp([2, 1], seed=0), loss="cross_entropy")
    with pytest.raises(ValueError, match=r"for classification, got 'mse'"):
        Model(mlp([1, 2], seed=0), classes=["a", "b"], loss="mse")


def test_the_same_model_writes_the_same_bytes_without_the_clock(tmp_path):
    model = _regressor()[0]
    model.training.update(seconds=0.123, seed=0)
    save(tmp_path / "a.json", model)
    model.training["seconds"] = 9.87
    save(tmp_path / "b.json", model)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert "seconds" not in _content(tmp_path, model)["training"]


# ---- atomic_open writes regular files only, through links, keeping modes ----------------


def test_atomic_open_refuses_a_fifo_or_a_directory_before_writing(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    for name, kind in (("pipe", "a FIFO"), ("folder", "a directory")):
        with pytest.raises(ValueError, match=rf"{name} exists and is {kind}.*writes regular files only"):
            with atomic_open(tmp_path / name) as f:
                f.write("never")
    assert sorted(os.listdir(tmp_path)) == ["folder", "pipe"] and os.listdir(tmp_path / "folder") == []


def test_atomic_open_writes_through_a_symlink_which_stays_a_link(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to("real.txt")
    with atomic_open(tmp_path / "link.txt") as f:
        f.write("new")
    assert os.path.islink(tmp_path / "link.txt") and (tmp_path / "real.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["link.txt", "real.txt"]


def test_atomic_open_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    with atomic_open(path, "wb") as f:
        f.write(b"new")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640 and path.read_bytes() == b"new"


KILLED_WRITER = """
import sys, time
from chainrule.modelfile import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write("half of a file")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_killed_write_leaves_one_temp_file_that_the_next_write_replaces(tmp_path):
    import signal
    import subprocess
    import sys

    path = tmp_path / "out.txt"
    path.write_text("old")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline() == b"writing\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert sorted(os.listdir(tmp_path)) == [".out.txt.chainrule-tmp", "out.txt"] and path.read_text() == "old"
    with atomic_open(path) as f:
        f.write("new")
    assert os.listdir(tmp_path) == ["out.txt"] and path.read_text() == "new"
