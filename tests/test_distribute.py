"""Restarts split into shards: a subset of starts trains as it does in the whole population, and
fit(..., executor=E) gives bit for bit what the same call gives without an executor."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import chainrule as cr
from chainrule import cli
from chainrule.distribute import LocalWorkers, open_executor, run_tasks, workers_of
from chainrule.nn import DosageNetwork, mlp
from chainrule.restarts import POPULATION, draw_starts, shard_starts, train_population


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        warnings.simplefilter("ignore", cr.GradientHealthWarning)
        yield


@pytest.fixture(scope="module")
def pool():
    """Two local processes for the whole module (starting them costs about a second)."""
    with open_executor(workers=2) as executor:
        yield executor


RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 3))
TARGETS = {
    "ssr": np.sin(X[:, 0]) + X[:, 1],
    "mse": np.sin(X[:, 0]) + X[:, 1] * X[:, 2],
    "binary_cross_entropy": (X[:, 0] > 0).astype(float),
    "cross_entropy": (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5),
}


def _network(loss):
    return mlp([3, 5, 4, 3 if loss == "cross_entropy" else 1], activation="tanh", seed=0)


def _settings(model, x, y, **kw):
    return cr.Trainer(model, x, y, **kw).settings


# ---- the starts and the losses of a population ---------------------------------------------------


def test_start_k_is_drawn_from_its_own_seed():
    net = DosageNetwork.random(seed=0)
    named = list(net.named_parameters())
    drawn = draw_starts(net, named, [4, 1], 7)
    for row, k in enumerate([4, 1]):  # by hand: reset_parameters from SeedSequence(7, spawn_key=(k,))
        alone = DosageNetwork.random(seed=0)
        alone.reset_parameters(np.random.default_rng(np.random.SeedSequence(7, spawn_key=(k,))))
        for j, (name, _) in enumerate(named):
            assert np.array_equal(drawn[j][row], alone.state_dict()[name])
    assert np.array_equal(net.state_dict()["w1"], DosageNetwork.random(seed=0).state_dict()["w1"])  # left as it was


@pytest.mark.parametrize("loss", list(TARGETS))
def test_each_start_s_population_loss_is_its_own_loss(loss):
    # (N, rows, outputs) predictions against spread targets: start k's loss by hand in NumPy
    pred = RNG.normal(size=(4, 6, 3 if loss == "cross_entropy" else 1))
    if loss == "cross_entropy":
        t = np.eye(3)[RNG.integers(0, 3, size=6)]
        z = pred - pred.max(axis=2, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
        expected = -(t * log_p).sum(axis=(1, 2)) / 6
    else:
        t = RNG.uniform(size=(6, 1))
        expected = {
            "ssr": ((t - pred) ** 2).sum(axis=(1, 2)),
            "mse": ((t - pred) ** 2).mean(axis=(1, 2)),
            "binary_cross_entropy": (np.log1p(np.exp(pred)) - pred * t).mean(axis=(1, 2)),
        }[loss]
    each = POPULATION[cr.losses.get_loss(loss)](cr.tensor(pred), np.broadcast_to(t, (4,) + t.shape))
    np.testing.assert_allclose(each.data, expected, rtol=1e-13)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("batch_size", [None, 7], ids=["whole", "mini-batches"])
@pytest.mark.parametrize("loss", list(TARGETS))
def test_a_subset_of_the_starts_trains_bit_for_bit_as_inside_the_whole_population(loss, batch_size, compile):
    model = _network(loss)
    s = _settings(
        model, X, TARGETS[loss], loss=loss, optimizer=cr.optim.Adam(0.02), restarts=9, seed=4,
        batch_size=batch_size, compile=compile, max_iter=25, tol=1e-4,
    )  # fmt: skip
    whole = train_population(s, draw_starts(model, s.named, 9, 4))
    for subset in ([3], [0, 1], [2, 5, 8]):
        part = train_population(s, draw_starts(model, s.named, subset, 4))
        assert np.array_equal(part.losses, whole.losses[subset])
        assert np.array_equal(part.iterations, whole.iterations[subset])
        assert np.array_equal(part.converged, whole.converged[subset])


def test_the_lessons_starts_that_stop_on_their_own_split_bit_for_bit():
    x, y = cr.data.dosage()
    net = DosageNetwork.random(seed=0)
    s = _settings(net, x, y, restarts=12, seed=2, max_iter=400)
    whole = train_population(s, draw_starts(net, s.named, 12, 2))
    assert whole.converged.any() and len(set(whole.iterations)) > 1  # starts stop at different iterations
    part = train_population(s, draw_starts(net, s.named, range(5, 12), 2))
    assert np.array_equal(part.losses, whole.losses[5:]) and np.array_equal(part.iterations, whole.iterations[5:])


def test_shards_cover_every_start_once_in_order():
    for n, workers in ((1000, 2), (64, 1), (5, 8), (33, 3)):
        shards = shard_starts(n, workers)
        assert [k for s in shards for k in s] == list(range(n))
        assert len(shards) <= 2 * workers and (len(shards) == 1 or min(map(len, shards)) >= 16)


# ---- an executor gives the same result -------------------------------------------------------------


def _fit(make, x, y, executor=None, **kw):
    model = make()
    history = cr.fit(model, x, y, executor=executor, **kw)
    return model, history


def _same(a, b):
    (ma, ha), (mb, hb) = a, b
    for (name, p), (_, q) in zip(ma.named_parameters(), mb.named_parameters()):
        assert np.array_equal(p.data, q.data), name
    assert np.array_equal(ha.restart_losses, hb.restart_losses)
    assert np.array_equal(ha.restart_iterations, hb.restart_iterations)
    assert np.array_equal(ha.restart_converged, hb.restart_converged)
    assert ha.best_restart == hb.best_restart
    for name in ("restart_losses", "restart_iterations", "restart_converged"):
        assert getattr(ha, name).dtype == getattr(hb, name).dtype, name
    assert ha.loss == hb.loss and ha.n_iter == hb.n_iter and ha.stop_reason == hb.stop_reason
    for name, trace in ha.params.items():
        assert np.array_equal(trace.value, hb.params[name].value) and np.array_equal(trace.step, hb.params[name].step)


CASES = {
    "ssr": (lambda: DosageNetwork.random(seed=0), *cr.data.dosage(), dict(restarts=40, seed=3, max_iter=300)),
    "mse": (lambda: _network("mse"), X, TARGETS["mse"], dict(loss="mse", restarts=40, seed=1, max_iter=60)),
    "cross_entropy": (
        lambda: _network("cross_entropy"),
        X,
        TARGETS["cross_entropy"],
        dict(loss="cross_entropy", restarts=40, seed=2, max_iter=30, batch_size=8, compile=True),
    ),
}


@pytest.mark.parametrize("loss", list(CASES))
def test_local_processes_give_bit_for_bit_the_result_without_an_executor(loss, pool):
    make, x, y, kw = CASES[loss]
    _same(_fit(make, x, y, pool, **kw), _fit(make, x, y, **kw))


def test_one_worker_and_two_workers_give_the_same_numbers(pool):
    make, x, y, kw = CASES["ssr"]
    kw = dict(kw, restarts=70)  # 2 shards on one worker, 4 on two
    assert len(shard_starts(70, 1)) == 2 and len(shard_starts(70, 2)) == 4
    with open_executor(workers=1) as one:
        _same(_fit(make, x, y, one, **kw), _fit(make, x, y, pool, **kw))


def test_dask_gives_what_a_process_pool_gives_and_what_no_executor_gives(client):
    make, x, y, kw = CASES["mse"]
    with ProcessPoolExecutor(max_workers=2) as processes:
        pooled = _fit(make, x, y, processes, **kw)
    on_dask = _fit(make, x, y, client.get_executor(), **kw)
    _same(on_dask, pooled)
    _same(on_dask, _fit(make, x, y, **kw))


def test_a_thread_pool_gives_the_same_numbers_too():
    # Threads share the model and chainrule's process-wide grad mode: their shards take turns.
    make, x, y, kw = CASES["cross_entropy"]
    with ThreadPoolExecutor(max_workers=3) as threads:
        _same(_fit(make, x, y, threads, **kw), _fit(make, x, y, **kw))


def test_seed_none_draws_one_entropy_for_every_shard(pool):
    x, y = cr.data.dosage()
    trainer = cr.Trainer(DosageNetwork.random(seed=0), x, y, restarts=40, max_iter=50, executor=pool)
    spread = trainer.run()
    assert trainer.restart_entropy is not None
    again = _fit(lambda: DosageNetwork.random(seed=0), x, y, restarts=40, max_iter=50, seed=trainer.restart_entropy)
    _same((trainer.model, spread), again)


# ---- a dead worker's shard runs again ----------------------------------------------------------------


class KilledOnce(DosageNetwork):
    """The lessons' network whose first draw in a worker process kills that process (SIGKILL), once."""

    flag = ""
    parent = 0

    def reset_parameters(self, rng=None):
        if self.flag and os.getpid() != self.parent and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().reset_parameters(rng)


def test_a_local_worker_killed_mid_run_has_its_shard_run_again(tmp_path, pool):
    x, y = cr.data.dosage()
    kw = dict(restarts=40, seed=5, max_iter=200)
    killed = KilledOnce.random(seed=0)
    killed.flag, killed.parent = str(tmp_path / "killed"), os.getpid()
    history = cr.fit(killed, x, y, executor=pool, **kw)
    assert os.path.exists(killed.flag)  # a worker did die
    _same((killed, history), _fit(lambda: DosageNetwork.random(seed=0), x, y, **kw))


def test_a_dask_worker_killed_while_shards_run_has_its_shards_run_again(client):
    x, y = cr.data.dosage()
    kw = dict(restarts=64, seed=6, max_iter=1000, tol=0)  # 4 shards of about a third of a second each
    pids = client.run(os.getpid)
    killed = []

    def kill_a_worker_once_shards_run():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(client.processing().values()):
            time.sleep(0.02)
        time.sleep(0.1)
        busy = [w for w, tasks in client.processing().items() if tasks]
        if busy:
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(busy[0])

    killer = threading.Thread(target=kill_a_worker_once_shards_run)
    killer.start()
    on_dask = _fit(lambda: DosageNetwork.random(seed=0), x, y, client.get_executor(), **kw)
    killer.join()
    assert killed
    _same(on_dask, _fit(lambda: DosageNetwork.random(seed=0), x, y, **kw))
    client.wait_for_workers(2, timeout=30)  # the nanny brings the killed worker back for the next tests


# ---- Ctrl-C, and what the executor must be -------------------------------------------------------------


def test_ctrl_c_after_a_shard_keeps_the_best_finished_start_at_its_final_values(pool):
    x, y = cr.data.dosage()
    trainer = cr.Trainer(DosageNetwork.random(seed=0), x, y, restarts=64, seed=1, max_iter=300, executor=pool)

    def ctrl_c_after_the_first_shard(done, total, best):
        raise KeyboardInterrupt

    trainer.on_shard = ctrl_c_after_the_first_shard
    history = trainer.run()
    assert trainer.population_interrupted and history.n_iter == 0
    assert "1 of 4 shards (16 starts) had finished" in history.stop_reason
    losses = history.restart_losses
    assert np.isnan(losses).sum() == 48 and (history.restart_iterations[np.isnan(losses)] == 0).all()
    best = history.best_restart
    assert f"kept start {best + 1}, the best of those" in history.stop_reason and losses[best] == np.nanmin(losses)
    with cr.no_grad():
        now = cr.losses.ssr(trainer.model(cr.tensor(x.reshape(-1, 1))), y.reshape(-1, 1)).item()
    assert now == pytest.approx(losses[best], rel=1e-12)  # the model holds that start where it ended
    assert run_tasks(pool, abs, [-2, 3]) == [2, 3]  # the pool still works (fresh processes)


def _fails_first(i):
    if i == 0:
        raise ValueError("task 0 failed")
    time.sleep(0.05)
    return i


def test_a_task_that_fails_cancels_the_tasks_not_yet_started():
    # one thread, 20 tasks queued: the first one's error is raised at once and the queued ones never run (before,
    # the other 19 ran on in the background after the error had been raised)
    from concurrent.futures import ThreadPoolExecutor

    ran = []
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match="task 0 failed"):
            run_tasks(pool, lambda i: ran.append(_fails_first(i)), list(range(20)))
    assert len(ran) <= 2  # (the thread may have taken the next task before the error was seen)


class _Interrupted(Executor):
    """Every task ends in a KeyboardInterrupt, as a Ctrl-C before any shard finished."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        future.set_exception(KeyboardInterrupt())
        return future


def test_ctrl_c_before_any_shard_finished_says_so_and_keeps_the_model():
    x, y = cr.data.dosage()
    net = DosageNetwork.random(seed=0)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    trainer = cr.Trainer(net, x, y, restarts=40, seed=1, executor=_Interrupted())
    history = trainer.run()
    assert trainer.population_interrupted and "before any shard finished" in history.stop_reason
    assert history.restart_losses is None
    assert all(np.array_equal(v, net.state_dict()[k]) for k, v in before.items())


def test_an_executor_needs_restarts_and_must_be_an_executor():
    x, y = cr.data.dosage()
    with pytest.raises(ValueError, match="executor spreads the random starts of restarts=N"):
        cr.fit(DosageNetwork.random(seed=0), x, y, executor=_Interrupted())
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor .* got str"):
        cr.fit(DosageNetwork.random(seed=0), x, y, restarts=2, executor="tcp://127.0.0.1:8786")


def test_workers_of_reads_pools_and_dask(pool, client):
    assert workers_of(pool) == 2 and isinstance(pool, LocalWorkers)
    assert workers_of(client.get_executor()) == 2  # the cluster's two one-thread workers


# ---- the command line ------------------------------------------------------------------------------


@pytest.fixture
def lessons_csv(tmp_path):
    path = tmp_path / "dosage.csv"
    path.write_text("x,y\n0,0\n0.5,1\n1,0\n")
    return path


def _cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_with_workers_writes_the_same_file_as_without(tmp_path, lessons_csv, capsys):
    fit = ["fit", lessons_csv, "--target", "y", "--restarts", "1000", "--max-iter", "100"]
    code, out, err = _cli(capsys, *fit, "--workers", "2", "--out", tmp_path / "spread.json")
    assert code == 0, err
    assert "training 1000 random starts in shards on 2 local processes" in out
    assert "random starts: shard 4/4 done, best loss so far" in err
    assert _cli(capsys, *fit, "--out", tmp_path / "here.json")[0] == 0
    assert (tmp_path / "spread.json").read_bytes() == (tmp_path / "here.json").read_bytes()


def test_fit_on_a_dask_scheduler_writes_the_same_file_as_without(tmp_path, lessons_csv, capsys, cluster):
    fit = ["fit", lessons_csv, "--target", "y", "--restarts", "200", "--max-iter", "300"]
    code, out, err = _cli(capsys, *fit, "--scheduler", cluster.scheduler_address, "--out", tmp_path / "dask.json")
    assert code == 0, err
    quiet = _cli(capsys, *fit, "--scheduler", cluster.scheduler_address, "--quiet", "--out", tmp_path / "q.json")
    assert quiet[0] == 0 and quiet[1] == "" and "shard" not in quiet[2]  # no progress either
    assert f"in shards on the Dask scheduler {cluster.scheduler_address}" in out and "shard 4/4 done" in err
    assert _cli(capsys, *fit, "--out", tmp_path / "here.json")[0] == 0
    assert (tmp_path / "dask.json").read_bytes() == (tmp_path / "here.json").read_bytes()


@pytest.mark.parametrize(
    "extra, said",
    [
        (["--workers", "2"], "--workers spreads the random starts of --restarts over workers; give --restarts N"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler spreads the random starts of --restarts"),
        (["--restarts", "3", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "give one of them, not both"),
        (["--restarts", "3", "--workers", "0"], "--workers must be an integer in [1, "),
        (["--restarts", "3", "--scheduler", "nonsense"], "address such as tcp://127.0.0.1:8786, got 'nonsense'"),
        (["--restarts", "3", "--scheduler", "tcp://127.0.0.1:99999"], "got 'tcp://127.0.0.1:99999'"),
    ],
)
def test_bad_spreading_flags_are_one_line_and_exit_2(tmp_path, lessons_csv, capsys, extra, said):
    code, out, err = _cli(capsys, "fit", lessons_csv, "--target", "y", *extra, "--out", tmp_path / "m.json")
    assert code == 2 and said in err and err.count("\n") == 1 and out == ""
    assert not (tmp_path / "m.json").exists()


def test_a_scheduler_nobody_answers_at_is_one_line_and_exit_2(tmp_path, lessons_csv, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(cli, "SCHEDULER_TIMEOUT", 0.5)
    code, out, err = _cli(
        capsys, "fit", lessons_csv, "--target", "y", "--restarts", "3", "--scheduler", "tcp://127.0.0.1:9",
        "--quiet", "--out", tmp_path / "m.json",
    )  # fmt: skip
    assert code == 2 and "could not reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err
    assert err.count("\n") == 1 and not (tmp_path / "m.json").exists()


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the child gets Python's KeyboardInterrupt in any parent


def _wait_for_children(pid, count, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            if len(f.read().split()) >= count:
                return
        time.sleep(0.05)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads a process's children from /proc (Linux)")
def test_a_real_ctrl_c_to_the_whole_process_group_writes_nothing_before_a_shard_finished(tmp_path, lessons_csv):
    # As a terminal does: SIGINT to the command and its worker processes at once, while the shards run.
    command = [sys.executable, "-c", "import sys; from chainrule.cli import main; sys.exit(main())"]
    args = ["fit", str(lessons_csv), "--target", "y", "--restarts", "64", "--workers", "1", "--tol", "0"]
    args += ["--max-iter", "100000000", "--out", str(tmp_path / "m.json")]  # 2 shards that would run for hours
    child = subprocess.Popen(
        command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().startswith("fitting")
        assert "random starts in shards on 1 local process," in child.stdout.readline()
        _wait_for_children(child.pid, 2)  # the worker and multiprocessing's resource tracker
        time.sleep(0.5)  # the shards are running
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert "Traceback" not in err, err
    assert child.returncode == 130 and "64 random starts in 2 shards, before any shard finished" in err
    assert "nothing written" in err
    assert not (tmp_path / "m.json").exists()


def test_ctrl_c_after_a_shard_on_the_command_line_saves_the_best_finished_start(
    tmp_path, lessons_csv, capsys, monkeypatch
):
    def ctrl_c_after_the_first_shard(self, done, total, best):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._Progress, "shard", ctrl_c_after_the_first_shard)
    fit = ["fit", lessons_csv, "--target", "y", "--restarts", "64", "--workers", "1", "--max-iter", "200"]
    code, out, err = _cli(capsys, *fit, "--out", tmp_path / "m.json")
    assert code == 0, err
    assert "1 of 2 shards (32 starts) had finished; kept start" in out and "at its final values; saved it" in out
    assert "over the 32 finished starts" in out
    lowest = float(re.search(r"final losses from (\S+) to", out).group(1))
    training = cr.modelfile.load(tmp_path / "m.json").training
    assert training["interrupted"] is True and training["n_iter"] == 0
    assert training["final_loss"] == pytest.approx(lowest, rel=1e-5)  # the file holds that start's final values


def test_more_local_workers_than_cores_is_one_line_exit_2_before_any_process(tmp_path, lessons_csv, capsys):
    # each shard of --restarts 1000 would start a process of its own (62 of them): refused in flag words
    many = max(2, os.cpu_count() or 1) + 1
    out = tmp_path / "m.json"
    code, _, err = _cli(
        capsys, "fit", lessons_csv, "--target", "y", "--restarts", "1000", "--workers", many, "--out", out
    )
    assert code == 2 and err.count("\n") == 1 and f"--workers must be an integer in [1, {many - 1}]" in err
    assert not out.exists()
