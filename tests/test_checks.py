"""The argument rules: what each accepts at its boundaries, the one message shape, and every entry point using it."""

import math
import re

import numpy as np
import pytest

import chainrule as cr
from chainrule import cli
from chainrule.checks import AnyOf, Instance, Integer, Integers, Number, OneOf, Typed, check, message, sklearn_message
from chainrule.nn import Linear
from chainrule.optim import Adam, GradientDescent, Momentum

# The same hand-chosen values for every rule: the ends of ranges, the non-finite, the look-alikes.
VALUES = [0, -0.0, 1, math.inf, math.nan, True, 2.5, "2", None]


def _accepted(rule):
    return [rule.accepts(v) for v in VALUES]


#                                                          0      -0.0   1      inf    nan    True   2.5    '2'    None
@pytest.mark.parametrize(
    "rule, allowed, expected",
    [
        (Number(low=0), "a finite number >= 0", [True, True, True, False, False, False, True, False, False]),
        (
            Number(low=0, low_open=True),
            "a finite number > 0",
            [False, False, True, False, False, False, True, False, False],
        ),
        (Number(low=0, high=1), "a number in [0, 1)", [True, True, False, False, False, False, False, False, False]),
        (
            Number(low=0, high=1, low_open=True, high_open=False),
            "a number in (0, 1]",
            [False, False, True, False, False, False, False, False, False],
        ),
        (Number(), "a finite number", [True, True, True, False, False, False, True, False, False]),
        (Integer(low=1), "an integer >= 1", [False, False, True, False, False, False, False, False, False]),
        (
            Integer(low=0, optional=True),
            "None or an integer >= 0",
            [True, False, True, False, False, False, False, False, True],
        ),
        (OneOf(("2", "auto")), "one of '2', 'auto'", [False, False, False, False, False, False, False, True, False]),
        (OneOf(("auto",)), "'auto'", [False] * 9),
        (
            AnyOf((OneOf(("auto",)), Integer(low=1, optional=True))),
            "'auto' or None or an integer >= 1",
            [False, False, True, False, False, False, False, False, True],
        ),
        (Instance((str,), "text"), "text", [False, False, False, False, False, False, False, True, False]),
        (Typed(Number(low=1)), "a finite number >= 1", [False, False, True, False, False, False, True, False, False]),
    ],
)
def test_each_rule_at_the_boundaries(rule, allowed, expected):
    assert rule.allowed == allowed
    assert _accepted(rule) == expected


def test_number_bounds_are_said_as_given():
    assert Number(low=-1, high=0.5).allowed == "a number in [-1, 0.5)"
    assert Number(low=1e-8).allowed == "a finite number >= 1e-08"
    assert Number(low=0, high=1).accepts(np.float32(0.5)) and Integer(low=1).accepts(np.int64(3))
    assert not Integer(low=1).accepts(np.float64(3.0))


@pytest.mark.parametrize(
    "value, ok",
    [
        ((), True),
        ([1, 2], True),
        ((16, 16), True),
        (range(1, 4), True),
        ((np.int64(2),), True),
        ([0], False),
        ([1, 2.0], False),
        ([1, True], False),
        ("12", False),
        (b"12", False),
        (3, False),
        (None, False),
    ],
)
def test_integers_is_a_sequence_of_integers_not_text(value, ok):
    assert Integers(low=1).accepts(value) is ok


def test_integers_says_its_items_and_its_least_length():
    assert Integers(low=1).allowed == "a sequence of integers >= 1"
    assert Integers(low=0, min_length=2).allowed == "a sequence of at least 2 integers >= 0"
    assert Integers(low=0).items == "integers >= 0"
    assert not Integers(low=1, min_length=2).accepts([3])
    assert check("mlp", "sizes", [1, np.int64(2)], Integers(low=1)) == (1, 2)


# ---- the message shape -------------------------------------------------------------------


def test_the_one_message_shape():
    # What (owner and argument), the allowed range, what was given: as fit words it.
    assert message("fit", "tol", -0.1, Number(low=0)) == "fit: tol must be a finite number >= 0, got -0.1"
    for name, value, rule, text in [
        ("tol", -0.1, Number(low=0), "fit: tol must be a finite number >= 0, got -0.1"),
        ("max_iter", 0, Integer(low=1), "fit: max_iter must be an integer >= 1, got 0"),
        ("batch_size", 0, Integer(low=1, optional=True), "fit: batch_size must be None or an integer >= 1, got 0"),
        ("loss", "hinge", OneOf(("mse", "ssr")), "fit: loss must be one of 'mse', 'ssr', got 'hinge'"),
    ]:
        with pytest.raises(ValueError) as info:
            check("fit", name, value, rule)
        assert str(info.value) == text


def test_without_an_owner_the_name_stands_alone():
    assert message(None, "--lr", 0.0, Number(low=0, low_open=True)) == "--lr must be a finite number > 0, got 0.0"


def test_scikit_learns_sentence_from_the_same_rule():
    assert (
        sklearn_message("NeuralNetworkClassifier", "momentum", 1.0, Number(low=0, high=1))
        == "The 'momentum' parameter of NeuralNetworkClassifier must be a number in [0, 1). Got 1.0 instead."
    )


def test_check_converts_what_it_accepts():
    assert check("fit", "tol", 1, Number(low=0)) == 1.0 and type(check("fit", "tol", 1, Number(low=0))) is float
    assert type(check("fit", "max_iter", np.int64(5), Integer(low=1))) is int
    assert check("fit", "batch_size", None, Integer(low=1, optional=True)) is None
    assert check("x", "batch_size", 7, AnyOf((OneOf(("auto",)), Integer(low=1)))) == 7


def test_value_error_unless_the_rule_says_type_error():
    # The plain rules raise ValueError even for the wrong kind of value (fit relies on it) ...
    for rule in (Number(low=0), Integer(low=1), OneOf(("a", "b")), Integers(low=1)):
        with pytest.raises(ValueError):
            check("f", "x", "2", rule)
    # ... Typed tells the wrong kind (TypeError) from the out of range (ValueError); Instance is about kind.
    with pytest.raises(TypeError, match=re.escape("f: x must be an integer >= 1, got 2.0")):
        check("f", "x", 2.0, Typed(Integer(low=1)))
    with pytest.raises(ValueError, match=re.escape("f: x must be an integer >= 1, got 0")):
        check("f", "x", 0, Typed(Integer(low=1)))
    with pytest.raises(TypeError, match=re.escape("f: x must be text, got 2")):
        check("f", "x", 2, Instance((str,), "text"))
    assert not Instance((int,), "an int").accepts(True) and Instance((int, bool), "a flag").accepts(True)


def test_one_of_takes_unhashable_values_without_failing():
    assert not OneOf(("relu", "tanh")).accepts(["relu"])


# ---- every entry point says it the same way ---------------------------------------------------

SHAPE = r"must be .+, got "  # chainrule's: "<owner>: <name> must be <allowed>, got <value>"
SKLEARN_SHAPE = r"must be .+\. Got .+ instead\."


@pytest.mark.parametrize(
    "make",
    [
        lambda: GradientDescent(lr=0),
        lambda: Momentum(lr=0.1, momentum=1.5),
        lambda: Adam(betas=(0.9, 1.0)),
        lambda: Adam(eps=-1.0),
        lambda: cr.gradcheck(lambda x: x, cr.tensor([1.0], requires_grad=True), eps=0),
        lambda: cr.gradcheck(lambda x: x, cr.tensor([1.0], requires_grad=True), rtol=math.nan),
        lambda: cr.gradcheck(3, cr.tensor([1.0], requires_grad=True)),
        lambda: Linear(0, 2),
        lambda: Linear(2.0, 2),
        lambda: cr.nn.mlp([1, 0, 1]),
        lambda: cr.nn.DosageNetwork.from_lesson(w1="3"),
    ],
)
def test_optimizers_gradcheck_and_nn_use_the_one_shape(make):
    with pytest.raises((ValueError, TypeError), match=SHAPE):
        make()


def test_the_optimizers_messages_in_full():
    with pytest.raises(ValueError, match=re.escape("GradientDescent: lr must be a finite number > 0, got 0")):
        GradientDescent(lr=0)
    with pytest.raises(ValueError, match=re.escape("Momentum: momentum must be a number in [0, 1), got 1.5")):
        Momentum(lr=0.1, momentum=1.5)


@pytest.mark.parametrize(
    "name, value",
    [
        ("learning_rate", 0.0),
        ("max_iter", 2.5),
        ("activation", None),
        ("batch_size", "2"),
        ("hidden_layer_sizes", "16"),
    ],
)
def test_the_estimators_use_scikit_learns_shape(name, value):
    sklearn = pytest.importorskip("chainrule.sklearn")
    for estimator in (sklearn.NeuralNetworkRegressor(), sklearn.NeuralNetworkClassifier()):
        with pytest.raises(ValueError, match=SKLEARN_SHAPE):
            estimator.set_params(**{name: value}).fit(np.zeros((4, 1)), [0, 1, 0, 1])


@pytest.mark.parametrize(
    "option, value",
    [
        ("--lr", "0"),
        ("--tol", "nan"),
        ("--max-iter", "0"),
        ("--batch-size", "-1"),
        ("--restarts", "0"),
        ("--hidden", "0"),
    ],
)
def test_the_command_line_uses_the_one_shape_without_an_owner(tmp_path, capsys, option, value):
    data = tmp_path / "data.csv"
    data.write_text("x,y\n0,0\n1,1\n")
    assert cli.main(["fit", str(data), "--target", "y", "--out", str(tmp_path / "m.json"), option, value]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"chainrule: error: {option} {SHAPE}.+\n", err), err
    assert not (tmp_path / "m.json").exists()
