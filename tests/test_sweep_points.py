"""Latency budgets as sweep points, without running them: how a name resolves in the sweep flow's grid, in a
point's MLflow params and stage names, and the sparsity a latency point records (the DVC branch itself runs in
tests/test_dvc_pipeline.py)."""

from __future__ import annotations

import json

import pytest
from tiny import tiny_params

from alap.config import Params
from alap.paths import TaskPaths
from alap.points import recorded_sparsity
from alap.tracking.runs import ModelOutputs, _stages_of, branch_params
from flows.sweep import resolve_grid

POINT = "cpu-t1-1000ms"


@pytest.fixture
def base(tmp_path) -> Params:
    raw = tiny_params(tmp_path, ["seg2face"], sparsities=[0.5])
    raw["sweep"]["latency"] = {"points": [POINT], "backend": "torch", "batch_size": 2, "tolerance": 0.1}
    return Params.model_validate(raw)


def test_the_sweep_grid_has_a_point_per_sparsity_and_per_budget(base, tmp_path):
    grid = resolve_grid(base, tmp_path / "sweep")
    weight = f"w{base.condense.sparsity_weight:g}"
    assert [p.name for p in grid.points] == [f"{weight}-s0.5", f"{weight}-{POINT}"]
    sparsity, latency = grid.points
    assert sparsity.point_dir.name == "s0.5" and latency.point_dir.name == POINT and latency.sparsity is None
    assert sparsity.params.sweep.latency.points == [] and sparsity.params.sweep.sparsities == [0.5]
    assert latency.params.sweep.sparsities == [] and latency.params.sweep.latency.points == [POINT]
    target = latency.params.at_latency_point(POINT).prune.latency
    assert (target.device, target.backend, target.batch_size, target.p50_ms, target.tolerance) == (
        "cpu-t1",
        "torch",
        2,
        1000.0,
        0.1,
    )
    only = resolve_grid(base, tmp_path / "other", latency_points=["cpu-t2-5ms"])
    assert [p.point for p in only.points] == ["s0.5", "cpu-t2-5ms"]


def test_a_latency_points_run_carries_its_budget_and_the_sparsity_it_reached(base, tmp_path):
    paths = TaskPaths("seg2face", models=tmp_path / "models", reports=tmp_path / "reports")
    point_dir = paths.model_dir / POINT
    with pytest.raises(FileNotFoundError, match="no prune report"):
        recorded_sparsity(point_dir)
    point_dir.mkdir(parents=True)
    plan = {"p50_ms_target": 1000.0, "p50_ms_planned": 1.5, "p50_ms_student": 1.6}
    (point_dir / "prune_report.json").write_text(json.dumps({"sparsity": 0.25, "latency": plan}))
    outputs = ModelOutputs.of(paths, POINT)
    assert outputs.sparsity == 0.25
    assert outputs.plan == {"latency_plan.planned_p50_ms": 1.5, "latency_plan.student_p50_ms": 1.6}
    params = branch_params(base, outputs)
    assert params["sparsity"] == 0.25 and params["prune"]["target"] == "latency"
    assert params["prune"]["latency"] == {
        "device": "cpu-t1",
        "backend": "torch",
        "batch_size": 2,
        "p50_ms": 1000.0,
        "tolerance": 0.1,
    }
    assert _stages_of(base, "seg2face", POINT, 0.25) == [
        f"prune-latency@seg2face-{POINT}",
        f"distill-latency@seg2face-{POINT}",
    ]
    (paths.model_dir / "s0.5").mkdir()
    (paths.model_dir / "s0.5" / "prune_report.json").write_text(json.dumps({"sparsity": 0.5}))
    sparsity = ModelOutputs.of(paths, "s0.5")
    assert sparsity.plan == {} and branch_params(base, sparsity)["prune"]["target"] == base.prune.target
    assert _stages_of(base, "seg2face", "s0.5", 0.5) == ["prune@seg2face-0.5", "distill@seg2face-0.5"]
