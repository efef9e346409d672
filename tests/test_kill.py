"""Real processes killed with SIGKILL at seeded random points of each long stage, then rerun: the rerun completes,
its outputs equal an uninterrupted run's (timings: valid), and no half-written file is ever visible. Two processes
on the same outputs: the second refuses at once (alap.lock), and a killed holder leaves no stale lock.

The kill points are random, drawn from ALAP_KILL_SEED (a fresh seed when unset); every failure names the seed and
the kill time, so `ALAP_KILL_SEED=<seed> pytest tests/test_kill.py` replays the same points. The stage processes
run in their own process group and the whole group is killed, as a crash or a lost machine would. The default suite
kills train (the resumable loop condense and distill share) and runs the lock tests; the other stages, and
`dvc repro`, are slow.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pytest
from PIL import Image
from tiny import ROOT, tiny_params, write_params

from alap import io
from alap.lock import lock_file
from alap.timing import FINISHED_AT

SEED = int(os.environ.get("ALAP_KILL_SEED") or random.SystemRandom().randrange(1_000_000))
TASK = "seg2face"
MODEL_DIR = Path("models") / TASK
POINT = MODEL_DIR / "s0.5"
STATE = Path(".alap/state")
TIMED_KEYS = ("wall_s", FINISHED_AT, "latency.", "peak_gflops", "records")  # measured: valid, never equal

POINT_REPORT = Path("reports", TASK, "s0.5")


class Stage(NamedTuple):
    args: list[str]  # alap's
    outputs: list[Path]  # the files it writes
    state: str | None  # its resume state, a glob under .alap/state/<task>
    locks: Path  # the output folder it locks (alap.lock): its work starts once it holds that


STAGES = {
    "train": Stage(
        ["train", "--task", TASK],
        [MODEL_DIR / "teacher.pt", MODEL_DIR / "teacher_aux.pt", MODEL_DIR / "train_metrics.json"],
        "train-*.pt",
        MODEL_DIR,
    ),
    "condense": Stage(
        ["condense", "--task", TASK],
        [MODEL_DIR / "condensed.pt", Path("reports", TASK, "condense", "condense.json")],
        "condense-*.pt",
        MODEL_DIR,
    ),
    "prune": Stage(
        ["prune", "--task", TASK, "--sparsity", "0.5"], [POINT / "pruned.pt", POINT / "prune_report.json"], None, POINT
    ),
    "distill": Stage(
        ["distill", "--task", TASK, "--sparsity", "0.5"],
        [POINT / "student.pt", POINT / "distill_report.json"],
        "distill-*.pt",
        POINT,
    ),
    "profile": Stage(
        ["profile", "--task", TASK, "--sparsity", "0.5"],
        [POINT_REPORT / "latency.json", POINT_REPORT / "model.onnx"],
        None,
        POINT_REPORT,
    ),
    "evaluate": Stage(
        ["evaluate", "--task", TASK, "--sparsity", "0.5"],  # + --torch-home
        [POINT_REPORT / "metrics.json", POINT_REPORT / "grid.png"],
        None,
        POINT_REPORT,
    ),
    "report": Stage(
        ["report"], [Path("reports", f) for f in ("summary.csv", "summary.md", "index.html")], None, Path("reports")
    ),
}
BASE_STAGES = ("train", "condense", "prune", "distill")  # what the other stages' inputs need


def alap(cwd: Path, *args: str, **popen: object) -> subprocess.Popen:
    """``alap ARGS`` in ``cwd`` as its own process group, importing this checkout's alap."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALAP_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "alap.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    )


def finish(proc: subprocess.Popen, what: str) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{err[-3000:]}"
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """A tiny project run uninterrupted through distill: the reference outputs and, per stage, the seconds of its
    work (the range the kill points are drawn from); under "processes" the seconds of all its stage processes."""
    root = tmp_path_factory.mktemp("base")
    write_params(root / "params.yaml", tiny_params(root, [TASK]))
    finish(alap(root, "data", "--task", TASK), "data")
    seconds = {"processes": 0.0}
    for name in BASE_STAGES:
        started = time.perf_counter()
        seconds[name] = timed_run(root, STAGES[name])
        seconds["processes"] += time.perf_counter() - started
    return root, seconds


def timed_run(project: Path, stage: Stage, *extra: str) -> float:
    """Run the stage to its end; the seconds from when it holds its lock (its imports done) to its exit."""
    proc = alap(project, *stage.args, *extra)
    started = wait_for_lock(project, stage.locks, proc)
    finish(proc, " ".join(stage.args))
    return time.perf_counter() - started


def copy_without(base: Path, tmp_path: Path, stage: str) -> Path:
    """The base project without ``stage``'s outputs and resume state, as before the stage first ran."""
    project = tmp_path / "project"
    shutil.copytree(base, project)
    for path in STAGES[stage].outputs:
        (project / path).unlink()
    for path in (project / STATE / TASK).glob(STAGES[stage].state or "-"):
        path.unlink()
    return project


def assert_whole(project: Path, why: str) -> None:
    """Every output file under its final name is complete: torch files load, JSON and CSV parse, images decode,
    ONNX graphs check. Only atomic_path's hidden temporary files may be partial."""
    import onnx

    for path in (project / "models", project / "reports", project / STATE):
        for file in path.rglob("*") if path.exists() else []:
            if not file.is_file() or (file.name.startswith(".") and file.name.endswith(".tmp")):
                continue
            try:
                if file.suffix == ".pt":
                    io.load_weights(file, "a whole torch file")
                elif file.suffix == ".json":
                    json.loads(file.read_text())
                elif file.suffix == ".csv":
                    list(csv.reader(file.open()))
                elif file.suffix == ".png":
                    with Image.open(file) as image:
                        image.verify()
                elif file.suffix == ".onnx":
                    onnx.checker.check_model(str(file))
            except Exception as exc:
                raise AssertionError(f"{why}: half-written {file}: {exc}") from exc


def leftover_temps(project: Path) -> list[Path]:
    return [p for p in project.rglob(".*.tmp") if "data" not in p.relative_to(project).parts[:1]]


def assert_same_outputs(base: Path, project: Path, files: list[Path], why: str) -> None:
    """Torch files, images and tables byte for byte; JSON equal except measured seconds, which must be valid."""
    for rel in files:
        got, want = project / rel, base / rel
        assert got.is_file(), f"{why}: {rel} missing after the rerun"
        if rel.suffix != ".json":
            assert got.read_bytes() == want.read_bytes(), f"{why}: {rel} differs from the uninterrupted run's"
            continue
        got_json, want_json = json.loads(got.read_text()), json.loads(want.read_text())
        assert got_json.keys() == want_json.keys(), f"{why}: {rel}: other keys"
        timed = {k for k in got_json if k.startswith(TIMED_KEYS)}
        for key in timed:
            valid = all(v > 0 for v in got_json[key].values()) if key == "peak_gflops" else bool(got_json[key])
            if isinstance(got_json[key], float):
                valid = got_json[key] > 0
            if key == FINISHED_AT:  # after the uninterrupted run's
                valid = datetime.fromisoformat(got_json[key]) >= datetime.fromisoformat(want_json[key])
            assert valid, f"{why}: {rel}: {key} = {got_json[key]}"
        untimed = {k: v for k, v in got_json.items() if k not in timed}
        assert untimed == {k: v for k, v in want_json.items() if k not in timed}, f"{why}: {rel} differs"


def kill_at_random_points(project: Path, stage: Stage, seconds: float, name: str, *extra: str, kills: int = 2) -> str:
    """Run the stage ``kills`` times, each killed (SIGKILL to its group) at a random point of its ``seconds`` of
    work, checking after each kill that nothing half-written is visible; then once to completion."""
    rng = random.Random(f"{SEED}-{name}")
    why = f"ALAP_KILL_SEED={SEED}"
    for attempt in range(kills):
        delay = rng.uniform(0.0, 1.0) * seconds
        why += f", kill {attempt + 1} at {delay:.2f} s of its work"
        proc = alap(project, *stage.args, *extra)
        wait_for_lock(project, stage.locks, proc)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert_whole(project, why)
    finish(alap(project, *stage.args, *extra), f"rerun ({why})")
    assert_whole(project, why)
    assert not leftover_temps(project), f"{why}: temporary files left behind: {leftover_temps(project)}"
    return why


@pytest.mark.parametrize("stage", ["train", *(pytest.param(s, marks=pytest.mark.slow) for s in BASE_STAGES[1:])])
def test_killed_stage_reruns_to_the_uninterrupted_outputs(base, tmp_path, stage) -> None:
    """train in the default suite (the resumable loop is the same for condense and distill), the rest slow."""
    root, seconds = base
    project = copy_without(root, tmp_path, stage)
    why = kill_at_random_points(project, STAGES[stage], seconds[stage], stage)
    assert_same_outputs(root, project, STAGES[stage].outputs, why)


def wait_for_lock(project: Path, output: Path, proc: subprocess.Popen) -> float:
    """Until ``proc`` holds the lock of ``output`` (its pid in the lock file); returns that moment."""
    path = lock_file(project / STATE, project / output)
    deadline = time.monotonic() + 120
    while not (path.is_file() and path.read_text().startswith(f"pid {proc.pid}:")):
        assert proc.poll() is None, f"the process ended before holding the lock: {proc.communicate()}"
        assert time.monotonic() < deadline, "the process never took the lock"
        time.sleep(0.01)
    return time.perf_counter()


def wait_for_holder(project: Path, output: Path, proc: subprocess.Popen) -> None:
    """Until ``proc`` holds the lock of ``output``; then stop it there (SIGSTOP)."""
    wait_for_lock(project, output, proc)
    os.killpg(proc.pid, signal.SIGSTOP)


def assert_refused(project: Path, args: list[str], holder: subprocess.Popen, names: str) -> None:
    proc = alap(project, *args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert names in err and f"pid {holder.pid}" in err and "another alap process" in err, err


def test_a_second_process_on_the_same_task_refuses_and_a_killed_holder_leaves_no_lock(base, tmp_path) -> None:
    root, _ = base
    project = copy_without(root, tmp_path, "train")
    first = alap(project, "train", "--task", TASK)
    try:
        wait_for_holder(project, MODEL_DIR, first)
        assert_refused(project, ["train", "--task", TASK], first, f"task {TASK}")
        assert_refused(project, ["condense", "--task", TASK], first, f"task {TASK}")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    finish(alap(project, "train", "--task", TASK), "train after its lock holder was killed")
    assert_same_outputs(root, project, STAGES["train"].outputs, "train after a killed lock holder")


def test_point_stages_lock_their_own_point(base, tmp_path) -> None:
    """Points of one task may run side by side (their folders differ); the same point may not."""
    root, _ = base
    project = copy_without(root, tmp_path, "distill")
    first = alap(project, "distill", "--task", TASK, "--sparsity", "0.5")
    try:
        wait_for_holder(project, POINT, first)
        assert_refused(project, ["distill", "--task", TASK, "--sparsity", "0.5"], first, "sparsity 0.5")
        finish(alap(project, "prune", "--task", TASK, "--sparsity", "0.75"), "prune of another point")
        assert (project / MODEL_DIR / "s0.75" / "pruned.pt").is_file()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()


@pytest.fixture(scope="module")
def evaluated(base, torch_home, tmp_path_factory) -> tuple[Path, dict[str, float], Path]:
    """The base project with every model evaluated and profiled and the report built, uninterrupted."""
    root = tmp_path_factory.mktemp("evaluated") / "project"
    shutil.copytree(base[0], root)
    seconds = dict(base[1])
    for model in ("teacher", "condensed"):
        finish(alap(root, "evaluate", "--task", TASK, "--model", model, "--torch-home", str(torch_home)), model)
        finish(alap(root, "profile", "--task", TASK, "--model", model), f"profile {model}")
    seconds["profile"] = timed_run(root, STAGES["profile"])
    seconds["evaluate"] = timed_run(root, STAGES["evaluate"], "--torch-home", str(torch_home))
    seconds["report"] = timed_run(root, STAGES["report"])
    return root, seconds, torch_home


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["profile", "evaluate"])
def test_killed_measuring_stage_reruns_to_the_uninterrupted_outputs(evaluated, tmp_path, stage) -> None:
    root, seconds, torch_home = evaluated
    project = copy_without(root, tmp_path, stage)
    extra = ["--torch-home", str(torch_home)] if stage == "evaluate" else []
    why = kill_at_random_points(project, STAGES[stage], seconds[stage], stage, *extra)
    assert_same_outputs(root, project, STAGES[stage].outputs, why)


@pytest.mark.slow
def test_killed_report_reruns_to_the_uninterrupted_report(evaluated, tmp_path) -> None:
    root, seconds, _ = evaluated
    project = tmp_path / "project"
    shutil.copytree(root, project)
    plots = sorted(p.relative_to(root) for p in (root / "reports" / "plots").rglob("*") if p.is_file())
    assert plots, "the report drew no plots"
    outputs = [*STAGES["report"].outputs, *plots]
    for path in outputs:
        (project / path).unlink()
    why = kill_at_random_points(project, STAGES["report"], seconds["report"], "report")
    assert_same_outputs(root, project, outputs, why)


@pytest.mark.slow
@pytest.mark.integration
def test_killed_dvc_repro_reruns_to_the_uninterrupted_models(base, tmp_path) -> None:
    """`dvc repro` of a branch killed twice (DVC and its stage process together), then run to the end: the models
    equal the uninterrupted CLI run's, and a further repro finds nothing to do."""
    root, seconds = base
    repo = tmp_path / "repo"
    for name in ["alap", "stages", "configs"]:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    params = tiny_params(repo, [TASK])
    params["tasks"][TASK]["root"] = f"data/{TASK}"
    write_params(repo / "params.yaml", params)
    dvc = [str(Path(sys.executable).with_name("dvc"))]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*dvc, "init", "-q"], cwd=repo, check=True, env=env)
    branch = f"distill@{TASK}-0.5"
    rng = random.Random(f"{SEED}-dvc")
    why = f"ALAP_KILL_SEED={SEED}"
    for attempt in range(2):
        delay = rng.uniform(0.1, 0.9) * seconds["processes"]
        why += f", kill {attempt + 1} at {delay:.2f} s"
        proc = subprocess.Popen(
            [*dvc, "repro", branch],
            cwd=repo,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert_whole(repo, why)
    done = subprocess.run([*dvc, "repro", branch], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{why}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    models = [MODEL_DIR / "teacher.pt", MODEL_DIR / "condensed.pt", POINT / "pruned.pt", POINT / "student.pt"]
    assert_same_outputs(root, repo, models, why)
    again = subprocess.run([*dvc, "repro", branch], cwd=repo, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "Running stage" not in again.stdout, f"{why}: {again.stdout}"
    assert not leftover_temps(repo), f"{why}: temporary files left behind: {leftover_temps(repo)}"


def test_the_next_write_removes_the_temporary_files_of_killed_writers_only(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".model.pt.{dead.pid}.abc.tmp"  # what a writer killed mid-write leaves
    live = tmp_path / f".model.pt.{os.getpid()}.def.tmp"  # another thread of this process, still writing
    other = tmp_path / f".other.pt.{dead.pid}.ghi.tmp"  # another file's: its own next write removes it
    for path in (killed, live, other):
        path.write_bytes(b"half")
    io.write_text(tmp_path / "model.pt", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "model.pt"])
