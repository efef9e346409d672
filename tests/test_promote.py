"""alap.promote on the embedded SQLite store: gates, choice, the none-passes report, idempotence."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from alap.promote import latency_key, promote
from alap.tracking import PARENT_ENV, Tracker, registered_model_name

DEVICE = "cpu-t2"
P50 = latency_key(DEVICE, "onnxruntime")
TEACHER_FID = 40.0
# name: (fid, lpips, lpips_teacher, p50 ms). Limits by default: p50 <= 33, fid <= 44, lpips_teacher <= 0.05.
POINTS = {
    "s0.25": (41.0, 0.20, 0.02, 40.0),  # best quality, too slow
    "s0.50": (43.0, 0.21, 0.03, 20.0),  # best quality among passing
    "s0.75": (43.9, 0.25, 0.04, 10.0),  # fastest passing
    "s0.90": (50.0, 0.30, 0.09, 5.0),  # fastest, fails fid and lpips_teacher
}


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> Tracker:
    """One embedded store for the module (creating MLflow's SQLite schema costs seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", PARENT_ENV):
            mp.delenv(name, raising=False)
        return Tracker.connect(tmp_path_factory.mktemp("project"))


def register(tracker: Tracker, task: str, run_id: str) -> int:
    """Register a version cheaply (no model files): promotion reads only versions, runs and tags."""
    name = registered_model_name(task)
    try:
        tracker.client.create_registered_model(name)
    except MlflowException:
        pass  # already there
    return int(tracker.client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version)


def sweep(tracker: Tracker, task: str, points=POINTS, teacher_fid: float | None = TEACHER_FID) -> dict[str, int]:
    parent = tracker.parent_run(f"alap-{task}", "sweep", key=task)
    if teacher_fid is not None:
        tracker.log_point(parent, "teacher", {}, {"fid": teacher_fid})
    versions = {}
    for name, (fid, lpips, lpips_t, p50) in points.items():
        run_id = tracker.log_point(parent, name, {}, {"fid": fid, "lpips": lpips, "lpips_teacher": lpips_t, P50: p50})
        versions[name] = register(tracker, task, run_id)
    return versions


def aliases(tracker: Tracker, task: str) -> dict[str, int | None]:
    name = registered_model_name(task)
    return {a: tracker.alias_version(name, a) for a in ("champion", f"{DEVICE}-champion")}


def test_quality_picks_lowest_fid_among_passing(tracker: Tracker):
    versions = sweep(tracker, "q")
    result = promote("q", DEVICE, client=tracker)
    assert result.champion is not None and result.champion.version == versions["s0.50"]
    assert result.changed
    assert aliases(tracker, "q") == {"champion": versions["s0.50"], f"{DEVICE}-champion": versions["s0.50"]}
    tags = tracker.client.get_model_version("alap-q", str(versions["s0.50"])).tags
    evidence = tags[f"alap.promotion.{DEVICE}"]
    assert f'"{P50}": 20.0' in evidence and '"teacher_fid": 40.0' in evidence and '"max_fid": 44.0' in evidence
    failed = {c.run_name: [f.gate for f in c.failures] for c in result.candidates}
    assert failed == {"s0.25": [P50], "s0.50": [], "s0.75": [], "s0.90": ["fid", "lpips_teacher"]}


def test_speed_picks_fastest_passing_and_second_call_is_idempotent(tracker: Tracker):
    versions = sweep(tracker, "sp")
    first = promote("sp", DEVICE, prefer="speed", client=tracker)
    assert first.champion.version == versions["s0.75"] and first.changed
    before = tracker.client.get_model_version("alap-sp", str(versions["s0.75"]))
    second = promote("sp", DEVICE, prefer="speed", client=tracker)
    after = tracker.client.get_model_version("alap-sp", str(versions["s0.75"]))
    assert second.champion.version == versions["s0.75"] and not second.changed
    assert after.tags == before.tags and after.last_updated_timestamp == before.last_updated_timestamp
    assert "already champion" in second.report()
    # The other preference moves the aliases: promotion follows the gates, not history.
    assert promote("sp", DEVICE, prefer="quality", client=tracker).champion.version == versions["s0.50"]
    assert aliases(tracker, "sp")["champion"] == versions["s0.50"]


def test_none_passes_reports_each_failure_and_changes_nothing(tracker: Tracker):
    sweep(tracker, "none")
    result = promote("none", DEVICE, max_p50_ms=1.0, max_lpips_teacher=0.01, client=tracker)
    assert result.champion is None and not result.changed
    assert aliases(tracker, "none") == {"champion": None, f"{DEVICE}-champion": None}
    for candidate in result.candidates:
        gates = {f.gate: f for f in candidate.failures}
        assert gates[P50].limit == 1.0 and gates[P50].value == POINTS[candidate.run_name][3]
        assert gates["lpips_teacher"].value == POINTS[candidate.run_name][2]
    report = result.report()
    assert "no version passes" in report
    assert f"{P50}: 20 > 1" in report and "lpips_teacher: 0.03 > 0.01" in report and "fid: 50 > 44" in report


def test_missing_values_fail_their_gates(tracker: Tracker):
    parent = tracker.parent_run("alap-miss", "sweep", key="miss")
    run_id = tracker.log_point(parent, "s0.50", {}, {"fid": 10.0})  # no latency, no lpips_teacher, no teacher
    register(tracker, "miss", run_id)
    result = promote("miss", DEVICE, client=tracker)
    assert result.champion is None
    assert [str(f) for f in result.candidates[0].failures] == [
        f"{P50}: missing",
        "fid: 10 (no limit: teacher fid missing)",
        "lpips_teacher: missing",
    ]


def test_teacher_fid_from_version_tag(tracker: Tracker):
    versions = sweep(tracker, "tag", points={"s0.50": POINTS["s0.50"]}, teacher_fid=None)
    assert promote("tag", DEVICE, client=tracker).champion is None  # no teacher: the fid gate cannot pass
    tracker.set_version_tags("alap-tag", versions["s0.50"], {"alap.teacher_fid": "39.5"})
    result = promote("tag", DEVICE, client=tracker)
    assert result.champion.version == versions["s0.50"] and result.champion.teacher_fid == 39.5


def test_no_versions_and_bad_arguments(tracker: Tracker):
    with pytest.raises(LookupError, match="'alap-nothing' has no versions"):
        promote("nothing", DEVICE, client=tracker)
    with pytest.raises(ValueError, match="prefer"):
        promote("q", DEVICE, prefer="size", client=tracker)
    with pytest.raises(ValueError, match="device"):
        promote("q", "cpu t2", client=tracker)
    with pytest.raises(ValueError, match="max_p50_ms"):
        promote("q", DEVICE, max_p50_ms=0, client=tracker)


def test_connects_to_the_project_store_by_default(tracker: Tracker, monkeypatch):
    project = Path(tracker.uri.removeprefix("sqlite:///")).parent
    for name in ("MLFLOW_TRACKING_URI", PARENT_ENV):
        monkeypatch.delenv(name, raising=False)
    sweep(tracker, "dflt", points={"s0.75": POINTS["s0.75"]})
    assert promote("dflt", DEVICE, project_dir=project).champion.run_name == "s0.75"
