"""The benchmark's unit of work (task x budget x method x seed): seeds that change the run and repeat it to the
byte, one cached row per unit, progress on stderr, the benchmark's own test-set size, and a task folder that is
emptied when the teacher's recipe changes."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tiny import tiny_params, write_params

from alap.bench.params import load_bench_params
from alap.bench.run import UPSTREAM_FILE, RowLedger, _refresh_upstream, bench_params, run_task
from alap.config import load_params
from alap.errors import UserError


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    params = tiny_params(tmp_path, tasks=["seg2face"])
    params["profile"]["backends"] = ["torch"]
    # long enough that distillation keeps a trained student, not its starting point (then every seed would agree)
    params["distill"].update(steps=12, lr=1e-3, validate_every=6, checkpoint_every=6)
    bench_file = tmp_path / "bench.yaml"
    bench_file.write_text(
        yaml.safe_dump(
            {
                "tasks": ["seg2face"],
                "budgets": [3.0],
                "methods": ["slimming", "alap"],
                "seeds": [0, 1],
                "test_images": 5,
                "search_steps": 12,
                "track": False,
            }
        )
    )
    return load_params(write_params(tmp_path / "params.yaml", params)), load_bench_params(bench_file)


def test_seeds_change_the_student_and_a_seed_repeats_it_to_the_byte(
    workspace, tmp_path: Path, torch_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params, settings = workspace
    with caplog.at_level(logging.INFO, logger="alap.bench.run"):
        results = run_task(params, settings, "seg2face", torch_home)
    out = tmp_path / "bench/out/seg2face"
    assert [(r["method"], r["seed"]) for r in results["rows"]] == [
        ("slimming", 0),
        ("slimming", 1),
        ("alap", 0),
        ("alap", 1),
    ]
    assert results["seeds"] == [0, 1]
    progress = [r.getMessage() for r in caplog.records if "] " in r.getMessage() and "min so far" in r.getMessage()]
    assert [p.split(" ", 2)[1] for p in progress] == [f"[{i}/6]" for i in range(1, 7)]  # 2 references + 4 units
    assert "b3/alap/seed1: done in" in progress[-1]

    assert all(r["best_step"] > 0 for r in results["rows"] if r["method"] == "alap")
    for method in ("slimming", "alap"):
        one, two = (_weights(out / f"b3/{method}/seed{s}/student.pt") for s in (0, 1))
        assert one.keys() == two.keys()
        assert any(not torch.equal(one[k], two[k]) for k in one), f"{method}: seeds 0 and 1 trained the same student"
    first = {s: (out / f"b3/alap/seed{s}/student.pt").read_bytes() for s in (0, 1)}
    rows = {s: json.loads((out / f"b3/alap/seed{s}/row.json").read_text()) for s in (0, 1)}
    assert rows[0]["student"]["arch"] == rows[1]["student"]["arch"]  # one landed student for every seed
    # the teacher's metrics were measured on the benchmark's own test split
    assert json.loads((out / "teacher/metrics.json").read_text())["measured_on"]["samples"] == 5

    # Recompute one unit from scratch (no row, no ledger, no resume state): the same bytes; the other units are
    # reused from their row.json.
    (out / "b3/alap/seed0/row.json").unlink()
    (tmp_path / "bench/ledger/seg2face.json").unlink()
    for state in (tmp_path / ".alap/state/bench/seg2face").glob("bench-alap-b3-seed0-*"):
        state.unlink()
    kept = (out / "b3/alap/seed1/row.json").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alap.bench.run"):
        again = run_task(params, settings, "seg2face", torch_home)
    assert (out / "b3/alap/seed0/student.pt").read_bytes() == first[0]
    assert (out / "b3/alap/seed1/row.json").stat().st_mtime_ns == kept
    assert sum("already done" in r.getMessage() for r in caplog.records) == 5  # 2 references, 3 units
    redone = next(r for r in again["rows"] if (r["method"], r["seed"]) == ("alap", 0))
    assert all(redone[k] == rows[0][k] for k in ("fid", "lpips", "psnr", "best_step", "val_psnr_best"))


def test_a_fresh_clone_continues_from_the_ledger_in_git(workspace, tmp_path: Path, torch_home: Path) -> None:
    """bench/out is DVC's, not git's: with it gone (a fresh clone), rows whose key the ledger holds are reused,
    and the teacher, retrained, gives the same key; rows that leave the plan leave the ledger."""
    params, settings = workspace
    one_seed = settings.model_copy(update={"seeds": [0], "methods": ["alap"]})
    first = run_task(params, one_seed, "seg2face", torch_home)
    ledger = json.loads((tmp_path / "bench/ledger/seg2face.json").read_text())
    assert {r["key"] for r in ledger["rows"]} == {r["key"] for r in [*first["references"], *first["rows"]]}

    shutil.rmtree(tmp_path / "bench/out")
    shutil.rmtree(tmp_path / ".alap/state")
    again = run_task(params, one_seed, "seg2face", torch_home)
    assert again["rows"] == first["rows"] and again["references"] == first["references"]
    assert not (tmp_path / "bench/out/seg2face/b3/alap/seed0/student.pt").exists()  # reused, not recomputed

    ledger = RowLedger(tmp_path / "bench/ledger/seg2face.json")
    ledger.keep({r["key"] for r in again["references"]})  # what run_task does when alap leaves the plan
    kept = json.loads((tmp_path / "bench/ledger/seg2face.json").read_text())["rows"]
    assert {r["method"] for r in kept} == {"teacher", "condensed"}


def test_a_unit_is_keyed_by_what_it_computes_not_by_its_name(workspace, tmp_path: Path, torch_home: Path) -> None:
    """A default that becomes an ablation keeps its rows: alap, run while the pipeline had no width floor, is
    alap_no_floor once the pipeline keeps 10% of every layer -- reused under its new name, not recomputed."""
    params, settings = workspace
    prune = params.prune
    no_floor = params.model_copy(update={"prune": prune.model_copy(update={"min_width_fraction": 0.0})})
    with_floor = params.model_copy(update={"prune": prune.model_copy(update={"min_width_fraction": 0.1})})
    alap = settings.model_copy(update={"seeds": [0], "methods": ["alap"]})
    (before,) = run_task(no_floor, alap, "seg2face", torch_home)["rows"]
    ablation = alap.model_copy(update={"methods": ["alap", "alap_no_floor"]})
    now, reused = run_task(with_floor, ablation, "seg2face", torch_home)["rows"]
    assert (reused["method"], reused["dir"]) == ("alap_no_floor", "b3/alap_no_floor/seed0")
    assert (reused["key"], reused["fid"]) == (before["key"], before["fid"])
    assert not (tmp_path / "bench/out/seg2face/b3/alap_no_floor/seed0/student.pt").exists()
    assert now["key"] != before["key"]  # alap itself now prunes with the floor: another unit


def test_a_damaged_ledger_is_named(workspace, tmp_path: Path) -> None:
    (tmp_path / "bench/ledger").mkdir(parents=True)
    (tmp_path / "bench/ledger/seg2face.json").write_text("{")
    with pytest.raises(UserError, match=r"bench/ledger/seg2face.json: the benchmark's row ledger is not valid JSON"):
        RowLedger(tmp_path / "bench/ledger/seg2face.json")


def test_bench_params_set_the_test_split_of_synthetic_tasks_only(workspace) -> None:
    params, settings = workspace
    assert bench_params(params, settings, "seg2face").data.n_test == 5
    assert bench_params(params, settings.model_copy(update={"test_images": None}), "seg2face").data.n_test == 8
    folder = params.tasks["seg2face"].model_copy(update={"source": "folder"})
    with_folder = params.model_copy(update={"tasks": {**params.tasks, "seg2face": folder}})
    assert bench_params(with_folder, settings, "seg2face") is with_folder


def test_a_changed_teacher_recipe_empties_the_task_folder(workspace, tmp_path: Path) -> None:
    params, _ = workspace
    out = tmp_path / "bench/out/seg2face"
    _refresh_upstream(params, out, "seg2face")
    (out / "b3").mkdir()
    _refresh_upstream(params, out, "seg2face")
    assert (out / "b3").is_dir()  # same recipe: everything stays
    model = params.model
    other_resnet = model.model_copy(update={"resnet": model.resnet.model_copy(update={"upsample": "transpose"})})
    _refresh_upstream(params.model_copy(update={"model": other_resnet}), out, "seg2face")
    assert (out / "b3").is_dir()  # a ResNet setting is no part of a U-Net task's recipe
    longer = params.model_copy(update={"train": params.train.model_copy(update={"steps": 7})})
    _refresh_upstream(longer, out, "seg2face")
    assert not (out / "b3").exists() and (out / UPSTREAM_FILE).is_file()
