"""The one training loop: teacher training, condense, distill and the benchmark's baselines all run :func:`fit`.

Why one loop: the guarantees users rely on must hold identically for every stage that trains, so they live in
exactly one place:
- a killed run resumes from its last checkpoint and ends with the weights, loss history, validations and wall time
  of an uninterrupted run (models, optimisers, schedulers, the batch stream's position, the best weights so far
  and torch's random state are all saved together, atomically);
- a NaN/Inf loss stops with a clear error and keeps the last good checkpoint;
- progress is visible (a tqdm bar on stderr);
- in a multi-process run (alap/dist.py) every rank reports the ranks' mean losses, so all see the same history and
  a NaN stops all of them; rank 0 alone saves, and every rank resumes from that one state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from alap import io
from alap.data.batches import BatchStream
from alap.dist import current_world
from alap.errors import UserError
from alap.fingerprint import weights_digest

log = logging.getLogger(__name__)

STATE_FORMAT = "alap-fit/1"


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class NonFiniteLossError(UserError):
    """A loss became NaN or Inf; the last good resume checkpoint was left untouched. A user error: the fix is in
    params.yaml (learning rate, loss weights), so the CLI says so in one line instead of a traceback."""


class KeepBest:
    """The weights of ``model`` with the highest ``validate()`` so far, and every validation as ``[step, value]``.

    Saved with the resume state, so the best weights survive a kill after the model has moved on from them.
    Steps before ``from_step`` are validated (in the history) but never kept: condensing must not keep the
    teacher it starts from, whose penalty has not yet acted (alap/compress/condense.py).
    """

    def __init__(self, model: nn.Module, validate: Callable[[], float], from_step: int = 0) -> None:
        self.model, self.validate, self.from_step = model, validate, from_step
        self.value, self.step = -math.inf, -1
        self.weights: dict[str, torch.Tensor] = {}
        self.history: list[list[float]] = []

    def offer(self, step: int) -> None:
        value = self.validate()
        self.history.append([step, value])
        if step >= self.from_step and value > self.value:
            self.value, self.step = value, step
            self.weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "step": self.step, "weights": self.weights, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.step = float(state["value"]), int(state["step"])
        self.weights, self.history = dict(state["weights"]), [list(h) for h in state["history"]]


@dataclass
class FitResult:
    """``wall_s`` counts every run that led here: the seconds spent before a resume are saved with the state."""

    history: list[dict[str, float]]
    wall_s: float


def fit(
    step: Callable[[dict[str, Any], int], dict[str, float]],
    batches: BatchStream,
    state: dict[str, Stateful],
    *,
    steps: int,
    checkpoint_every: int,
    state_path: Path,
    desc: str,
    schedulers: dict[str, LRScheduler] | None = None,
    keep_best: KeepBest | None = None,
    validate_every: int | None = None,
) -> FitResult:
    """Call ``step(next(batches), i)`` for ``i`` in ``[start, steps)``, stepping ``schedulers`` after each step.

    ``state`` names every other object whose ``state_dict`` is needed to continue exactly (models, optimisers);
    the batch stream, the schedulers, ``keep_best`` and torch's random state are saved with them. If
    ``state_path`` exists, the loop resumes from it. ``keep_best`` validates before the first step of a fresh run,
    every ``validate_every`` steps (default: ``checkpoint_every``) and after the last, before any save of that
    step; the loop ends with its best weights loaded into its model. A kill between a validation and the next save
    loses nothing: the resumed run replays those steps exactly and validates again. A non-finite loss raises
    :class:`NonFiniteLossError` before anything is saved.
    """
    validate_every = validate_every or checkpoint_every
    if steps < 0 or checkpoint_every < 1 or validate_every < 1:
        raise ValueError(
            f"steps must be >= 0, checkpoint_every and validate_every >= 1, got {steps}, "
            f"{checkpoint_every}, {validate_every}"
        )
    if not hasattr(batches, "load_state_dict"):
        raise TypeError(f"{desc}: the batch stream must be resumable (alap.data.batches.BatchStream)")
    schedulers = schedulers or {}
    state = {**state, **schedulers, "batches": batches}
    if keep_best is not None:
        state["keep_best"] = keep_best
    world = current_world()
    started = time.perf_counter()
    start, history, spent = _resume(state_path, state)
    if start:
        log.info("%s: resuming from step %d of %d (%s)", desc, start, steps, state_path)
    elif keep_best is not None:
        keep_best.offer(0)
    last_saved = start
    bar = tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        desc=desc,
        dynamic_ncols=True,
        mininterval=2.0,
        disable=None if world.is_main else True,
    )  # None: no bar when stderr is not a terminal (logs, CI)
    for i in bar:
        losses = world.mean(step(next(batches), i))
        for scheduler in schedulers.values():
            scheduler.step()
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            raise NonFiniteLossError(
                f"{desc}: non-finite loss at step {i}: {bad}; the last good checkpoint "
                f"({state_path}, step {last_saved}) is kept. "
                "Lower the learning rate or the loss weights in params.yaml."
            )
        history.append({"step": i, **losses})
        bar.set_postfix({k: f"{v:.3g}" for k, v in list(losses.items())[:4]}, refresh=False)
        done = i + 1
        if keep_best is not None and (done % validate_every == 0 or done == steps):
            keep_best.offer(done)
        if done % checkpoint_every == 0 or done == steps:
            if world.is_main:
                _save(state_path, state, done, history, spent + time.perf_counter() - started)
            last_saved = done
    bar.close()
    if keep_best is not None:
        keep_best.model.load_state_dict(keep_best.weights)
    return FitResult(history, spent + time.perf_counter() - started)


def _resume(state_path: Path, state: dict[str, Stateful]) -> tuple[int, list[dict[str, float]], float]:
    if not state_path.exists():
        return 0, [], 0.0
    saved = io.load_weights(state_path, "a resume state (delete it to start over)")
    if saved.get("format") != STATE_FORMAT:  # an older alap's loop saved less: resuming would not be exact
        log.warning(
            "%s: resume state of an older alap (format %r, expected %r); starting over",
            state_path,
            saved.get("format"),
            STATE_FORMAT,
        )
        return 0, [], 0.0
    missing = set(state) - set(saved["states"])
    if missing:
        raise ValueError(f"resume checkpoint {state_path} lacks state for {sorted(missing)}; delete it to start over")
    for name, obj in state.items():
        obj.load_state_dict(saved["states"][name])
    _set_rng_state(saved["rng"])
    return int(saved["step"]), list(saved["history"]), float(saved["wall_s"])


def _save(
    state_path: Path, state: dict[str, Stateful], step: int, history: list[dict[str, float]], wall_s: float
) -> None:
    payload = {
        "format": STATE_FORMAT,
        "step": step,
        "states": {k: v.state_dict() for k, v in state.items()},
        "history": history,
        "rng": _rng_state(),
        "wall_s": wall_s,
    }
    io.torch_save(payload, state_path)


def _rng_state() -> dict[str, Any]:
    """Torch's random state (dropout, random crops), so a resumed run continues the same random sequence."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


def params_key(*parts: object) -> str:
    """Short stable hash of the inputs that define a run, to key its resume checkpoint. A ``Path`` part stands
    for its file's bytes and an ``nn.Module`` for its weights, so a retrained or re-pruned input model never
    resumes a run that started from the old one."""

    def canonical(part: object) -> object:
        if isinstance(part, Path):
            return hashlib.sha256(part.read_bytes()).hexdigest()
        if isinstance(part, nn.Module):
            return weights_digest(part)
        return part.model_dump(mode="json") if hasattr(part, "model_dump") else part

    blob = json.dumps([canonical(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
