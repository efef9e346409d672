"""Tiny `dvc repro` runs of the real dvc.yaml in a scratch git repo.

The default suite reproduces one task's compression branch (data -> train -> condense -> prune -> distill), checks
that a second repro does nothing and that a new sparsity runs only its own branch; and a latency point's branch
(prune-latency -> distill-latency), whose budget every network meets here, so that no timing on a loaded machine
decides the outcome (the planner's search is tests/test_latency_plan.py's). The whole pipeline (every task,
evaluate, profile, report, `dvc metrics show`) runs in the slow suite: ~35 stage processes take minutes here.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import ROOT, tiny_params, write_params

DVC = str(Path(sys.executable).with_name("dvc"))
TASKS = ["seg2face", "face2cartoon"]  # the tasks whose folders dvc.yaml's report stage depends on
BRANCH = "distill@seg2face-0.5"
LATENCY_POINT = "cpu-t1-1000ms"  # a budget the unpruned tiny network meets: the plan removes nothing


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("project")
    for name in ["alap", "stages", "configs"]:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    params = tiny_params(repo, TASKS, sparsities=[0.5])
    params["sweep"]["latency"]["points"] = [LATENCY_POINT]
    for task in params["tasks"].values():  # relative roots, as in the shipped profiles
        task["root"] = str(Path(task["root"]).relative_to(repo))
    write_params(repo / "params.yaml", params)
    run(["git", "init", "-q"], repo)
    run([DVC, "init", "-q"], repo)
    return repo


@pytest.mark.integration
def test_repro_branch_then_nothing_then_only_new_sparsity(project):
    out = run([DVC, "repro", BRANCH], project)
    for stage in ["data@seg2face", "train@seg2face", "condense@seg2face", "prune@seg2face-0.5", BRANCH]:
        assert f"Running stage '{stage}'" in out
    assert (project / "models" / "seg2face" / "s0.5" / "student.pt").is_file()
    report = json.loads((project / "models" / "seg2face" / "s0.5" / "prune_report.json").read_text())
    assert report["sparsity"] == 0.5

    again = run([DVC, "repro", BRANCH], project)
    assert "Running stage" not in again

    params = (project / "params.yaml").read_text().replace("- 0.5\n", "- 0.5\n  - 0.75\n", 1)
    (project / "params.yaml").write_text(params)
    out = run([DVC, "repro", "distill@seg2face-0.75"], project)
    assert "Running stage 'prune@seg2face-0.75'" in out and "Running stage 'distill@seg2face-0.75'" in out
    assert "Running stage 'train@" not in out and "Running stage 'condense@" not in out
    assert "Running stage 'distill@seg2face-0.5'" not in out


@pytest.mark.integration
def test_latency_point_is_a_branch_of_its_own(project):
    listed = run([DVC, "stage", "list", "--name-only"], project).split()
    for stage in ["prune-latency", "distill-latency", "evaluate-latency", "profile-latency"]:
        assert {f"{stage}@{task}-{LATENCY_POINT}" for task in TASKS} <= set(listed)
    branch = f"distill-latency@seg2face-{LATENCY_POINT}"
    out = run([DVC, "repro", branch], project)
    assert f"Running stage 'prune-latency@seg2face-{LATENCY_POINT}'" in out and f"Running stage '{branch}'" in out
    assert "Running stage 'prune@" not in out and "Running stage 'distill@" not in out
    point = project / "models" / "seg2face" / LATENCY_POINT
    assert (point / "student.pt").is_file()
    report = json.loads((point / "prune_report.json").read_text())
    plan = report["latency"]
    assert plan["device"] == "cpu-t1" and plan["backend"] == "onnxruntime" and plan["batch_size"] == 1
    assert plan["p50_ms_target"] == 1000.0 and 0 < plan["p50_ms_planned"] <= 1000.0
    assert 0 < plan["p50_ms_student"] and plan["student_within_budget"]
    assert report["target"] == "latency" and report["sparsity"] == report["macs_removed_fraction"]
    distill = json.loads((point / "distill_report.json").read_text())
    assert distill["sparsity"] == report["sparsity"]
    assert "Running stage" not in run([DVC, "repro", branch], project)


@pytest.mark.slow
@pytest.mark.integration
def test_whole_pipeline_then_nothing(project):
    run([DVC, "repro"], project)
    for task in TASKS:
        for model in ["teacher", "condensed", "s0.5", LATENCY_POINT]:
            metrics = json.loads((project / "reports" / task / model / "metrics.json").read_text())
            assert metrics["task"] == task and metrics["model"] == model
            assert metrics["fid"] >= 0 and metrics["gmacs"] > 0
            assert (project / "reports" / task / model / "grid.png").is_file()
        for point in ["s0.5", LATENCY_POINT]:
            latency = json.loads((project / "reports" / task / point / "latency.json").read_text())
            assert "latency.cpu-t1.onnxruntime.bs1.p50_ms" in latency
        summary = (project / "reports" / "summary.csv").read_text()
        assert f"{task},{LATENCY_POINT}," in summary
    assert (project / "reports" / "summary.csv").is_file()
    assert (project / "reports" / "index.html").is_file()
    assert "Running stage" not in run([DVC, "repro"], project)
    shown = json.loads(run([DVC, "metrics", "show", "--json"], project))
    assert shown, "dvc metrics show returned nothing"
