"""A resumable, NaN-guarded optimisation loop shared by train, condense and distill.

Why one loop: the guarantees users rely on (a killed run resumes from its last checkpoint; a NaN/Inf loss
stops with a clear error and keeps the last good checkpoint; progress is visible) must hold identically for
every stage that trains, so they live in exactly one place.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from tqdm import tqdm

from alap import io

log = logging.getLogger(__name__)


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the last good resume checkpoint was left untouched."""


StepFn = Callable[[int], dict[str, float]]


def run_steps(
    step_fn: StepFn,
    state: dict[str, Stateful],
    total_steps: int,
    state_path: Path,
    checkpoint_every: int,
    desc: str,
    on_checkpoint: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Call ``step_fn(step)`` for ``step`` in ``[start, total_steps)`` and return the loss history.

    ``state`` names every object whose ``state_dict`` is needed to continue exactly (models, optimisers,
    schedulers, the batch stream); torch's random state is saved with them. If ``state_path`` exists, the loop resumes from it. Every ``checkpoint_every`` steps and at the
    end, the state is saved atomically; ``on_checkpoint(step)`` runs right after each save (e.g. to validate and
    keep the best model). A non-finite loss raises :class:`NonFiniteLossError` before anything is saved.
    """
    if total_steps < 0 or checkpoint_every < 1:
        raise ValueError(f"total_steps must be >= 0 and checkpoint_every >= 1, got {total_steps}, {checkpoint_every}")
    state_path = Path(state_path)
    start, history = _resume(state_path, state)
    if start:
        log.info("%s: resuming from step %d of %d (%s)", desc, start, total_steps, state_path)
    last_saved = start
    bar = tqdm(range(start, total_steps), initial=start, total=total_steps, desc=desc, dynamic_ncols=True, mininterval=2.0)
    for step in bar:
        losses = step_fn(step)
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            raise NonFiniteLossError(
                f"{desc}: non-finite loss at step {step}: {bad}; the last good checkpoint "
                f"({state_path}, step {last_saved}) is kept. "
                "Lower the learning rate or the loss weights in params.yaml."
            )
        history.append({"step": step, **losses})
        bar.set_postfix({k: f"{v:.3g}" for k, v in list(losses.items())[:4]}, refresh=False)
        done = step + 1
        if done % checkpoint_every == 0 or done == total_steps:
            _save(state_path, state, done, history)
            last_saved = done
            if on_checkpoint is not None:
                on_checkpoint(done)
    bar.close()
    return history


def _resume(state_path: Path, state: dict[str, Stateful]) -> tuple[int, list[dict[str, float]]]:
    if not state_path.exists():
        return 0, []
    saved = torch.load(state_path, map_location="cpu", weights_only=True)
    missing = set(state) - set(saved["states"])
    if missing:
        raise ValueError(f"resume checkpoint {state_path} lacks state for {sorted(missing)}; delete it to start over")
    for name, obj in state.items():
        obj.load_state_dict(saved["states"][name])
    _set_rng_state(saved["rng"])
    return int(saved["step"]), list(saved["history"])


def _save(state_path: Path, state: dict[str, Stateful], step: int, history: list[dict[str, float]]) -> None:
    payload = {"step": step, "states": {k: v.state_dict() for k, v in state.items()}, "history": history,
               "rng": _rng_state()}
    io.torch_save(payload, state_path)


def _rng_state() -> dict[str, Any]:
    """Torch's random state (dropout, random crops), so a resumed run continues the same random sequence."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
