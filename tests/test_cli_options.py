"""chainrule fit's training options and chainrule evaluate's scores, against scikit-learn's metrics."""

import json

import numpy as np
import pytest

import chainrule as cr
from chainrule import modelfile
from chainrule.validation import split
from commandline import run_cli


@pytest.fixture
def curve(tmp_path):
    """60 rows of y = sin(2x) + x2 / 2."""
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 3, 60), rng.normal(size=60)
    path = tmp_path / "curve.csv"
    path.write_text(
        "a,b,y\n" + "".join(f"{float(p)!r},{float(q)!r},{float(np.sin(2 * p) + q / 2)!r}\n" for p, q in zip(a, b))
    )
    return path


@pytest.fixture
def flowers(tmp_path):
    """60 rows, three text classes, one of them hard to tell apart."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=60), rng.normal(size=60)
    labels = np.where(a + b > 0.5, "large", np.where(a > 0, "middle", "small"))
    path = tmp_path / "flowers.csv"
    path.write_text("a,b,size\n" + "".join(f"{float(p)!r},{float(q)!r},{s}\n" for p, q, s in zip(a, b, labels)))
    return path


def test_early_stopping_holds_out_rows_reports_the_score_and_keeps_it_in_the_model_file(tmp_path, capsys, curve):
    model_path = tmp_path / "m.json"
    code, out, err = run_cli(
        capsys, "fit", curve, "--target", "y", "--hidden", "8", "--optimizer", "adam", "--lr", "0.02",
        "--alpha", "1e-4", "--early-stopping", "--validation-fraction", "0.25", "--n-iter-no-change", "5",
        "--out", model_path,
    )  # fmt: skip
    assert code == 0, err
    training = modelfile.load(model_path).training
    assert training["stopping"] == "early" and training["validation_fraction"] == 0.25 and training["alpha"] == 1e-4
    assert f"best {training['best_validation_score']:.6g}" in out and "validation R^2:" in out
    assert "were put back" in training["stop_reason"]


@pytest.mark.parametrize("target, loss", [("y", "mse"), ("size", "cross-entropy")], ids=["regression", "classes"])
def test_standardize_with_held_out_rows_scales_by_the_training_rows_only(
    tmp_path, capsys, curve, flowers, target, loss
):
    # the held-out rows must not shape the scaling (as a scaler fitted inside a cross-validation fold): the
    # mean and std in the file are those of the rows fit trained on, the 45 of 60 that validation.split keeps
    path = curve if target == "y" else flowers
    flags = ["--standardize", "--validation-fraction", "0.25", "--max-iter", "3", "--out", tmp_path / "m.json"]
    code, _, err = run_cli(capsys, "fit", path, "--target", target, "--loss", loss, *flags)
    assert code == 0, err
    scaling = modelfile.load(tmp_path / "m.json").scaling
    data = cr.data.read_csv(path, target=target)
    labels = None
    if target == "size":  # stratified by class, as fit holds out classification rows
        labels = np.unique(data.y, return_inverse=True)[1]
    kept, held = split(60, 0.25, 0, labels)
    assert len(kept) == 45 and len(held) == 15
    np.testing.assert_allclose(scaling.feature_mean, data.x[kept].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaling.feature_std, data.x[kept].std(axis=0), rtol=1e-12)
    assert not np.allclose(scaling.feature_mean, data.x.mean(axis=0), rtol=1e-6)  # (all 60 rows give another)
    if target == "y":
        assert scaling.target_mean == pytest.approx(float(data.y[kept].mean()), rel=1e-12)


@pytest.mark.parametrize(
    "extra",
    [
        ["--optimizer", "lbfgs"],
        ["--optimizer", "rmsprop", "--lr", "0.01", "--schedule", "invscaling", "--clip", "1"],
        ["--optimizer", "adamw", "--lr", "0.01", "--stopping", "improvement", "--tol", "1e-4"],
        ["--optimizer", "adagrad", "--lr", "0.1", "--schedule", "adaptive", "--weight-decay", "0.001"],
    ],
    ids=["lbfgs", "rmsprop", "adamw", "adagrad"],
)
def test_every_optimizer_and_option_trains_from_the_command_line(tmp_path, capsys, curve, extra):
    code, out, err = run_cli(
        capsys, "fit", curve, "--target", "y", "--hidden", "4", "--out", tmp_path / "m.json", *extra
    )
    assert code == 0 and "wrote" in out, err
    training = modelfile.load(tmp_path / "m.json").training
    assert training["optimizer"] == extra[1] and training["validation_score"] is None


def test_lbfgs_on_the_command_line_uses_its_own_default_tol_unless_tol_is_given(tmp_path, capsys, curve):
    # review finding 3: --optimizer lbfgs stopped at gtol = --tol's 0.001; it gets L-BFGS's 1e-4 (scikit-learn's)
    for extra, tol in (([], 1e-4), (["--tol", "1e-3"], 1e-3)):
        code, _, err = run_cli(capsys, "fit", curve, "--target", "y", "--hidden", "4", "--optimizer", "lbfgs",
                            "--out", tmp_path / "m.json", *extra)  # fmt: skip
        assert code == 0, err
        training = modelfile.load(tmp_path / "m.json").training
        assert training["tol"] == tol
    code, _, err = run_cli(capsys, "fit", curve, "--target", "y", "--out", tmp_path / "g.json")
    assert code == 0 and modelfile.load(tmp_path / "g.json").training["tol"] == 0.001  # the lessons' for gd


@pytest.mark.parametrize(
    "args, message",
    [
        (["--alpha", "-1"], "--alpha must be a finite number >= 0, got -1.0"),
        (["--clip", "0"], "--clip must be a finite number > 0, got 0.0"),  # review finding 14: no "None or"
        (["--validation-fraction", "1"], "--validation-fraction must be a number in (0, 1), got 1.0"),
        (["--n-iter-no-change", "0"], "--n-iter-no-change must be an integer >= 1, got 0"),
        (["--early-stopping", "--stopping", "improvement"], "--early-stopping is a stopping rule of its own"),
        (["--optimizer", "lbfgs", "--batch-size", "5"], "cannot be combined with batch_size=5"),
        (["--optimizer", "lbfgs", "--weight-decay", "0.1"], "--weight-decay does not apply to --optimizer lbfgs"),
        # review finding 13: these two were silently ignored
        (["--optimizer", "lbfgs", "--lr", "0.5"], "--lr does not apply to --optimizer lbfgs"),
        (["--optimizer", "lbfgs", "--stopping", "improvement"], "--stopping improvement does not apply to --optimizer"),
    ],
)
def test_bad_options_are_one_line_exit_2_and_nothing_written(tmp_path, capsys, curve, args, message):
    code, _, err = run_cli(capsys, "fit", curve, "--target", "y", "--out", tmp_path / "m.json", *args)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "m.json").exists()


# (command-line flags, fit's keywords for them): the combinations both refuse
COMBINATIONS = [
    (["--restarts", "3", "--early-stopping"], dict(restarts=3, validation=0.1, stopping="early")),
    (["--restarts", "3", "--validation-fraction", "0.2"], dict(restarts=3, validation=0.2)),
    (["--restarts", "3", "--alpha", "0.1"], dict(restarts=3, alpha=0.1)),
    (["--restarts", "3", "--clip", "1"], dict(restarts=3, clip=1.0)),
    (["--restarts", "3", "--schedule", "invscaling"], dict(restarts=3, schedule="invscaling")),
    (["--restarts", "3", "--stopping", "improvement"], dict(restarts=3, stopping="improvement")),
    (["--optimizer", "lbfgs", "--schedule", "adaptive"], dict(optimizer="lbfgs", schedule="adaptive")),
    (["--optimizer", "lbfgs", "--clip", "1"], dict(optimizer="lbfgs", clip=1.0)),
    (["--optimizer", "lbfgs", "--early-stopping"], dict(optimizer="lbfgs", validation=0.1, stopping="early")),
    (["--optimizer", "lbfgs", "--validation-fraction", "0.2"], dict(optimizer="lbfgs", validation=0.2)),
    (["--optimizer", "lbfgs", "--restarts", "2"], dict(optimizer="lbfgs", restarts=2)),
]


@pytest.mark.parametrize("flags, keywords", COMBINATIONS)
def test_restarts_and_lbfgs_refuse_in_flag_names_before_printing_what_fit_refuses(
    tmp_path, capsys, curve, flags, keywords
):
    # review finding 14: "training 3 random starts at once ..." was printed, then fit's keyword names refused it
    code, out, err = run_cli(capsys, "fit", curve, "--target", "y", "--out", tmp_path / "m.json", *flags)
    assert code == 2 and out == "" and err.count("\n") == 1 and "cannot be combined with" in err
    assert flags[0] in err and flags[2] in err and "=" not in err  # flags, not keywords
    from chainrule.nn import mlp

    x = np.random.default_rng(0).normal(size=(20, 2))  # the library refuses the same (one rule, two wordings)
    keywords = {k: cr.optim.LBFGS() if v == "lbfgs" else v for k, v in keywords.items()}
    with pytest.raises(ValueError, match="cannot be combined with"):
        cr.Trainer(mlp([2, 2, 1], seed=0), x, x[:, :1], loss="mse", **keywords)


def test_early_stopping_on_a_10_row_file_is_refused_as_too_small_in_flag_names(tmp_path, capsys):
    # review finding 1 on the command line: 10% of 10 rows is one held-out row
    (tmp_path / "ten.csv").write_text("x,y\n" + "".join(f"{i / 9!r},{i % 3}\n" for i in range(10)))
    code, _, err = run_cli(capsys, "fit", tmp_path / "ten.csv", "--target", "y", "--early-stopping",
                        "--out", tmp_path / "m.json")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "m.json").exists()
    assert "--validation-fraction 0.1 holds out 1 of 10 rows; the validation set is too small" in err


def test_the_premature_stop_warning_names_the_flags_on_the_command_line(tmp_path, capsys, curve):
    # review finding 14: it said "Use stopping='improvement'"; the flag is --stopping improvement
    code, _, err = run_cli(capsys, "fit", curve, "--target", "y", "--optimizer", "adam", "--lr", "0.01", "--tol", "0.1",
                        "--out", tmp_path / "m.json")  # fmt: skip
    assert code == 0 and "PrematureStop" not in err
    assert "Use --stopping improvement" in err and "a smaller --tol" in err and "stopping='" not in err


def test_evaluate_a_regression_prints_r2_as_scikit_learn_computes_it(tmp_path, capsys, curve):
    from sklearn.metrics import mean_absolute_error, r2_score

    model_path = tmp_path / "m.json"
    assert run_cli(capsys, "fit", curve, "--target", "y", "--hidden", "4", "--quiet", "--out", model_path)[0] == 0
    model = modelfile.load(model_path)
    data = model.read_csv(curve, with_target=True)
    observed, predicted = data.target_numbers(), model.predict(data)
    code, out, _ = run_cli(capsys, "evaluate", model_path, curve)
    assert code == 0 and f"R^2: {r2_score(observed, predicted):.6g}" in out
    code, out, _ = run_cli(capsys, "evaluate", model_path, curve, "--json")
    report = json.loads(out)
    assert report["r2"] == pytest.approx(r2_score(observed, predicted), rel=1e-12)
    assert report["mae"] == pytest.approx(mean_absolute_error(observed, predicted), rel=1e-12)
    assert report["rows"] == 60 and report["loss"] == "mse"


def test_evaluate_on_a_row_that_overflows_is_one_line_without_numpys_warning(tmp_path, capsys):
    # review finding 7: a row of 1e308s leaked "RuntimeWarning: overflow", printed loss inf and RMSE nan
    from chainrule.nn import mlp

    network = mlp([2, 1], seed=0)  # predicted = a + b, set by hand
    network[0].weight.data[...] = 1.0
    network[0].bias.data[...] = 0.0
    modelfile.save(tmp_path / "m.json", modelfile.Model(network, ["a", "b"], "y", None, None, loss="mse"))
    (tmp_path / "big.csv").write_text("a,b,y\n1e308,0,1\n")  # the error 1e308 - 1 is finite, its square not
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "m.json", tmp_path / "big.csv")
    assert code == 0 and err == "" and "on 1 row\n" in out and "R^2: not defined for 1 row" in out
    assert "mean absolute error: 1e+308; root mean squared error: 1e+308" in out  # one row: sqrt(e^2) = |e|
    code, out, _ = run_cli(capsys, "evaluate", tmp_path / "m.json", tmp_path / "big.csv", "--json")
    assert json.loads(out)["r2"] is None and json.loads(out)["rmse"] == 1e308
    (tmp_path / "inf.csv").write_text("a,b,y\n1e308,1e308,1\n")  # 1e308 + 1e308 is inf: one line, as predict
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "m.json", tmp_path / "inf.csv")
    assert code == 2 and out == "" and err.count("\n") == 1 and "not a finite number (nan or inf) on 1 of 1" in err


def test_evaluate_a_classifier_prints_per_class_scores_and_the_confusion_matrix(tmp_path, capsys, flowers):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    model_path = tmp_path / "f.json"
    args = ["--target", "size", "--loss", "cross-entropy", "--hidden", "3", "--max-iter", "40", "--quiet"]
    assert run_cli(capsys, "fit", flowers, *args, "--out", model_path)[0] == 0
    model = modelfile.load(model_path)
    data = model.read_csv(flowers, with_target=True)
    observed = [model.classes[i] for i in data.target_indices(model.classes)]
    predicted = [str(c) for c in model.predict(data)]
    labels = ["large", "middle", "small"]
    precision, recall, f1, support = precision_recall_fscore_support(
        observed, predicted, labels=labels, zero_division=0
    )
    code, out, _ = run_cli(capsys, "evaluate", model_path, flowers, "--json")
    report = json.loads(out)
    assert code == 0 and [c["class"] for c in report["classes"]] == labels
    np.testing.assert_allclose([c["precision"] for c in report["classes"]], precision, rtol=1e-12)
    np.testing.assert_allclose([c["recall"] for c in report["classes"]], recall, rtol=1e-12)
    np.testing.assert_allclose([c["f1"] for c in report["classes"]], f1, rtol=1e-12)
    assert [c["support"] for c in report["classes"]] == support.tolist()
    assert report["confusion_matrix"] == confusion_matrix(observed, predicted, labels=labels).tolist()
    _, text, _ = run_cli(capsys, "evaluate", model_path, flowers)
    assert "precision  recall" in text and "confusion matrix (rows: observed, columns: predicted):" in text


def test_the_validation_fraction_is_stratified_like_the_library(tmp_path, capsys, flowers):
    # the command line holds out what fit(validation=0.2, seed=0) holds out: the library's split
    labels = np.array([line.rsplit(",", 1)[1] for line in flowers.read_text().splitlines()[1:]])
    _, held = split(60, 0.2, seed=0, labels=labels)
    counts = {c: int(np.sum(labels[held] == c)) for c in np.unique(labels)}
    share = {c: int(np.sum(labels == c)) * 0.2 for c in np.unique(labels)}
    assert all(abs(counts[c] - share[c]) < 1 for c in counts) and sum(counts.values()) == 12
    code, out, err = run_cli(
        capsys, "fit", flowers, "--target", "size", "--loss", "cross-entropy", "--hidden", "3",
        "--validation-fraction", "0.2", "--max-iter", "20", "--out", tmp_path / "f.json",
    )  # fmt: skip
    assert code == 0 and "validation accuracy:" in out, err


def test_the_final_loss_with_a_validation_fraction_is_on_the_rows_trained_on_and_says_so(tmp_path, capsys, curve):
    # review finding 12: "final loss ... on the 60 training rows", computed on all 60, when 45 were trained on
    code, out, err = run_cli(capsys, "fit", curve, "--target", "y", "--hidden", "3", "--validation-fraction", "0.25",
                          "--max-iter", "30", "--out", tmp_path / "m.json")  # fmt: skip
    assert code == 0, err
    model = modelfile.load(tmp_path / "m.json")
    rows = np.loadtxt(curve, delimiter=",", skiprows=1)
    _, held = split(60, 0.25, seed=0)  # the library's split from --seed 0: 15 rows held out
    kept = np.setdiff1d(np.arange(60), held)
    predicted = model.predict(rows[kept, :2])
    want = float(np.mean((rows[kept, 2] - predicted) ** 2))  # the mse by numpy, on the 45 rows trained on
    assert model.training["rows"] == 45 and model.training["held_out_rows"] == 15
    assert model.training["final_loss"] == pytest.approx(want, rel=1e-12)
    assert "on the 45 training rows (15 held out for validation)" in out


def test_fit_help_explains_the_training_options(capsys):
    code, out, _ = run_cli(capsys, "fit", "--help")
    assert code == 0
    for option in (
        "--alpha", "--weight-decay", "--schedule", "--clip", "--stopping", "--early-stopping",
        "--validation-fraction", "--n-iter-no-change", "lbfgs", "adamw", "rmsprop", "adagrad",
    ):  # fmt: skip
        assert option in out, option
    assert "--early-stopping --validation-fraction 0.2" in out  # the example
    code, out, _ = run_cli(capsys, "evaluate", "--help")
    assert code == 0 and "--json" in out and "confusion matrix" in out
