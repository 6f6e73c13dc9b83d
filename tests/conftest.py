"""Fixtures shared by the test files: a local Dask cluster for the cluster tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def cluster():
    """A two-process Dask LocalCluster on loopback (one thread a worker, no dashboard), for the whole session.

    Skips with a message where dask.distributed is not installed (``make test`` installs it); under CI
    a missing Dask fails instead, so the cluster tests cannot silently stop running.
    """
    try:
        from distributed import LocalCluster
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("dask.distributed is not installed (pip install chainrule[dask])")
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as running:
        yield running


@pytest.fixture
def client(cluster):
    """A Dask client of the session's cluster, closed after the test."""
    from distributed import Client

    with Client(cluster) as c:
        yield c
