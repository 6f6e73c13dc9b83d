"""modelfile fuzzing: a valid model file with any field replaced, deleted or corrupted loads or gives one line.

Whatever a file holds, from_dict either returns a Model or raises ValueError or
TypeError with a one-line message: never MemoryError, RecursionError,
KeyError, AttributeError, IndexError or anything else.
"""

import copy
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule import modelfile
from chainrule.modelfile import Model, Scaling
from chainrule.nn import mlp


def _valid(classify):
    if classify:
        model = Model(mlp([2, 3, 3], "relu", seed=0), ["a", "b"], "k", classes=["x", "y", "z"])
    else:
        x = np.arange(8.0).reshape(4, 2)
        model = Model(mlp([2, 3, 1], "tanh", seed=0), ["a", "b"], "y", scaling=Scaling.fit(x, x[:, 0]))
    return modelfile.to_dict(model)


VALID = {False: _valid(False), True: _valid(True)}

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 2, 10**6, 10**12, -(10**18), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-320, 1e-200, 1e308, -0.0]),
    st.text(max_size=12),
    st.sampled_from(["float16", "float64", "float32", "mlp", "relu", "ssr", "cross_entropy", "AAAA", "!!", "="]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


def _paths(value, prefix=()):
    """Every (path to a container, key) pair inside a model file's dict."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield prefix, key
        yield from _paths(child, (*prefix, key))


def _at(content, path):
    for key in path:
        content = content[key]
    return content


def _corrupt(data, draw):
    how = draw(st.sampled_from(["cut", "extend", "flip", "pad", "empty"]))
    if how == "cut":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "extend":
        return data + draw(st.sampled_from(["AAAA", "A", "==", "AAAAAAAA" * 50]))
    if how == "flip":
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        return data[:i] + draw(st.sampled_from(["!", "é", "=", "/", "\n"])) + data[i + 1 :]
    return "====" if how == "pad" else ""


@st.composite
def mutated(draw):
    content = copy.deepcopy(VALID[draw(st.booleans())])
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(content))
        if not paths:
            break
        path, key = draw(st.sampled_from(paths))
        parent = _at(content, path)
        action = draw(st.sampled_from(["replace", "replace", "delete", "corrupt"]))
        if action == "delete":
            del parent[key]
        elif action == "corrupt" and isinstance(parent[key], str):
            parent[key] = _corrupt(parent[key], draw)
        else:
            parent[key] = draw(JSON)
    return content


ALLOWED = (ValueError, TypeError)


def _check(content):
    try:
        model = modelfile.from_dict(content)
    except ALLOWED as e:
        assert "\n" not in str(e) and str(e), repr(e)
    else:
        assert isinstance(model, Model)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_any_mutation_loads_or_raises_one_line(content):
    _check(content)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_files_load_the_same_way_from_disk(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "m.json"
    try:
        path.write_text(json.dumps(content))
    except ValueError:  # NaN or an int too long to write: not a JSON file anyone can write
        return
    try:
        modelfile.load(path)
    except ALLOWED as e:
        assert "\n" not in str(e), repr(e)


def test_the_unmutated_files_load():
    for content in VALID.values():
        assert isinstance(modelfile.from_dict(copy.deepcopy(content)), Model)
