"""The one training loop's guarantees, tested once: a killed run resumes to exactly the uninterrupted result
(weights, history, batches, schedules, best weights, wall time); a NaN stops it and keeps the last good checkpoint."""

import math
import time

import pytest
import torch

from alap.data.batches import BatchStream
from alap.loop import FitResult, KeepBest, NonFiniteLossError, fit, params_key


class Run:
    """A tiny model with dropout (random state), SGD with a decaying schedule and a shuffled batch stream; every
    instance starts from the same state, as a fresh process would."""

    def __init__(self, path, fail_at: int | None = None, nan_at: int | None = None, sleep_s: float = 0.0) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: 1 / (1 + step))
        data = [{"x": torch.linspace(-1, 1, 3) * i / 8, "i": i} for i in range(8)]
        self.batches = BatchStream(data, batch_size=2, seed=0, device=torch.device("cpu"))
        self.path, self.fail_at, self.nan_at, self.sleep_s = path, fail_at, nan_at, sleep_s
        self.seen: dict[int, list[int]] = {}  # step -> indices of the batch it trained on
        self.weights_before: dict[int, dict[str, torch.Tensor]] = {}  # step -> the weights it started from

    def step(self, batch: dict, i: int) -> dict[str, float]:
        if i == self.fail_at:
            raise KeyboardInterrupt  # a kill
        time.sleep(self.sleep_s)
        self.seen[i] = batch["i"].tolist()
        self.weights_before[i] = {k: v.clone() for k, v in self.model.state_dict().items()}
        loss = (self.model(batch["x"]) - 1).pow(2).mean() * (math.nan if i == self.nan_at else 1.0)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "lr": self.opt.param_groups[0]["lr"]}

    def fit(self, keep_best: KeepBest | None = None) -> FitResult:
        return fit(
            self.step,
            self.batches,
            {"model": self.model, "opt": self.opt},
            steps=10,
            checkpoint_every=2,
            state_path=self.path,
            desc="test",
            schedulers={"sched": self.sched},
            keep_best=keep_best,
        )


def killed_then_resumed(path, **kwargs) -> tuple[Run, FitResult]:
    with pytest.raises(KeyboardInterrupt):
        Run(path, fail_at=7, **kwargs).fit()
    assert torch.load(path, weights_only=True)["step"] == 6
    run = Run(path, **kwargs)
    return run, run.fit()


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path) -> None:
    reference = Run(tmp_path / "a.pt")
    expected = reference.fit()
    resumed, result = killed_then_resumed(tmp_path / "b.pt")
    assert result.history == expected.history  # same losses (same dropout masks) and same learning rates
    assert [h["step"] for h in result.history] == list(range(10))
    assert [h["lr"] for h in result.history] == pytest.approx([0.1 / (1 + i) for i in range(10)])  # schedule resumed
    assert resumed.seen == {i: reference.seen[i] for i in range(6, 10)}  # the stream resumed at batch 6
    assert resumed.batches.consumed == 10
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_best_weights_survive_a_kill(tmp_path) -> None:
    def best_of(run: Run) -> KeepBest:  # peaks at step 4, before the kill at 7 and its last checkpoint at 6
        return KeepBest(run.model, lambda: -abs(run.batches.consumed - 4.0))

    reference = Run(tmp_path / "a.pt")
    best = best_of(reference)
    reference.fit(best)
    assert best.step == 4 and best.history == [[s, -abs(s - 4.0)] for s in range(0, 11, 2)]

    killed = Run(tmp_path / "b.pt", fail_at=7)
    with pytest.raises(KeyboardInterrupt):
        killed.fit(best_of(killed))
    resumed = Run(tmp_path / "b.pt")
    resumed_best = best_of(resumed)
    resumed.fit(resumed_best)
    assert resumed_best.step == 4 and resumed_best.history == best.history
    for key, value in reference.weights_before[4].items():  # the loop ends with the best weights loaded
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_best_weights_come_from_from_step_on(tmp_path) -> None:
    run = Run(tmp_path / "a.pt")
    best = KeepBest(run.model, lambda: -abs(run.batches.consumed - 4.0), from_step=6)  # peaks at 4, before 6
    run.fit(best)
    assert best.step == 6 and [s for s, _ in best.history] == list(range(0, 11, 2))  # all validated, 6 kept
    for key, value in run.weights_before[6].items():
        assert torch.equal(run.model.state_dict()[key], value), key


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path) -> None:
    path = tmp_path / "s.pt"
    with pytest.raises(NonFiniteLossError, match=r"step 5.*step 4"):
        Run(path, nan_at=5).fit()
    saved = torch.load(path, weights_only=True)
    assert saved["step"] == 4
    assert all(math.isfinite(h["loss"]) for h in saved["history"])
    assert not list(tmp_path.glob("*.tmp"))


def test_wall_time_counts_the_runs_before_a_resume(tmp_path) -> None:
    _, result = killed_then_resumed(tmp_path / "s.pt", sleep_s=0.03)
    assert result.wall_s >= 10 * 0.03  # 6 steps before the kill, 4 after
    rerun = Run(tmp_path / "s.pt").fit()  # over the finished state: no step runs, the total stays
    assert rerun.wall_s >= 10 * 0.03 and rerun.history == result.history


def test_a_plain_iterator_is_refused(tmp_path) -> None:
    run = Run(tmp_path / "s.pt")
    with pytest.raises(TypeError, match="resumable"):
        fit(run.step, (b for b in run.batches), {}, steps=2, checkpoint_every=1, state_path=tmp_path / "s.pt", desc="t")


def test_a_non_finite_loss_is_a_user_error() -> None:
    """The fix is in params.yaml (learning rate, loss weights): the CLI prints one line and exits 2."""
    from alap.errors import is_user_error

    assert is_user_error(NonFiniteLossError("train: non-finite loss at step 3"))


def test_a_module_keys_a_run_by_its_weights() -> None:
    """A bench unit's resume state is keyed on its landed student: another student (a change of code, same params)
    must never resume the old one's training, while the same weights rebuilt elsewhere must."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    twin.load_state_dict(model.state_dict())
    assert params_key("unit", model) == params_key("unit", twin)
    with torch.no_grad():
        twin[0].weight[0, 0, 0, 0] += 1e-6
    assert params_key("unit", model) != params_key("unit", twin)
    narrower = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.BatchNorm2d(2))
    assert params_key("unit", model) != params_key("unit", narrower)
