"""alap.promote on the embedded SQLite store: gates, choice, the none-passes report, idempotence; the CLI's gates
from the params file's promote section, overridden by flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.exceptions import MlflowException

from alap.cli import main
from alap.config import PromoteParams
from alap.promote import latency_key, promote
from alap.tracking.client import PARENT_ENV, Tracker, registered_model_name

ROOT = Path(__file__).resolve().parents[1]
GATES = PromoteParams()  # the defaults, which the ready profiles use (test_config)
DEVICE = GATES.device
P50 = latency_key(GATES)
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
    result = promote("q", GATES, client=tracker)
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
    first = promote("sp", GATES.with_overrides(prefer="speed"), client=tracker)
    assert first.champion.version == versions["s0.75"] and first.changed
    before = tracker.client.get_model_version("alap-sp", str(versions["s0.75"]))
    second = promote("sp", GATES.with_overrides(prefer="speed"), client=tracker)
    after = tracker.client.get_model_version("alap-sp", str(versions["s0.75"]))
    assert second.champion.version == versions["s0.75"] and not second.changed
    assert after.tags == before.tags and after.last_updated_timestamp == before.last_updated_timestamp
    assert "already champion" in second.report()
    # The other preference moves the aliases: promotion follows the gates, not history.
    assert promote("sp", GATES, client=tracker).champion.version == versions["s0.50"]
    assert aliases(tracker, "sp")["champion"] == versions["s0.50"]


def test_none_passes_reports_each_failure_and_changes_nothing(tracker: Tracker):
    sweep(tracker, "none")
    result = promote("none", GATES.with_overrides(max_p50_ms=1.0, max_lpips_teacher=0.01), client=tracker)
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
    result = promote("miss", GATES, client=tracker)
    assert result.champion is None
    assert [str(f) for f in result.candidates[0].failures] == [
        f"{P50}: missing",
        "fid: 10 (no limit: teacher fid missing)",
        "lpips_teacher: missing",
    ]


def test_teacher_fid_from_version_tag(tracker: Tracker):
    versions = sweep(tracker, "tag", points={"s0.50": POINTS["s0.50"]}, teacher_fid=None)
    assert promote("tag", GATES, client=tracker).champion is None  # no teacher: the fid gate cannot pass
    tracker.set_version_tags("alap-tag", versions["s0.50"], {"alap.teacher_fid": "39.5"})
    result = promote("tag", GATES, client=tracker)
    assert result.champion.version == versions["s0.50"] and result.champion.teacher_fid == 39.5


def test_no_versions_and_bad_arguments(tracker: Tracker):
    with pytest.raises(LookupError, match="'alap-nothing' has no versions"):
        promote("nothing", GATES, client=tracker)
    with pytest.raises(ValueError, match="promote.prefer"):
        GATES.with_overrides(prefer="size")
    with pytest.raises(ValueError, match="promote.device"):
        GATES.with_overrides(device="cpu t2")
    with pytest.raises(ValueError, match="promote.max_p50_ms"):
        GATES.with_overrides(max_p50_ms=0)


def test_connects_to_the_project_store_by_default(tracker: Tracker, monkeypatch):
    project = Path(tracker.uri.removeprefix("sqlite:///")).parent
    for name in ("MLFLOW_TRACKING_URI", PARENT_ENV):
        monkeypatch.delenv(name, raising=False)
    sweep(tracker, "dflt", points={"s0.75": POINTS["s0.75"]})
    assert promote("dflt", GATES, project_dir=project).champion.run_name == "s0.75"


def test_cli_gates_come_from_the_params_file_and_flags_override_them(tracker: Tracker, tmp_path, monkeypatch, capsys):
    project = Path(tracker.uri.removeprefix("sqlite:///")).parent
    for name in ("MLFLOW_TRACKING_URI", PARENT_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(project)  # the CLI talks to the project store of the working directory
    versions = sweep(tracker, "cli")
    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    raw["promote"] = {**raw["promote"], "max_p50_ms": 15.0}  # only s0.75 (10 ms) is fast enough
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    promote_cli = ["--params", str(params), "promote", "--task", "cli"]

    assert main(promote_cli) == 0
    assert aliases(tracker, "cli")["champion"] == versions["s0.75"]
    assert f"{P50}: 20 > 15" in capsys.readouterr().out
    assert main([*promote_cli, "--max-p50-ms", "25"]) == 0  # the flag beats the file: s0.50 passes, best fid
    assert aliases(tracker, "cli")["champion"] == versions["s0.50"]
    assert main([*promote_cli, "--prefer", "fastest"]) == 2  # a flag is validated like the section
    assert "promote.prefer" in capsys.readouterr().err


INT8_P50 = latency_key(GATES, "int8")
# name: the int8 export's (int8.fid, int8.lpips_teacher, int8 p50 ms), None for a version measured in fp32 only.
INT8_POINTS = {
    "s0.25": (41.5, 0.025, 30.0),  # int8 brings it under the latency limit
    "s0.50": (43.5, 0.035, 8.0),  # fastest passing pair: its int8 export
    "s0.75": None,  # no int8 values: its int8 gates fail as missing, never guessed
    "s0.90": (52.0, 0.1, 2.0),  # fails fid and lpips_teacher in int8 too
}


def int8_sweep(tracker: Tracker, task: str) -> dict[str, int]:
    """POINTS with their int8 exports' values beside (quantize.int8's keys)."""
    parent = tracker.parent_run(f"alap-{task}", "sweep", key=task)
    tracker.log_point(parent, "teacher", {}, {"fid": TEACHER_FID})
    versions = {}
    for name, (fid, lpips, lpips_t, p50) in POINTS.items():
        metrics = {"fid": fid, "lpips": lpips, "lpips_teacher": lpips_t, P50: p50}
        if INT8_POINTS[name] is not None:
            int8_fid, int8_lpips_t, int8_p50 = INT8_POINTS[name]
            metrics |= {"int8.fid": int8_fid, "int8.lpips_teacher": int8_lpips_t, INT8_P50: int8_p50}
        versions[name] = register(tracker, task, tracker.log_point(parent, name, {}, metrics))
    return versions


def test_int8_precision_judges_each_version_at_both_and_the_evidence_names_the_winner(tracker: Tracker):
    versions = int8_sweep(tracker, "i8")
    both = GATES.with_overrides(precisions=["fp32", "int8"])
    assert INT8_P50 == f"latency.{DEVICE}.onnxruntime-int8.bs1.p50_ms"

    fp32_only = promote("i8", GATES.with_overrides(prefer="speed"), client=tracker)  # the default: int8 unread
    assert fp32_only.champion.version == versions["s0.75"] and len(fp32_only.candidates) == len(POINTS)

    fast = promote("i8", both.with_overrides(prefer="speed"), client=tracker)
    assert (fast.champion.version, fast.champion.precision) == (versions["s0.50"], "int8")
    assert fast.champion.p50_ms == 8.0 and fast.champion.fid == 43.5 and fast.champion.teacher_fid == TEACHER_FID
    evidence = json.loads(
        tracker.client.get_model_version("alap-i8", str(versions["s0.50"])).tags[f"alap.promotion.{DEVICE}"]
    )
    assert evidence["precision"] == "int8" and evidence["backend"] == "onnxruntime-int8"
    assert evidence[INT8_P50] == 8.0 and evidence["int8.fid"] == 43.5 and evidence["int8.lpips_teacher"] == 0.035
    failed = {(c.run_name, c.precision): [str(f) for f in c.failures] for c in fast.candidates}
    assert failed[("s0.25", "fp32")] == [f"{P50}: 40 > 33"] and failed[("s0.25", "int8")] == []
    assert failed[("s0.75", "fp32")] == [] and failed[("s0.75", "int8")] == [
        f"{INT8_P50}: missing",
        "int8.fid: missing",
        "int8.lpips_teacher: missing",
    ]
    assert failed[("s0.90", "int8")] == ["int8.fid: 52 > 44", "int8.lpips_teacher: 0.1 > 0.05"]
    tags = tracker.client.get_model_version("alap-i8", str(versions["s0.75"])).tags
    assert json.loads(tags[f"alap.gates.{DEVICE}"])["verdict"] == "pass"
    assert json.loads(tags[f"alap.gates.{DEVICE}.int8"])[INT8_P50] is None
    assert f"v{versions['s0.50']} s0.50 int8: pass" in fast.report() and "(s0.50) in int8 promoted" in fast.report()

    best = promote("i8", both, client=tracker)  # quality: s0.25's int8 FID 41.5 beats every passing fp32 one
    assert (best.champion.version, best.champion.precision) == (versions["s0.25"], "int8")
    assert aliases(tracker, "i8")["champion"] == versions["s0.25"]


def test_int8_gates_are_cpu_only_and_chosen_like_the_other_gates(tracker: Tracker, tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="onnxruntime-int8' runs on the CPU .* not on cuda0"):
        GATES.with_overrides(device="cuda0", precisions=["int8"])
    with pytest.raises(ValueError, match="precisions must be distinct"):
        GATES.with_overrides(precisions=["int8", "int8"])
    with pytest.raises(ValueError, match="promote.precisions"):
        GATES.with_overrides(precisions=[])
    project = Path(tracker.uri.removeprefix("sqlite:///")).parent
    for name in ("MLFLOW_TRACKING_URI", PARENT_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(project)
    versions = int8_sweep(tracker, "i8cli")
    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**raw, "promote": {**raw["promote"], "prefer": "speed"}}))
    promote_cli = ["--params", str(params), "promote", "--task", "i8cli"]
    assert main(promote_cli) == 0 and aliases(tracker, "i8cli")["champion"] == versions["s0.75"]
    assert main([*promote_cli, "--precisions", "fp32", "int8"]) == 0
    assert aliases(tracker, "i8cli")["champion"] == versions["s0.50"]
    assert "in int8 promoted" in capsys.readouterr().out
    assert main([*promote_cli, "--precisions", "fp16"]) == 2
    assert "promote.precisions" in capsys.readouterr().err
