"""Prefect flows against a temporary Prefect server, a real MLflow server (SQLite backend) whose artifacts live on
a real S3 server: tiny sweeps on threads and on a 2-worker Dask cluster, promotion and the champion loaded back
from the registry, the sweep's data and models through `dvc push`/`dvc pull`, the DVC pipeline's fail-fast and
retry behaviour, and the deployments."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# flows/ is not an installed package (pyproject installs alap* only); `python -m pytest` from the repo root has it
# on sys.path, a bare `pytest` does not.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from servers import S3Server, mlflow_server, s3_server  # noqa: E402
from tiny import tiny_params, write_params  # noqa: E402

from alap import storage  # noqa: E402
from alap.config import ParamsError, load_params  # noqa: E402
from alap.paths import point_name  # noqa: E402
from alap.report.tables import TEACHER  # noqa: E402
from alap.tracking.client import Tracker, registered_model_name  # noqa: E402
from flows.tasks import StageFailed  # noqa: E402

pytestmark = pytest.mark.integration

TASK = "seg2face"
SPARSITIES = [0.5, 0.75]
WEIGHT = 0.002
P50 = "latency.cpu-t1.onnxruntime.bs1.p50_ms"
ARTIFACT_BUCKET, DVC_BUCKET = "mlflow-team", "dvc-team"


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):  # a busy 2-core machine can take a minute
        yield


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flows")


@pytest.fixture(scope="module")
def params_file(workdir: Path) -> Path:
    params = tiny_params(workdir, [TASK], SPARSITIES)
    params["data"].update(n_val=4, n_test=4)  # evaluation (Inception on CPU) dominates: fewest images that work
    params["condense"]["sparsity_weight"] = WEIGHT
    return write_params(workdir / "params.yaml", params)


@pytest.fixture(scope="module")
def long_points_params_file(params_file: Path) -> Path:
    """The tiny params with ~10 s of distillation per point: a worker's first Prefect task run starts a few
    seconds late, and the parallel-points check needs points that outlast that."""
    params = yaml.safe_load(params_file.read_text())
    params["distill"].update(steps=300, checkpoint_every=100, validate_every=100)
    return write_params(params_file.with_name("long_points.yaml"), params)


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3Server:
    """A real S3 server (rclone) for the module, with the MLflow artifact and DVC buckets."""
    with s3_server(tmp_path_factory.mktemp("s3")) as server, pytest.MonkeyPatch.context() as mp:
        for name, value in server.env().items():  # for boto3 here; removed again below for the MLflow client
            mp.setenv(name, value)
        for bucket in (ARTIFACT_BUCKET, DVC_BUCKET):
            storage.create_bucket(bucket)
        yield server


@pytest.fixture(scope="module")
def mlflow_url(s3: S3Server, tmp_path_factory) -> str:
    with mlflow_server(tmp_path_factory.mktemp("mlflow"), f"s3://{ARTIFACT_BUCKET}/mlflow", env=s3.env()) as url:
        yield url


@pytest.fixture(scope="module")
def mlflow_store(mlflow_url: str, s3: S3Server, workdir: Path):
    """The MLflow server for the whole module; the client has no S3 credentials (artifacts are proxied)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_url)
        for name in ("MLFLOW_REGISTRY_URI", "ALAP_PARENT_RUN_ID", *s3.env()):
            mp.delenv(name, raising=False)
        yield Tracker.connect(workdir)


def run_sweep(name: str, workdir: Path, params_file: Path, torch_home: Path, **runner) -> list[dict]:
    from flows.sweep import sweep

    return sweep(
        tasks=[TASK],
        sparsities=SPARSITIES,
        params_path=str(params_file),
        out_root=str(workdir / name),
        torch_home=str(torch_home),
        name=name,
        project_dir=str(workdir),
        **runner,
    )


@pytest.fixture(scope="module")
def thread_sweep(harness, mlflow_store, workdir, params_file, torch_home) -> list[dict]:
    return run_sweep("threads", workdir, params_file, torch_home)


def sweep_runs(tracker: Tracker, sweep_name: str):
    """The sweep's parent run (found by its tag) and its children by name."""
    experiment = tracker.client.get_experiment_by_name(f"alap-{TASK}")
    parents = tracker.client.search_runs([experiment.experiment_id], f"tags.`alap.sweep` = '{sweep_name}'")
    assert len(parents) == 1, [p.info.run_name for p in parents]
    children = {r.name: r for r in tracker.child_runs(parents[0].info.run_id)}
    return parents[0], children


def check_sweep(results: list[dict], tracker: Tracker, sweep_name: str, workdir: Path) -> None:
    """Both points in their own directories with every output, and MLflow holding parent + teacher + points."""
    assert sorted(r["sparsity"] for r in results) == SPARSITIES
    point_dirs = {Path(r["point_dir"]) for r in results}
    report_dirs = {Path(r["report_dir"]) for r in results}
    assert len(point_dirs) == 2 and len(report_dirs) == 2
    for result in results:
        point_dir, report_dir = Path(result["point_dir"]), Path(result["report_dir"])
        assert point_dir.is_relative_to(workdir / sweep_name / TASK / f"w{WEIGHT:g}")
        for name in ("pruned.pt", "student.pt", "prune_report.json", "distill_report.json", "params.yaml"):
            assert (point_dir / name).is_file(), point_dir / name
        for name in ("metrics.json", "latency.json", "grid.png", "model.onnx"):
            assert (report_dir / name).is_file(), report_dir / name
        snapshot = load_params(point_dir / "params.yaml")  # reproduces the point: valid params, this point only
        assert snapshot.sweep.sparsities == [result["sparsity"]]
        assert snapshot.condense.sparsity_weight == WEIGHT and snapshot.run_tasks == [TASK]
        assert result["latency"][P50] > 0

    parent, children = sweep_runs(tracker, sweep_name)
    names = {f"w{WEIGHT:g}-{point_name(s)}" for s in SPARSITIES}
    assert set(children) == {"teacher", *names}
    assert "fid" in children["teacher"].metrics
    for name in names:
        run = children[name]
        assert run.parent_id == parent.info.run_id
        assert {"fid", "lpips", "lpips_teacher", "gmacs", P50} <= set(run.metrics)
        assert run.params["condense.sparsity_weight"] == str(WEIGHT)
        assert float(run.params["sparsity"]) in SPARSITIES and "tasks.face2cartoon.layout" not in run.params
        result = next(r for r in results if f"w{WEIGHT:g}-{point_name(r['sparsity'])}" == name)
        assert (run.start_time, run.end_time) == (
            pytest.approx(result["started"], abs=0.002),
            pytest.approx(result["ended"], abs=0.002),
        )
        artifacts = {a.path for a in tracker.client.list_artifacts(run.run_id)}
        assert {"params.yaml", "metrics.json", "grid.png", "model.onnx"} <= artifacts
    versions = [
        v
        for v in tracker.model_versions(registered_model_name(TASK))
        if v.run_id in {children[n].run_id for n in names}
    ]
    assert len(versions) == 2


def point_runs(tracker: Tracker, sweep_name: str) -> list:
    _, children = sweep_runs(tracker, sweep_name)
    return [run for name, run in children.items() if name != "teacher"]


def overlapping(runs) -> bool:
    """Whether the two points' recorded [started, ended] intervals intersect, i.e. they ran concurrently."""
    (a0, a1), (b0, b1) = [(r.start_time, r.end_time) for r in runs]  # the points' own times, not the logging's
    return a0 < b1 and b0 < a1


def completed_point_runs(sweep_name: str) -> set[str]:
    """Names of the Completed compress-point task runs the Prefect server holds for the sweep ``sweep_name``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        grids = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["alap-sweep-grid"])))
        ids = [run.id for run in grids if run.parameters.get("name") == sweep_name]
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    return {run.name for run in runs if run.task_key.startswith("compress_point") and run.state.is_completed()}


def test_sweep_on_threads(thread_sweep, mlflow_store, workdir, s3):
    check_sweep(thread_sweep, mlflow_store, "threads", workdir)
    grids_on_s3 = list((s3.root / ARTIFACT_BUCKET / "mlflow").rglob("grid.png"))
    assert len(grids_on_s3) >= 3  # teacher + 2 points, stored on the S3 server through MLflow's proxy
    runs = point_runs(mlflow_store, "threads")
    assert overlapping(runs)
    assert {r.tags["alap.point.worker"] for r in runs} == {f"{socket.gethostname()}:{os.getpid()}"}


def test_sweep_on_dask_local_cluster(harness, mlflow_store, workdir, long_points_params_file, torch_home):
    results = run_sweep("dask", workdir, long_points_params_file, torch_home, dask_workers=2)
    check_sweep(results, mlflow_store, "dask", workdir)
    runs = point_runs(mlflow_store, "dask")
    assert overlapping(runs)
    workers = {r.tags["alap.point.worker"] for r in runs}
    assert len(workers) == 2 and f"{socket.gethostname()}:{os.getpid()}" not in workers  # two worker processes
    names = {r["name"] for r in results}
    assert completed_point_runs("dask") == names  # the workers reported to this Prefect server


def test_sweep_rejects_bad_grid_before_work(harness, workdir, params_file):
    from flows.sweep import sweep

    out_root = workdir / "bad"
    with pytest.raises(ParamsError, match="sparsit"):
        sweep(tasks=[TASK], sparsities=[0.5, 1.5], params_path=str(params_file), out_root=str(out_root))
    with pytest.raises(ParamsError, match="run_tasks"):
        sweep(tasks=["nope"], params_path=str(params_file), out_root=str(out_root))
    with pytest.raises(ParamsError, match="distinct"):
        sweep(tasks=[TASK], sparsity_weights=[0.1, 0.1], params_path=str(params_file), out_root=str(out_root))
    assert not out_root.exists()


@pytest.fixture(scope="module")
def promoted(thread_sweep, mlflow_store, workdir, params_file) -> dict:
    """Gates every point passes; the fastest passing version becomes champion."""
    from flows.promote import promote_flow

    return promote_flow(
        tasks=[TASK],
        device="cpu-t1",
        max_p50_ms=1e6,
        max_fid_ratio=1e6,
        max_lpips_teacher=1e6,
        prefer="speed",
        params_path=str(params_file),
        project_dir=str(workdir),
    )


def test_promote_flow_gates(promoted, mlflow_store, workdir, params_file):
    from flows.promote import promote_flow

    champion = promoted[TASK]["champion"]
    assert champion is not None
    model = registered_model_name(TASK)
    assert mlflow_store.alias_version(model, "champion") == champion
    assert mlflow_store.alias_version(model, "cpu-t1-champion") == champion
    strict = promote_flow(
        tasks=[TASK], device="cpu-t1", max_p50_ms=1e-6, params_path=str(params_file), project_dir=str(workdir)
    )
    assert strict[TASK]["champion"] is None and strict[TASK]["passed"] == []
    assert mlflow_store.alias_version(model, "champion") == champion  # a failed promotion changes nothing


def test_champion_loads_from_registry_and_reproduces_its_logged_psnr(promoted, mlflow_store, mlflow_url, params_file):
    import mlflow
    import torch
    from torch.utils.data import DataLoader

    from alap.metrics.pixel import psnr, round_to_8bit
    from alap.task import Task

    version = mlflow_store.client.get_model_version_by_alias(registered_model_name(TASK), "champion")
    logged = mlflow_store.run(version.run_id).metrics["psnr"]
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(mlflow_url)  # models:/ resolves to mlflow-artifacts:/, which this server proxies
    mlflow.set_registry_uri(mlflow_url)
    try:
        model = mlflow.pytorch.load_model(f"models:/{registered_model_name(TASK)}@champion")
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    test_set = Task.from_params(load_params(params_file), TASK).dataset("test", for_eval=True)
    with torch.no_grad():
        # as evaluate scores it: the output rounded to 8 bits, as a saved image holds it
        outputs = [(round_to_8bit(model(b["A"]).clamp(-1, 1)), b["B"]) for b in DataLoader(test_set, batch_size=3)]
        scores = [psnr(output, target) for output, target in outputs]
    assert torch.cat(scores).mean().item() == pytest.approx(logged, abs=1e-3)


def _git_dvc(cwd: Path, *argv: str) -> None:
    import subprocess

    from flows.tasks import dvc_executable

    command = [str(dvc_executable()), *argv[1:]] if argv[0] == "dvc" else list(argv)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"


def test_pipeline_tracking_summarizes_dedupes_and_promotes(thread_sweep, mlflow_store, workdir, params_file, tmp_path):
    """The pipeline's MLflow part on a DVC-layout project made of the thread sweep's outputs: one child per model
    with its branch's params and numeric sparsity and its stages' real times, students not registered twice (the
    sweep already registered these weights), a champion, and a parent run that carries the task summary."""
    import shutil
    from datetime import datetime

    from alap.metrics.names import LatencyKey
    from alap.report.build import build_report
    from flows.pipeline import terminal_summary, track_outputs

    project = tmp_path / "project"
    for source in ("teacher", f"w{WEIGHT:g}"):
        for part in ("models", "reports"):
            shutil.copytree(workdir / "threads" / TASK / source / part, project / part, dirs_exist_ok=True)
    base = load_params(params_file)
    gates = base.promote.with_overrides(device="cpu-t1", max_p50_ms=1e6, max_fid_ratio=1e6, max_lpips_teacher=1e6)
    params = base.model_copy(update={"promote": gates})
    build_report(project / "reports", [TASK], LatencyKey("cpu-t1", "onnxruntime"), project / "models")
    # Only the thread sweep's versions compete: the dask sweep's students (300 distillation steps, not the tiny
    # profile's few) can win on FID, and this test is about a champion among this run's children.
    sweep_run_ids = {r.run_id for r in point_runs(mlflow_store, "threads")}
    for version in mlflow_store.model_versions(registered_model_name(TASK)):
        if version.run_id not in sweep_run_ids:
            mlflow_store.client.delete_model_version(registered_model_name(TASK), str(version.version))

    outcome = track_outputs(params, str(project), str(params_file))

    parent_id = outcome["mlflow"][TASK]["parent_id"]
    children = {r.name: r for r in mlflow_store.child_runs(parent_id)}
    assert set(children) == {"teacher", "s0.5", "s0.75"}
    assert "sparsity" not in children["teacher"].params and "condense.steps" not in children["teacher"].params
    for sparsity in SPARSITIES:
        run = children[point_name(sparsity)]
        assert float(run.params["sparsity"]) == sparsity and run.params["tasks.seg2face.layout"] == "mask_image"
        distill = json.loads((project / "models" / TASK / point_name(sparsity) / "distill_report.json").read_text())
        assert run.end_time == pytest.approx(datetime.fromisoformat(distill["finished_at"]).timestamp(), abs=0.01)
        assert 0 < run.end_time - run.start_time < 120  # prune + distill of a tiny point, not the logging time
        sweep_version = next(
            v
            for v in mlflow_store.model_versions(registered_model_name(TASK))
            if v.tags.get("alap.run_name") == f"w{WEIGHT:g}-{point_name(sparsity)}"
            and v.run_id in {r.run_id for r in point_runs(mlflow_store, "threads")}
        )
        assert run.tags["alap.registered_version"] == f"{registered_model_name(TASK)}/{sweep_version.version}"
        assert sweep_version.tags[f"alap.also_logged_by.{run.run_id}"] == point_name(sparsity)
        assert f"alap.gates.{gates.device}" in mlflow_store.model_versions(registered_model_name(TASK))[0].tags
    registered_runs = {v.run_id for v in mlflow_store.model_versions(registered_model_name(TASK))}
    assert not registered_runs & {r.run_id for r in children.values()}  # the same weights: no new versions

    champion = outcome["promotion"][TASK]["champion"]
    assert champion is not None
    assert mlflow_store.alias_version(registered_model_name(TASK), "champion") == champion
    description = mlflow_store.client.get_model_version(registered_model_name(TASK), str(champion)).description
    gate = f"p50 on {base.promote.device}/{base.promote.backend}"  # the sweep registered it, with the base gates
    assert description.startswith(f"{TASK} s0.") and "GMACs" in description and gate in description

    parent = mlflow_store.run(parent_id)
    assert parent.tags["alap.best_by"] == "champion"  # the champion was first registered by the sweep's run
    assert outcome["promotion"][TASK]["champion_run"] == f"w{WEIGHT:g}-{parent.tags['alap.best_student']}"
    assert "fid" in parent.metrics and P50 in parent.metrics
    artifacts = {a.path for a in mlflow_store.client.list_artifacts(parent_id)}
    assert {"index.html", "summary.md", f"{TASK}_pareto_gmacs.png", f"{TASK}_pareto_latency.png"} <= artifacts

    shown = terminal_summary(outcome, params, project).splitlines()
    assert len(shown) <= 40 and max(map(len, shown)) <= 100
    champion_line = next(line for line in shown if line.endswith("← champion"))
    assert champion_line.startswith(parent.tags["alap.best_student"])


def test_dvc_push_to_s3_then_pull_into_fresh_clone(thread_sweep, s3, workdir, tmp_path, monkeypatch):
    """The sweep's real data and models, tracked by DVC, pushed to the S3 server and pulled into a clone."""
    import shutil

    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(workdir / "data" / TASK, repo / "data" / TASK)
    point_dir = Path(thread_sweep[0]["point_dir"])
    shutil.copytree(point_dir, repo / "models" / TASK / point_dir.name)
    from flows.sweep import layout

    shutil.copy(layout(workdir / "threads" / TASK / TEACHER, TASK).teacher, repo / "models" / TASK / "teacher.pt")
    tracked = ["data", "models"]
    originals = {p.relative_to(repo): p.read_bytes() for d in tracked for p in (repo / d).rglob("*") if p.is_file()}
    assert any(p.suffix == ".png" for p in originals) and any(p.name == "student.pt" for p in originals)

    _git_dvc(repo, "git", "init", "-q")
    _git_dvc(repo, "git", "config", "user.email", "t@example.com")
    _git_dvc(repo, "git", "config", "user.name", "t")
    _git_dvc(repo, "dvc", "init", "-q")
    _git_dvc(repo, "dvc", "add", "-q", *tracked)
    _git_dvc(repo, "git", "add", ".")
    _git_dvc(repo, "git", "commit", "-q", "-m", "sweep outputs")
    assert storage.configure_dvc_remote(repo, "team", f"s3://{DVC_BUCKET}/dvc") == f"s3://{DVC_BUCKET}/dvc"
    assert s3.endpoint not in (repo / ".dvc" / "config").read_text()  # the endpoint stays out of git
    local = (repo / ".dvc" / "config.local").read_text()
    assert s3.endpoint in local and s3.secret not in local  # credentials come from the environment only
    _git_dvc(repo, "dvc", "push", "-q")

    clone = tmp_path / "clone"
    _git_dvc(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "data").exists() and not (clone / "models").exists()
    storage.configure_dvc_remote(clone, "team", f"s3://{DVC_BUCKET}/dvc")
    _git_dvc(clone, "dvc", "pull", "-q")
    pulled = {p.relative_to(clone): p.read_bytes() for d in tracked for p in (clone / d).rglob("*") if p.is_file()}
    assert pulled.keys() == originals.keys()
    assert all(pulled[name] == originals[name] for name in originals)


def dvc_project(root: Path, params_file: Path, stage_cmds: dict[str, str]) -> Path:
    """A DVC project (no git) with valid params and stages running the given commands."""
    import subprocess

    from flows.tasks import dvc_executable

    root.mkdir()
    subprocess.run([str(dvc_executable()), "init", "--no-scm", "-q"], cwd=root, check=True)
    (root / "params.yaml").write_text(params_file.read_text())
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {name: {"cmd": cmd} for name, cmd in stage_cmds.items()}}))
    return root


def test_pipeline_stage_groups_are_dvc_yamls_in_file_order(tmp_path):
    """The flow reads its stage groups from DVC in dvc.yaml's order; a group that expands to no stage (import@,
    when every task trains its teacher; the *-latency groups without latency points) is left out, since
    `dvc repro` of it would run the whole pipeline."""
    import shutil
    import subprocess

    from flows.pipeline import stage_groups
    from flows.tasks import dvc_executable

    groups = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    subprocess.run([str(dvc_executable()), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    params = tiny_params(tmp_path, ["seg2face", "face2cartoon"])
    write_params(tmp_path / "params.yaml", params)
    empty = ["import", *(group for group in groups if group.endswith("-latency"))]
    assert len(empty) == 5 and stage_groups(tmp_path) == [group for group in groups if group not in empty]
    params["dvc"]["train"], params["dvc"]["import"] = ["seg2face"], {"face2cartoon": "teachers/face2cartoon.pth"}
    params["sweep"]["latency"]["points"] = ["cpu-t2-33ms"]
    write_params(tmp_path / "params.yaml", params)
    assert stage_groups(tmp_path) == groups


def test_pipeline_retries_transient_failures_not_bad_input(harness, workdir, params_file):
    from flows.pipeline import pipeline

    py = sys.executable
    flaky = (
        "import pathlib, sys; p = pathlib.Path('attempts'); n = int(p.read_text()) if p.exists() else 0; "
        "p.write_text(str(n + 1)); sys.exit(1 if n == 0 else 0)"
    )
    bad = (
        "import pathlib, sys; p = pathlib.Path('bad_attempts'); "
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); sys.exit(2)"
    )
    project = dvc_project(workdir / "dvcproj", params_file, {"flaky": f'{py} -c "{flaky}"', "bad": f'{py} -c "{bad}"'})

    outcome = pipeline(params_path="params.yaml", project_dir=str(project), stages=["flaky"], track=False)
    assert outcome["stages"] == ["flaky"]
    assert (project / "attempts").read_text() == "2"  # failed once, retried once
    with pytest.raises(StageFailed, match="exited with 2") as failure:
        pipeline(params_path="params.yaml", project_dir=str(project), stages=["bad"], track=False)
    assert failure.value.command_exit == 2
    assert (project / "bad_attempts").read_text() == "x"  # bad input is not retried


def test_pipeline_validates_params_before_any_stage(harness, workdir, params_file):
    from flows.pipeline import pipeline

    project = workdir / "badparams"
    project.mkdir()
    raw = yaml.safe_load(params_file.read_text())
    raw["train"]["steps"] = -1
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="train.steps"):
        pipeline(params_path="params.yaml", project_dir=str(project))  # no dvc project here: no stage ever ran


def test_serve_builds_scheduled_deployments():
    from flows.serve import build_deployments

    deployments = {
        d.name: d
        for d in build_deployments(
            "30 1 * * *", "15 5 * * 1-5", timezone="Europe/Berlin", params_path="configs/demo.yaml", device="cpu-t1"
        )
    }
    assert set(deployments) == {"nightly-sweep", "nightly-promote", "pipeline"}
    sweep, promote, pipeline = deployments["nightly-sweep"], deployments["nightly-promote"], deployments["pipeline"]
    assert [(s.schedule.cron, s.schedule.timezone) for s in sweep.schedules] == [("30 1 * * *", "Europe/Berlin")]
    assert [s.schedule.cron for s in promote.schedules] == ["15 5 * * 1-5"]
    assert pipeline.schedules == []
    assert (sweep.flow_name, promote.flow_name, pipeline.flow_name) == ("alap-sweep", "alap-promote", "alap-pipeline")
    assert sweep.entrypoint == "flows/sweep.py:sweep"
    assert sweep.parameters["params_path"] == "configs/demo.yaml"
    assert promote.parameters["device"] == "cpu-t1"
    assert "max_p50_ms" not in promote.parameters  # a gate not given is the params file's, read when the flow runs


@pytest.mark.slow
def test_pipeline_flow_end_to_end(harness, mlflow_store, tmp_path):
    """The real dvc.yaml on tiny params in a scratch project: every stage, the summary artifact, MLflow runs;
    a second run reproduces nothing and logs nothing new."""
    import shutil

    from prefect.client.orchestration import get_client

    from flows.pipeline import SUMMARY_ARTIFACT, pipeline
    from flows.tasks import dvc_executable

    tasks = ["seg2face", "face2cartoon", "horse2zebra"]  # the report stage depends on every built-in task
    for name in ["alap", "stages", "configs"]:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = tiny_params(tmp_path, tasks, sparsities=[0.5])
    params["promote"].update(device="cpu-t1", max_p50_ms=1e6, max_fid_ratio=1e6, max_lpips_teacher=1e6)
    write_params(tmp_path / "params.yaml", params)
    import subprocess

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(dvc_executable()), "init", "-q"], cwd=tmp_path, check=True)

    outcome = pipeline(project_dir=str(tmp_path))
    assert outcome["summary_rows"] == 3 * len(tasks)
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
    assert any(a.key == SUMMARY_ARTIFACT for a in artifact)
    for task in tasks:
        parent = outcome["mlflow"][task]["parent_id"]
        children = {r.name: r for r in mlflow_store.child_runs(parent)}
        assert set(children) == {"teacher", "condensed", "s0.5"}
        assert "fid" in children["s0.5"].metrics and P50 in children["s0.5"].metrics
        assert len(student_versions(mlflow_store, task, children["s0.5"].run_id)) == 1
        assert children["s0.5"].params["sparsity"] == "0.5" and "sparsity" not in children["teacher"].params
        for run in children.values():  # the stages' own times, before the logging
            assert run.start_time < run.end_time <= mlflow_store.run(parent).end_time + 1
        assert outcome["promotion"][task]["champion_model"] == "s0.5"
        assert mlflow_store.alias_version(registered_model_name(task), "champion") is not None
        assert "index.html" in {a.path for a in mlflow_store.client.list_artifacts(parent)}

    again = pipeline(project_dir=str(tmp_path))
    assert again["mlflow"] == outcome["mlflow"]
    for task in tasks:
        children = {r.name: r for r in mlflow_store.child_runs(outcome["mlflow"][task]["parent_id"])}
        assert len(children) == 3 and len(student_versions(mlflow_store, task, children["s0.5"].run_id)) == 1


def student_versions(tracker: Tracker, task: str, run_id: str) -> list:
    return [v for v in tracker.model_versions(registered_model_name(task)) if v.run_id == run_id]
