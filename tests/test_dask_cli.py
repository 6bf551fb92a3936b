"""`bayescg scales --scheduler ADDRESS` (docs/cluster.md): a dask.distributed cluster gives the same
scan as local worker processes, because every task carries its own seed."""
import json

import pytest

from bayescg.cli import main

MODEL = """
name = "dask-scan"
[potential]
variables = ["q"]
expression = "q**2/2 + 0.05*sin(q/0.05) + 0.001*sin(q/0.001)"
domain = [[-5.0, 5.0]]
[simulation]
delta = 0.5
gamma = 0.1
steps = 200000
walkers = 4
seed = 11
bins = 50
"""

DELTAS = "0.5,0.25,0.1"


def _rows(path):
    rows = json.loads(path.read_text())["rows"]
    for r in rows:
        r.pop("seconds")  # wall clock: the only field allowed to differ
    return rows


def test_scales_on_dask_cluster_equals_local_processes(tmp_path):
    distributed = pytest.importorskip("distributed")
    model = tmp_path / "m.toml"
    model.write_text(MODEL)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        assert main(["scales", str(model), "--deltas", DELTAS, "--out", str(tmp_path / "dask"),
                     "--scheduler", cluster.scheduler_address, "--quiet"]) == 0
        # the same cluster from Python: a Client is accepted wherever an address is
        from bayescg.config import load_model
        from bayescg.executor import get_executor
        from bayescg.scales import scan_scales

        with distributed.Client(cluster) as client, get_executor(client) as ex:
            assert ex.workers == 2
            api = scan_scales(load_model(model), [0.5, 0.25, 0.1], executor=ex).to_dict()["rows"]
    assert main(["scales", str(model), "--deltas", DELTAS, "--out", str(tmp_path / "local"), "--quiet"]) == 0
    dask_rows, local_rows = _rows(tmp_path / "dask" / "scales.json"), _rows(tmp_path / "local" / "scales.json")
    assert [r["delta"] for r in dask_rows] == [0.5, 0.25, 0.1]
    assert dask_rows == local_rows
    for r in api:
        r.pop("seconds")
    assert api == local_rows
    # a real scan, not an empty one: finite temperatures, more steps than walkers
    assert all(r["beta_hat"] > 0 and r["steps"] >= 200000 for r in dask_rows)
