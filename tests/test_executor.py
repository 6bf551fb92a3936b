"""The executor interface: serial, local processes and a dask LocalCluster give the same results."""
import numpy as np
import pytest

from bayescg.executor import LocalExecutor, SerialExecutor, get_executor


def seeded_task(seed):
    # Each task carries its own seed, so results cannot depend on where or in which order it runs.
    return float(np.random.default_rng(seed).normal(size=1000).sum())


def test_local_processes_match_serial():
    items = list(range(5))
    serial = SerialExecutor().map(seeded_task, items)
    with LocalExecutor(2) as ex:
        assert ex.map(seeded_task, items) == serial


def worker_pid(_):
    import os

    return os.getpid()


def test_local_executor_starts_one_pool_for_chunked_maps_and_none_for_one_item():
    import os

    with LocalExecutor(2) as ex:
        assert ex.map(worker_pid, [0]) == [os.getpid()]  # one item: in this process, no pool
        assert not ex.pool_running
        first = set(ex.map(worker_pid, [0, 1, 2, 3]))
        second = set(ex.map(worker_pid, [0, 1, 2, 3]))
        assert os.getpid() not in first and len(first | second) <= 2  # a pool per map would show 3-4 pids
    assert not ex.pool_running  # closed with the context


def test_dask_local_cluster_matches_serial():
    distributed = pytest.importorskip("distributed")
    items = list(range(6))
    serial = SerialExecutor().map(seeded_task, items)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with get_executor(cluster.scheduler_address) as ex:
            assert ex.workers == 2
            assert ex.map(seeded_task, items) == serial


def test_unreachable_scheduler_is_input_error():
    from bayescg.errors import InputError

    # nothing listens on port 9: dask retries the refused connection until the timeout (10 s by default)
    with pytest.raises(InputError, match="cannot reach dask scheduler"):
        get_executor("tcp://127.0.0.1:9", timeout=1.0)
