"""Multi-process training (alap/dist.py, alap/launch.py): 2 CPU processes under torchrun compute the 1-process
run, and a DDP run killed with kill -9 resumes and completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from tiny import ROOT, tiny_params, write_params

from alap.config import Params
from alap.dist import World, replicated
from alap.launch import launch_command
from alap.paths import TaskPaths
from alap.steps.data import prepare_data
from alap.train import train_teacher

# 2 processes vs 1 on the same global batch, after the tiny teacher's 6 steps (measured: losses agree to 6
# digits, weights within 9e-4 of each tensor's largest value, where Adam's normalised steps magnify rounding
# in small gradients). Without BatchNorm synced over the processes the weights differ by 1.5: the bound tells the
# two apart.
LOSS_RTOL = 1e-4
WEIGHT_RTOL = 5e-3


def _project(tmp_path: Path, nproc: int, **train: int) -> tuple[Path, Params]:
    """A tiny seg2face project in ``tmp_path`` (data generated) whose params file asks for ``nproc`` processes."""
    raw = tiny_params(tmp_path, ["seg2face"])
    raw["tasks"]["seg2face"]["root"] = "data/seg2face"
    raw["train"].update(train)
    raw["dist"] = {"nproc": nproc, "backend": "auto"}
    tmp_path.mkdir(exist_ok=True)
    write_params(tmp_path / "params.yaml", raw)
    raw["tasks"]["seg2face"]["root"] = str(tmp_path / "data" / "seg2face")
    params = Params.model_validate(raw)
    prepare_data(params, "seg2face")
    return tmp_path / "params.yaml", params


def _alap(cwd: Path, *args: str) -> subprocess.Popen:
    """``alap <args>`` in ``cwd`` as its own process group (what a shell's job control gives a command)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "alap.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return out


def _fit_state(root: Path) -> dict:
    (path,) = (root / ".alap" / "state" / "seg2face").glob("train-*.pt")
    return torch.load(path, weights_only=True)


def _weights(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / "models" / "seg2face" / "teacher.pt", weights_only=True)["state_dict"]


def test_a_batch_splits_into_rank_shares_that_make_it_up():
    batch = {"A": torch.arange(8).view(8, 1), "path": [f"{i}.png" for i in range(8)]}
    shares = [World(rank, 2).shard(batch) for rank in range(2)]
    assert torch.equal(torch.cat([s["A"] for s in shares]), batch["A"])
    assert shares[0]["path"] + shares[1]["path"] == batch["path"]
    assert World().shard(batch) is batch


def test_a_batch_size_that_does_not_split_over_the_processes_is_refused(tmp_path):
    raw = tiny_params(tmp_path, ["seg2face"])
    raw["dist"] = {"nproc": 3}
    with pytest.raises(ValueError, match=r"train.batch_size \(4\) does not split over dist.nproc=3"):
        Params.model_validate(raw)


def test_one_process_trains_the_modules_themselves():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    with replicated({"G": net}) as replicas:
        assert replicas["G"] is net and type(net[1]) is torch.nn.BatchNorm2d


def test_the_launch_runs_the_same_command_under_torchrun():
    command = launch_command(["--params", "p.yaml", "train", "--task", "x"], 2)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in command and "--standalone" in command
    assert command[-7:] == ["-m", "alap.cli", "--params", "p.yaml", "train", "--task", "x"]


@pytest.mark.slow
def test_two_processes_train_the_teacher_of_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _, params = _project(one, nproc=1)
    paths = TaskPaths("seg2face", models=one / "models", reports=one / "reports", state=one / ".alap" / "state")
    train_teacher(params, "seg2face", paths)
    params_file, _ = _project(two, nproc=2)
    out = _finish(_alap(two, "--params", str(params_file), "train", "--task", "seg2face"))
    assert "process group: 2 processes, backend gloo" in out

    history_one, history_two = _fit_state(one)["history"], _fit_state(two)["history"]
    assert len(history_one) == len(history_two) == params.train.steps
    for a, b in zip(history_one, history_two):
        assert b == pytest.approx(a, rel=LOSS_RTOL)
    reference, weights = _weights(one), _weights(two)
    assert weights.keys() == reference.keys()
    for key, value in reference.items():
        if value.is_floating_point():
            scale = value.abs().max().clamp(min=1e-12)
            assert ((weights[key] - value).abs().max() / scale).item() < WEIGHT_RTOL, key
        else:  # BatchNorm's batch counter
            assert torch.equal(weights[key], value), key
    assert (two / "models" / "seg2face" / "train_metrics.json").is_file()


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    steps = {"steps": 30, "checkpoint_every": 2}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    params_file, _ = _project(whole, nproc=2, **steps)
    _finish(_alap(whole, "--params", str(params_file), "train", "--task", "seg2face"))

    params_file, _ = _project(killed, nproc=2, **steps)
    args = ("--params", str(params_file), "train", "--task", "seg2face")
    proc = _alap(killed, *args)
    state_dir = killed / ".alap" / "state" / "seg2face"
    while not any(state_dir.glob("train-*.pt")) or _fit_state(killed)["step"] < 6:
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and torchrun; the workers live in sessions of their own
    proc.communicate()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, "workers outlived their killed launcher"
    saved = _fit_state(killed)["step"]
    assert 6 <= saved < steps["steps"] and not (killed / "models" / "seg2face" / "teacher.pt").exists()

    out = _finish(_alap(killed, *args))
    assert f"resuming from step {saved} of {steps['steps']}" in out
    reference, resumed = _weights(whole), _weights(killed)
    for key, value in reference.items():  # same batches, state and rank order: the same weights
        assert torch.equal(resumed[key], value), key
    assert _fit_state(killed)["history"] == _fit_state(whole)["history"]


@pytest.mark.slow
def test_alap_compress_with_two_processes_makes_the_student_of_one(tmp_path, torch_home):
    from test_own import paired_folder, reference_file

    data = paired_folder(tmp_path / "pairs")
    teacher_file = reference_file(tmp_path / "latest_net_G.pth", "unet", "batch", num_downs=5)
    args = ["compress", str(teacher_file), "--data", str(data), "--macs-x", "2", "--load-size", "32"]
    args += ["--condense-steps", "4", "--distill-steps", "4", "--batch-size", "4", "--no-dropout"]
    args += ["--torch-home", str(torch_home)]
    for nproc in (1, 2):
        out = _finish(_alap(tmp_path, *args, "--out", str(tmp_path / f"n{nproc}"), "--processes", str(nproc)))
        assert "| s0.5 |" in out
    for model in ("condensed.pt", "s0.5/student.pt"):
        one, two = (torch.load(tmp_path / f"n{n}/models/own/{model}", weights_only=True) for n in (1, 2))
        for key, value in one["state_dict"].items():
            if value.is_floating_point():
                scale = value.abs().max().clamp(min=1e-12)
                assert ((two["state_dict"][key] - value).abs().max() / scale).item() < WEIGHT_RTOL, (model, key)
