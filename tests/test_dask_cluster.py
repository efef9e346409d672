"""The sweep on a Dask cluster started as an operator starts one: `dask scheduler` and `dask worker` processes on
127.0.0.1, one worker with `--resources GPU=1` and one without. With ``point_resources={"GPU": 1}`` every point
runs on the worker that has it; asking for what no worker has fails before any work. Slow (~3 min here): both
points queue for the one GPU slot of a single-threaded worker on a busy 2-core machine."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from servers import dask_cluster  # noqa: E402
from tiny import tiny_params, write_params  # noqa: E402

pytestmark = pytest.mark.integration

TASK = "seg2face"
SPARSITIES = [0.5, 0.75]


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def cluster(harness, tmp_path_factory):
    """Workers report their task runs to the test's Prefect server and import this worktree's code."""
    from prefect.settings import PREFECT_API_URL

    env = {"PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)}
    with dask_cluster(tmp_path_factory.mktemp("dask"), [{"GPU": 1}, {}], env) as running:
        yield running


@pytest.fixture(scope="module")
def params_file(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("dask-work")
    params = tiny_params(workdir, [TASK], SPARSITIES)
    params["data"].update(n_val=4, n_test=4)
    return write_params(workdir / "params.yaml", params)


@pytest.mark.slow
def test_points_run_on_the_worker_with_the_resource(cluster, params_file, torch_home):
    from flows.sweep import sweep

    results = sweep(
        tasks=[TASK],
        sparsities=SPARSITIES,
        params_path=str(params_file),
        out_root=str(params_file.parent / "sweep"),
        torch_home=str(torch_home),
        track=False,
        dask_address=cluster.address,
        point_resources={"GPU": 1},
    )
    assert sorted(r["sparsity"] for r in results) == SPARSITIES
    gpu_worker = f"{socket.gethostname()}:{cluster.worker_pids[0]}"
    assert {r["worker"] for r in results} == {gpu_worker}
    assert all(Path(r["point_dir"], "student.pt").is_file() for r in results)
    assert gpu_worker != f"{socket.gethostname()}:{os.getpid()}"


@pytest.mark.slow
def test_resources_no_worker_has_fail_before_any_work(cluster, params_file):
    from flows.sweep import sweep

    out_root = params_file.parent / "refused"
    with pytest.raises(ValueError, match=r"no worker .* GPU=2 .*GPU=1"):
        sweep(
            tasks=[TASK],
            params_path=str(params_file),
            out_root=str(out_root),
            dask_address=cluster.address,
            point_resources={"GPU": 2},
        )
    with pytest.raises(ValueError, match="dask_address"):
        sweep(tasks=[TASK], params_path=str(params_file), out_root=str(out_root), point_resources={"GPU": 1})
    assert not out_root.exists()


def test_point_resources_flag():
    import argparse

    from flows.sweep import resource

    assert resource("GPU=1") == ("GPU", 1.0) and resource("MEMORY=4e9") == ("MEMORY", 4e9)
    for bad in ("GPU", "GPU=", "=1", "GPU=0", "GPU=x"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=AMOUNT"):
            resource(bad)


def test_nightly_sweep_deployment_carries_the_cluster_and_resources():
    from flows.serve import build_deployments

    deployments = {d.name: d for d in build_deployments(dask_address="tcp://10.0.0.5:8786", point_resources={"GPU": 1})}
    assert deployments["nightly-sweep"].parameters["dask_address"] == "tcp://10.0.0.5:8786"
    assert deployments["nightly-sweep"].parameters["point_resources"] == {"GPU": 1}
