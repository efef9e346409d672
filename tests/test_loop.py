"""The shared training loop: resume after an interruption, NaN guard keeping the last good checkpoint."""

import math

import pytest
import torch

from alap.loop import NonFiniteLossError, run_steps


def make_state():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt


def step_fn(model, opt, fail_at=None, nan_at=None):
    x = torch.linspace(-1, 1, 12).reshape(4, 3)

    def step(i: int) -> dict[str, float]:
        if i == fail_at:
            raise KeyboardInterrupt  # a kill
        loss = (model(x) - 1).pow(2).mean()
        if i == nan_at:
            loss = loss * float("nan")
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return step


def test_resume_equals_uninterrupted(tmp_path):
    model, opt = make_state()
    run_steps(step_fn(model, opt), {"m": model, "o": opt}, 10, tmp_path / "a.pt", 2, "a")

    model2, opt2 = make_state()
    with pytest.raises(KeyboardInterrupt):
        run_steps(step_fn(model2, opt2, fail_at=7), {"m": model2, "o": opt2}, 10, tmp_path / "b.pt", 2, "b")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 6
    model3, opt3 = make_state()  # a fresh process: state comes only from the checkpoint
    history = run_steps(step_fn(model3, opt3), {"m": model3, "o": opt3}, 10, tmp_path / "b.pt", 2, "b")
    assert [h["step"] for h in history] == list(range(10))
    assert torch.allclose(model.weight, model3.weight) and torch.allclose(model.bias, model3.bias)


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, opt = make_state()
    path = tmp_path / "s.pt"
    with pytest.raises(NonFiniteLossError, match=r"step 5.*step 4"):
        run_steps(step_fn(model, opt, nan_at=5), {"m": model, "o": opt}, 10, path, 2, "nan")
    saved = torch.load(path, weights_only=True)
    assert saved["step"] == 4
    assert all(math.isfinite(h["loss"]) for h in saved["history"])
    assert not list(tmp_path.glob("*.tmp"))
