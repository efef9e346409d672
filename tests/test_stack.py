"""The team stack on real servers: `alap services up` in a temporary folder (PostgreSQL, S3, MLflow on PostgreSQL
with its artifacts on S3, Prefect on PostgreSQL), a 2-point sweep run as a Prefect deployment through it, promotion as a
deployment run, the DVC remote on the stack's bucket, everything read back from PostgreSQL and S3, then
`alap services down` and nothing left listening.

A server that cannot be installed or started fails these tests (`make test` installs PostgreSQL when missing)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from servers import background, free_port  # noqa: E402
from test_flows import SPARSITIES, TASK, WEIGHT, _git_dvc, sweep_runs  # noqa: E402
from tiny import tiny_params, write_params  # noqa: E402

from alap import storage  # noqa: E402
from alap.paths import point_name  # noqa: E402
from alap.services import process  # noqa: E402
from alap.services.stack import ORDER, Stack  # noqa: E402
from alap.tracking.client import Tracker, registered_model_name  # noqa: E402

# All in the default suite: the stack up, a 2-point sweep through it and down took 69 s on an idle 2-core machine.
pytestmark = pytest.mark.integration

SWEEP = "stack-sweep"
DEPLOYMENT_TIMEOUT_S = 900


def alap(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The `alap` command a user types, in a fresh process (the stack must outlive it)."""
    return subprocess.run(
        [sys.executable, "-m", "alap.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        check=False,
    )


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    folder = tmp_path_factory.mktemp("stack") / "services"
    ports = [f"--{name}-port={free_port()}" for name in ORDER]
    try:
        started = alap("services", "up", "--dir", str(folder), *ports)
        assert started.returncode == 0, started.stderr
        yield Stack.load(folder)
    finally:
        alap("services", "down", "--dir", str(folder))  # also after a failure; a second `down` does nothing


@pytest.fixture(scope="module")
def stack_env(stack: Stack) -> dict[str, str]:
    """What `source env.sh` exports, read back from the file the user sources."""
    env = {}
    for line in stack.env_path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = value.strip("'")
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stack-work")


@pytest.fixture(scope="module")
def params_file(workdir: Path) -> Path:
    params = tiny_params(workdir, [TASK], SPARSITIES)
    params["data"].update(n_val=4, n_test=4)
    params["condense"]["sparsity_weight"] = WEIGHT
    return write_params(workdir / "params.yaml", params)


def test_up_serves_every_server_on_loopback_without_leaking_keys(stack: Stack, stack_env: dict[str, str]):
    status = alap("services", "status", "--dir", str(stack.folder))
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("running (pid") == len(ORDER)
    for name in ORDER:
        assert listening(getattr(stack.ports, name)), name
    assert set(stack_env) >= {"MLFLOW_TRACKING_URI", "PREFECT_API_URL", "AWS_ENDPOINT_URL", "ALAP_S3_BUCKET"}
    assert stack.env_path.stat().st_mode & 0o077 == 0  # the env file holds the S3 keys: owner only
    secret = stack_env["AWS_SECRET_ACCESS_KEY"]
    password = stack.cluster.password()
    for name in ORDER:
        pid = process.running_pid(stack.folder, name)
        argv = Path(f"/proc/{pid}/cmdline").read_text()
        log = process.log_path(stack.folder, name).read_text()
        assert secret not in argv + log and password not in argv + log, name
    assert secret not in status.stdout + status.stderr and password not in status.stdout + status.stderr
    again = alap("services", "up", "--dir", str(stack.folder), "--s3-port", "1")
    assert again.returncode == 2 and "already run" in again.stderr  # other ports while running: refused


def test_s3_rejects_wrong_keys(stack: Stack, stack_env: dict[str, str], monkeypatch):
    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    assert storage.check_bucket().bucket == stack.bucket
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-of-this-stack")
    with pytest.raises(storage.StorageCredentialsError):
        storage.check_bucket(max_attempts=1)


def test_a_busy_port_is_refused_before_anything_is_written(tmp_path, capsys):
    """Other bad input (ports out of range or equal, no stack yet) is in tests/test_cli_errors.py."""
    from alap.cli import main

    folder = tmp_path / "services"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        free = [f"--{name}-port={free_port()}" for name in ORDER if name != "prefect"]
        assert main(["services", "up", "--dir", str(folder), *free, f"--prefect-port={port}"]) == 2
    err = capsys.readouterr().err
    assert f"port {port} for prefect is in use" in err and len(err.strip().splitlines()) == 1
    assert not folder.exists()


def _deployment_ready(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/deployments/name/alap-promote/nightly-promote", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def deployment_runs(stack, stack_env, workdir, params_file, torch_home) -> dict:
    """`python -m flows.serve` on the stack's Prefect server; the sweep, then promotion, run as deployment runs."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = {**stack_env, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(workdir / "prefect-client")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    argv = [sys.executable, "-m", "flows.serve", "--params", str(params_file), "--out-root", str(workdir / SWEEP)]
    argv += ["--device", "cpu-t1"]
    ready = lambda: _deployment_ready(stack.prefect_api_url)  # noqa: E731
    with (
        background(argv, workdir / "serve.log", ready, 180, env) as serve_pid,
        temporary_settings({PREFECT_API_URL: stack.prefect_api_url}),
    ):
        sweep = run_deployment(
            "alap-sweep/nightly-sweep",
            parameters={"tasks": [TASK], "sparsities": SPARSITIES, "torch_home": str(torch_home)}
            | {"name": SWEEP, "project_dir": str(workdir)},
            timeout=DEPLOYMENT_TIMEOUT_S,
        )
        promote = run_deployment(
            "alap-promote/nightly-promote",
            parameters={"tasks": [TASK], "max_p50_ms": 1e6, "max_fid_ratio": 1e6, "max_lpips_teacher": 1e6}
            | {"project_dir": str(workdir)},
            timeout=DEPLOYMENT_TIMEOUT_S,
        )
        # A run reports Completed just before its process exits; stopping the runner in between would cancel it.
        _wait_for_no_children(serve_pid, DEPLOYMENT_TIMEOUT_S)
    return {"sweep": sweep, "promote": promote, "log": (workdir / "serve.log").read_text(errors="replace")}


def _wait_for_no_children(pid: int, timeout_s: float) -> None:
    """Until the process ``pid`` (the deployments' runner) has no child processes left (its flow runs)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while psutil.Process(pid).children(recursive=True):
        assert time.monotonic() < deadline, f"the runner's flow-run processes still run after {timeout_s} s"
        time.sleep(0.5)


@pytest.fixture
def tracker(stack, monkeypatch, workdir) -> Tracker:
    """A client of the stack's MLflow server with no S3 keys: artifacts come through the server's proxy."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.mlflow_url)
    for name in ("MLFLOW_REGISTRY_URI", "ALAP_PARENT_RUN_ID", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    return Tracker.connect(workdir)


def test_sweep_deployment_run_tracks_on_postgres_with_artifacts_on_s3(
    deployment_runs, stack, stack_env, tracker, workdir, monkeypatch
):
    for which in ("sweep", "promote"):
        run = deployment_runs[which]
        assert run.state.is_completed(), (which, run.state, deployment_runs["log"][-3000:])

    parent, children = sweep_runs(tracker, SWEEP)
    names = {f"w{WEIGHT:g}-{point_name(s)}" for s in SPARSITIES}
    assert set(children) == {"teacher", *names}
    for name in names:
        assert {"fid", "lpips", "gmacs", "latency.cpu-t1.onnxruntime.bs1.p50_ms"} <= set(children[name].metrics)
        assert {"params.yaml", "metrics.json", "grid.png", "model.onnx"} <= {
            a.path for a in tracker.client.list_artifacts(children[name].run_id)
        }
    model = registered_model_name(TASK)
    point_run_ids = {children[n].run_id for n in names}
    versions = [v for v in tracker.model_versions(model) if v.run_id in point_run_ids]
    assert len(versions) == 2
    champion = tracker.alias_version(model, "champion")
    assert champion in {v.version for v in versions} and tracker.alias_version(model, "cpu-t1-champion") == champion

    # The runs and aliases are rows in the stack's PostgreSQL database, not in a SQLite file.
    with stack.cluster.connect("mlflow") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT run_uuid FROM runs")
        assert {parent.info.run_id, *(c.run_id for c in children.values())} <= {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT alias, version FROM registered_model_aliases WHERE name = %s", (model,))
        assert dict(cursor.fetchall()) == {"champion": champion, "cpu-t1-champion": champion}
    assert not list(workdir.rglob("mlflow.db"))
    # So are the Prefect server's flow runs: the deployment runs of the sweep and of promotion.
    with stack.cluster.connect("prefect") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT CAST(id AS text), state_type FROM flow_run WHERE deployment_id IS NOT NULL")
        states = dict(cursor.fetchall())
    assert {str(deployment_runs[w].id): "COMPLETED" for w in ("sweep", "promote")}.items() <= states.items()

    # Each point's grid.png, read back from the S3 bucket, is the file the point wrote.
    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    client = storage.s3_client()
    for name in names:
        artifact_uri = tracker.client.get_run(children[name].run_id).info.artifact_uri  # mlflow-artifacts:/<exp>/...
        key = f"mlflow/{artifact_uri.split(':', 1)[1].strip('/')}/grid.png"
        stored = client.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
        sparsity = float(name.split("-s")[1])
        local = workdir / SWEEP / TASK / f"w{WEIGHT:g}" / "reports" / TASK / point_name(sparsity) / "grid.png"
        assert stored == local.read_bytes()


def test_dvc_remote_on_the_stacks_bucket(deployment_runs, stack, stack_env, tmp_path, workdir, monkeypatch):
    """The sweep's first student, tracked by DVC and pushed to the stack's bucket, read back from S3 by its hash."""
    import shutil

    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    repo = tmp_path / "repo"
    point_dir = workdir / SWEEP / TASK / f"w{WEIGHT:g}" / "models" / TASK / point_name(SPARSITIES[0])
    shutil.copytree(point_dir, repo / "models")
    _git_dvc(repo, "git", "init", "-q")
    _git_dvc(repo, "dvc", "init", "-q")
    _git_dvc(repo, "dvc", "add", "-q", "models/student.pt")
    remote = storage.configure_dvc_remote(repo, "team")  # s3://$ALAP_S3_BUCKET/dvc
    assert remote == f"s3://{stack.bucket}/dvc"
    _git_dvc(repo, "dvc", "push", "-q")
    md5 = yaml.safe_load((repo / "models" / "student.pt.dvc").read_text())["outs"][0]["md5"]
    stored = storage.s3_client().get_object(Bucket=stack.bucket, Key=f"dvc/files/md5/{md5[:2]}/{md5[2:]}")
    assert stored["Body"].read() == (point_dir / "student.pt").read_bytes()


def test_down_stops_every_server_and_leaves_nothing_listening(stack: Stack):
    pids = {name: process.running_pid(stack.folder, name) for name in ORDER}
    assert all(pids.values()), pids
    stopped = alap("services", "down", "--dir", str(stack.folder))
    assert stopped.returncode == 0, stopped.stderr
    for name in ORDER:
        assert not listening(getattr(stack.ports, name)), name
        assert not process.group_alive(pids[name]), name  # every worker of the server's process group too
    status = alap("services", "status", "--dir", str(stack.folder))
    assert status.stdout.count("stopped") == len(ORDER)
    assert json.loads(stack.config_path.read_text())["bucket"] == stack.bucket  # data and settings kept for `up`
