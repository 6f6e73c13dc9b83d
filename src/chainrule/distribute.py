"""Independent work spread over processes or a Dask cluster, through ``concurrent.futures``.

chainrule does not schedule anything itself: work goes to any
:class:`concurrent.futures.Executor`. :func:`open_executor` gives one for the
command line's ``--workers K`` (K local processes) or ``--scheduler ADDRESS``
(a running ``dask.distributed`` scheduler, extra ``chainrule[dask]``), and
:func:`run_tasks` runs a list of tasks on it, in any order, giving the results
back in the tasks' order. A task whose worker died is run again: Dask does
that by itself; a local pool of our own is replaced by a fresh one; any other
executor that breaks has its unfinished tasks run here, in this process.

The tasks must be picklable: a module-level function and plain arguments.

Example: squares on two local processes::

    >>> from chainrule.distribute import open_executor, run_tasks
    >>> with open_executor(workers=2) as pool:
    ...     run_tasks(pool, pow, [(2, 2), (3, 2), (4, 2)], star=True)
    [4, 9, 16]
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from .checks import Instance, Integer, check

__all__ = ["LocalWorkers", "open_executor", "run_tasks", "workers_of"]


class LocalWorkers(Executor):
    """A pool of ``workers`` local processes that replaces itself when one of them dies.

    A :class:`ProcessPoolExecutor` (processes started fresh, "spawn", so no
    thread of this process is copied into them) which :func:`run_tasks` renews
    after a worker is killed, so the tasks it lost run again on new processes.
    """

    def __init__(self, workers: int) -> None:
        self.workers = check("LocalWorkers", "workers", workers, Integer(low=1))
        self._context = multiprocessing.get_context("spawn")
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._context, initializer=_ignore_ctrl_c)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with _ctrl_c_ignored_by_new_processes():  # (the pool starts its processes as tasks come)
            return self._pool.submit(fn, *args, **kwargs)

    def renew(self, kill: bool = False) -> None:
        """A fresh pool in place of a broken one (its lost tasks are the caller's to submit again);
        ``kill``: end the old pool's processes first, abandoning the tasks they run."""
        old = self._pool
        if kill:
            for process in list((getattr(old, "_processes", None) or {}).values()):
                process.kill()
        # NOTE: after a kill the pool's own thread fails every future it holds; one cancelled here first
        # would make it raise (InvalidStateError), so a killed pool's futures are left to it.
        old.shutdown(wait=False, cancel_futures=not kill)
        self._pool = self._new_pool()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


@contextmanager
def _ctrl_c_ignored_by_new_processes() -> Iterator[None]:
    """SIGINT ignored while processes start, so they inherit that (across exec) before their first import:
    a Ctrl-C at the terminal, which reaches the whole process group, is then the parent's alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _ignore_ctrl_c() -> None:
    """In a worker process: Ctrl-C at the terminal reaches every process of the group; the parent handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def open_executor(workers: int | None = None, scheduler: str | None = None, timeout: float = 10) -> Iterator[Executor]:
    """An executor for ``workers`` local processes, or for the Dask scheduler at ``scheduler``.

    ``scheduler`` is an address such as ``"tcp://127.0.0.1:8786"`` (the
    ``dask.distributed`` package is then needed: ``pip install chainrule[dask]``);
    give one of the two. The executor is shut down (the Dask client closed) on
    the way out. ``timeout``: seconds to reach the scheduler.
    """
    if (workers is None) == (scheduler is None):
        raise ValueError(f"open_executor: give workers or scheduler (one of them), got {workers=}, {scheduler=}")
    if workers is not None:
        pool = LocalWorkers(workers)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    check("open_executor", "scheduler", scheduler, Instance((str,), "an address such as tcp://host:8786"))
    try:
        from distributed import Client  # an optional dependency: chainrule[dask]
    except ImportError as e:
        raise ValueError(
            f"a Dask scheduler ({scheduler}) needs the dask.distributed package: pip install chainrule[dask] ({e})"
        ) from None
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as e:
        raise ValueError(f"could not reach the Dask scheduler at {scheduler!r}: {e}") from None
    try:
        yield client.get_executor()
    finally:
        client.close()


def workers_of(executor: Executor) -> int:
    """How many tasks ``executor`` runs at once: a pool's workers, a Dask cluster's threads (else the cores).

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(max_workers=3) as pool:
    ...     workers_of(pool)
    3
    """
    if isinstance(executor, LocalWorkers):
        return executor.workers
    client = getattr(executor, "_client", None)  # a Dask client's executor (distributed.ClientExecutor)
    if client is not None and hasattr(client, "nthreads"):
        return max(1, sum(client.nthreads().values()))
    return int(getattr(executor, "_max_workers", None) or os.cpu_count() or 1)


def run_tasks(
    executor: Executor,
    fn: Callable[..., Any],
    tasks: Sequence[Any],
    *,
    star: bool = False,
    on_done: Callable[[int, Any], Any] | None = None,
) -> list:
    """``[fn(t) for t in tasks]`` on ``executor`` (``fn(*t)`` with ``star``), results in the tasks' order.

    ``on_done(i, result)`` is called here as each task finishes (in the order
    they finish): progress, or saving results as they come. A task lost with a
    dead worker runs again (see the module's docstring). Ctrl-C, or an error
    raised by a task, cancels the tasks not yet started (on :class:`LocalWorkers`,
    also the running ones: their processes are ended and fresh ones take their
    place) and is raised here at once.
    """
    call = (lambda t: executor.submit(fn, *t)) if star else (lambda t: executor.submit(fn, t))
    results: list = [None] * len(tasks)
    waiting = dict.fromkeys(range(len(tasks)))
    futures = {call(tasks[i]): i for i in waiting}
    try:
        while futures:
            lost = []
            for future in as_completed(list(futures)):
                i = futures.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    lost.append(i)
                    continue
                results[i] = result
                if on_done is not None:
                    on_done(i, result)
            if not lost:
                break
            if isinstance(executor, LocalWorkers):
                executor.renew()
                futures = {call(tasks[i]): i for i in lost}
                continue
            warnings.warn(
                f"a worker of the executor died; running its {len(lost)} unfinished task(s) in this process",
                RuntimeWarning,
                stacklevel=2,
            )
            for i in lost:
                results[i] = fn(*tasks[i]) if star else fn(tasks[i])
                if on_done is not None:
                    on_done(i, results[i])
    except BaseException:  # a Ctrl-C, or a task's error: the others are not waited for
        if isinstance(executor, LocalWorkers):  # our own processes: stop the running tasks too
            executor.renew(kill=True)
        else:
            for future in futures:
                future.cancel()
        raise
    return results
