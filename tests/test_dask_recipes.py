"""The recipes of docs/scaling.md, run on the session's Dask cluster: a dask.dataframe's map_partitions with a
model (or its file), GridSearchCV under joblib's dask backend, partial_fit fed a dask.array's blocks. Each gives
what the same work gives in this process (the same NumPy calls on the same rows)."""

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chainrule import cli
from chainrule.modelfile import Model, Scaling, load
from chainrule.nn import mlp
from chainrule.partitions import predict_frame

dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
pd = pytest.importorskip("pandas")
sk = pytest.importorskip("chainrule.sklearn")

FEATURES = ["a", "b"]


@pytest.fixture
def model_path(tmp_path):
    net = mlp([2, 5, 3], activation="tanh", seed=3)
    path = tmp_path / "model.json"
    Model(net, FEATURES, "kind", classes=[0, 1, 2], scaling=Scaling([1.0, -1.0], [2.0, 0.5])).save(path)
    return path


@pytest.fixture
def parts(tmp_path):
    """Three Parquet partitions and the same rows as CSV (floats written as exact reprs)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, rows in enumerate((50, 7, 33)):
        a, b = rng.normal(size=rows), rng.normal(size=rows) * 3
        pq.write_table(pa.table({"a": a, "b": b, "tag": [f"r{k}-{i}" for i in range(rows)]}), folder / f"p{k}.parquet")
        lines = [f"{float(x)!r},{float(y)!r},r{k}-{i}" for i, (x, y) in enumerate(zip(a, b))]
        (folder / f"p{k}.csv").write_text("a,b,tag\n" + "\n".join(lines) + "\n")
    return folder


def _in_process(ddf, model, **options):
    """The same function on each partition's rows, here: the partitions computed one by one, then predicted."""
    return pd.concat([predict_frame(part.compute(scheduler="sync"), model, **options) for part in ddf.partitions])


def test_map_partitions_with_a_fitted_model_is_the_in_process_prediction(client, model_path, parts):
    model = load(model_path)
    ddf = dd.read_parquet(str(parts / "*.parquet"))
    assert ddf.npartitions == 3
    predicted = ddf.map_partitions(predict_frame, model).compute()  # on the cluster (the client is the default)
    expected = _in_process(ddf, model)
    pd.testing.assert_frame_equal(predicted, expected, check_exact=True)
    # the model's own predict on each file's rows, read by pyarrow
    x = [pq.read_table(p).select(FEATURES).to_pandas().to_numpy() for p in sorted(parts.glob("*.parquet"))]
    assert predicted["predicted_kind"].tolist() == np.concatenate([model.predict(part) for part in x]).tolist()


def test_map_partitions_with_a_model_file_reads_the_csv_as_chainrule_does(capsys, tmp_path, client, model_path, parts):
    ddf = dd.read_csv(str(parts / "*.csv"))
    predicted = ddf.map_partitions(predict_frame, str(model_path), proba=True).compute()
    pd.testing.assert_frame_equal(predicted, _in_process(ddf, load(model_path), proba=True), check_exact=True)
    # and chainrule predict over the same partitions wrote the same numbers
    out = tmp_path / "predicted"
    assert cli.main(["predict", str(model_path), str(parts / "*.csv"), "--out", str(out), "--proba"]) == 0
    capsys.readouterr()
    written = pd.concat([pd.read_csv(out / f"p{k}.csv") for k in range(3)])
    assert written["predicted_kind"].tolist() == predicted["predicted_kind"].tolist()
    for c in ("probability_0", "probability_1", "probability_2"):
        assert np.array_equal(written[c].to_numpy(), predicted[c].to_numpy())


def _regression_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 3))
    return x, x @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=90)


def test_grid_search_under_the_dask_backend_scores_as_n_jobs_1(client):
    from distributed import get_task_stream
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    x, y = _regression_data()
    grid = {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(4,)]}

    def search(**where):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter is small on purpose: ConvergenceWarning
            return GridSearchCV(sk.MLPRegressor(max_iter=20, random_state=0), grid, cv=2, **where).fit(x, y)

    alone = search(n_jobs=1)
    with get_task_stream(client) as tasks, parallel_backend("dask"):
        spread = search(n_jobs=-1)
    assert len(tasks.data) > 0  # the fits ran on the cluster
    for k in ["split0_test_score", "split1_test_score", "mean_test_score", "rank_test_score"]:
        assert np.array_equal(spread.cv_results_[k], alone.cv_results_[k]), k
    assert spread.best_params_ == alone.best_params_


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_partial_fit_from_a_dask_array_block_by_block_is_the_numpy_blocks(client, kind):
    import dask

    x, y = _regression_data()
    if kind == "classifier":
        y = (y > 0).astype(int)
        make, extra = (lambda: sk.MLPClassifier(hidden_layer_sizes=(6,), random_state=0)), {"classes": [0, 1]}
    else:
        make, extra = (lambda: sk.MLPRegressor(hidden_layer_sizes=(6,), random_state=0)), {}
    xd, yd = da.from_array(x, chunks=(25, 3)), da.from_array(y, chunks=25)  # blocks of 25, 25, 25, 15 rows
    streamed, plain = make(), make()
    for xb, yb in zip(xd.to_delayed().ravel(), yd.to_delayed().ravel()):
        xb, yb = dask.compute(xb, yb)  # each block computed on the cluster, then fed here
        streamed.partial_fit(xb, yb, **extra)
    for start in range(0, len(x), 25):
        plain.partial_fit(x[start : start + 25], y[start : start + 25], **extra)
    assert streamed.t_ == plain.t_ == 90  # every row fed once (t_: samples seen, as scikit-learn counts)
    for mine, theirs in zip(streamed.coefs_ + streamed.intercepts_, plain.coefs_ + plain.intercepts_):
        assert np.array_equal(mine, theirs)
