"""Teacher training: outputs, resume after a kill, NaN guard (fault injection), both objectives."""

import json
import math
from pathlib import Path

import pytest
import torch
from tiny import tiny_params

from alap.config import Params
from alap.gan_aux import load_aux
from alap.loop import NonFiniteLossError
from alap.metrics.fid import InceptionFeatures
from alap.models import load_checkpoint
from alap.objectives import CycleObjective, ImagePool, Pix2PixObjective
from alap.paths import TaskPaths
from alap.selection import val_fid_validator
from alap.steps.data import prepare_data
from alap.task import Task
from alap.train import linear_decay, train_teacher


def setup(tmp_path: Path, task: str) -> tuple[Params, TaskPaths]:
    params = Params.model_validate(tiny_params(tmp_path, [task]))
    prepare_data(params, task)
    return params, TaskPaths(task, models=tmp_path / "models", reports=tmp_path / "reports", state=tmp_path / "state")


@pytest.mark.parametrize("task", ["seg2face", "horse2zebra"])
def test_train_writes_teacher_aux_and_metrics(tmp_path, torch_home, task):
    params, paths = setup(tmp_path, task)
    result = train_teacher(params, task, paths, torch_home)
    model, meta = load_checkpoint(paths.teacher, expect_task=task)
    assert meta["role"] == "teacher" and meta["steps"] == result.steps
    out = model(torch.zeros(1, 8 if task == "seg2face" else 3, 32, 32))
    assert out.shape == (1, 3, 32, 32)
    aux = load_aux(paths.teacher_aux, task, torch.device("cpu"))
    assert set(aux) == ({"D"} if task == "seg2face" else {"G_B", "D_A", "D_B"})
    assert result.psnr_test is not None and result.psnr_mean_image is not None
    record = json.loads(paths.train_metrics.read_text())
    if task == "horse2zebra":  # unpaired: the identity's FID against real B, the floor a CycleGAN must beat
        assert record["fid_identity"] > 0 and math.isfinite(record["kid_identity"])
        assert record["fid_identity_measured_on"]["samples"] == params.data.n_test
        assert record["fid_identity_measured_on"]["weights"]
        # the saved teacher is the checkpoint with the best validation FID, and scores it again
        selected = record["selected"]
        assert selected["val_fid"] == min(fid for _, fid in selected["val_fids"]) > 0
        assert selected["step"] in [s for s, _ in selected["val_fids"]] and len(selected["val_fids"]) >= 2
        inception = InceptionFeatures(torch_home, torch.device("cpu"))
        again = -val_fid_validator(Task.from_params(params, task), model.eval(), inception, torch.device("cpu"))()
        assert again == pytest.approx(selected["val_fid"], rel=1e-4)
    else:
        assert "fid_identity" not in record


@pytest.mark.parametrize("task", ["seg2face", "horse2zebra"])
def test_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch, torch_home, task):
    params, paths = setup(tmp_path, task)
    if task == "horse2zebra":  # a pool smaller than the run's fakes, so that the kill hits a pool that swaps
        params = params.model_copy(update={"train": params.train.model_copy(update={"pool_size": 3})})
    train_teacher(params, task, paths, torch_home)
    reference = torch.load(paths.teacher, weights_only=True)["state_dict"]

    killed = TaskPaths(task, models=tmp_path / "m2", reports=tmp_path / "r2", state=tmp_path / "s2")
    objective = Pix2PixObjective if task == "seg2face" else CycleObjective
    original = objective.step
    calls = {"n": 0}

    def dying_step(self, batch, extra_generator_loss=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, batch, extra_generator_loss)

    monkeypatch.setattr(objective, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(params, task, killed, torch_home)
    assert not killed.teacher.exists()
    monkeypatch.setattr(objective, "step", original)
    result = train_teacher(params, task, killed, torch_home)
    assert result.steps == params.train_for(task).steps
    resumed = torch.load(killed.teacher, weights_only=True)["state_dict"]
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():  # same batches, random state, optimiser state and pool: same weights
        assert torch.equal(resumed[key], value), key
    # the saved teacher may be an early best checkpoint (CycleGAN keeps the best val FID): compare the last step too
    (last,), (last_resumed,) = (
        [torch.load(p, weights_only=True)["states"]["G"] for p in s.rglob("train-*.pt")]
        for s in (paths.state, killed.state)
    )
    for key, value in last.items():
        assert torch.equal(last_resumed[key], value), key


def test_image_pool_mixes_older_fakes_in_once_full():
    torch.manual_seed(0)
    assert ImagePool(0).query(torch.ones(2, 3, 4, 4, requires_grad=True)).requires_grad is False
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: the fakes pass through and are kept
    drawn = pool.query(10 + torch.arange(16.0).view(16, 1, 1, 1)).flatten().tolist()
    assert any(v < 10 for v in drawn) and any(v >= 10 for v in drawn)  # a mix of stored and new images
    assert len(pool.images) == 4
    again = ImagePool(4)
    again.load_state_dict(pool.state_dict())
    assert [float(t) for t in again.images] == [float(t) for t in pool.images]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    params, paths = setup(tmp_path, "seg2face")
    original = Pix2PixObjective.step

    def nan_at_step_five(self, batch, extra_generator_loss=None):
        losses = original(self, batch, extra_generator_loss)
        if len(nan_at_step_five.seen) == 4:
            losses["G_l1"] = float("nan")
        nan_at_step_five.seen.append(1)
        return losses

    nan_at_step_five.seen = []
    monkeypatch.setattr(Pix2PixObjective, "step", nan_at_step_five)
    with pytest.raises(NonFiniteLossError, match="step 4"):
        train_teacher(params, "seg2face", paths)
    assert not paths.teacher.exists()
    state = list(paths.state.glob("seg2face/train-*.pt"))
    assert len(state) == 1 and torch.load(state[0], weights_only=True)["step"] == 4


class _OneOptimizer:
    """Stands in for an objective: linear_decay only asks for its optimisers."""

    def __init__(self, lr: float) -> None:
        self.opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)

    def optimizers(self) -> dict:
        return {"opt_G": self.opt}


@pytest.mark.parametrize("decay_from, expected", [(0.5, [1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]), (1.0, [1.0] * 8)])
def test_learning_rate_is_constant_then_decays_linearly_to_zero(decay_from, expected):
    objective = _OneOptimizer(lr=0.1)
    sched = linear_decay(objective, total_steps=8, decay_from=decay_from)["sched_opt_G"]
    seen = []
    for _ in range(8):
        seen.append(objective.opt.param_groups[0]["lr"] / 0.1)
        objective.opt.step()
        sched.step()
    assert seen == pytest.approx(expected)
