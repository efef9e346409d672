"""The four ways the benchmark gets a student of the right size, each landed on a MACs budget.

- ``uniform``: the teacher's architecture with every width scaled by one multiplier, freshly initialised;
- ``l1``: Li et al.'s L1-norm filter pruning of the original teacher (ratio searched);
- ``tp``: Torch-Pruning's magnitude pruner on the original teacher (ratio searched);
- ``slim``: alap's own prune of the condensed teacher with ``target="macs"`` (Network Slimming's and ALAP's
  student). ``sparsity = 1 - 1/budget`` is tried first; prune counts a transposed conv's MACs per input pixel,
  the cost model per output pixel (alap.metrics.cost), so the sparsity is then refined to the cost model's count.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alap.bench.budget import Build, Infeasible, Landing, land_on_budget, scale_arch
from alap.bench.magnitude import l1_importance, magnitude_importance, magnitude_prune, max_ratio
from alap.bench.params import BenchParams
from alap.compress.params import PruneParams
from alap.compress.prune import prune
from alap.metrics.cost import count_gmacs
from alap.models.arch import build_generator

SOURCES = ("uniform", "l1", "tp", "slim")


@dataclass
class Student:
    """A landed student: the untrained (uniform) or not yet fine-tuned (pruned) network, and what it cost."""

    source: str
    landing: Landing
    wall_s: float

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for the results file."""
        return {
            "source": self.source,
            "knob": self.landing.knob,
            "gmacs": self.landing.gmacs,
            "target_gmacs": self.landing.target_gmacs,
            "deviation": self.landing.deviation,
            "tries": self.landing.tries,
            "search_wall_s": round(self.wall_s, 2),
            "arch": self.landing.arch,
            **self.landing.extra,
        }


@dataclass(frozen=True)
class Originals:
    """What students are made from: the original teacher, the condensed teacher, and real example inputs."""

    teacher: nn.Module
    teacher_arch: dict[str, Any]
    condensed: nn.Module
    condensed_arch: dict[str, Any]
    example_input: torch.Tensor
    prune: PruneParams

    def count(self, model: nn.Module) -> float:
        return count_gmacs(model, (1, *self.example_input.shape[1:]))


def land_student(source: str, budget: float, originals: Originals, bench: BenchParams) -> Student:
    """The ``source`` student at ``teacher GMACs / budget`` (within ``bench.tolerance``)."""
    if source not in SOURCES:
        raise ValueError(f"unknown student source {source!r}, expected one of {SOURCES}")
    target = originals.count(originals.teacher) / budget
    started = time.perf_counter()
    what = f"{source} student at {budget:g}x fewer MACs"
    search = dict(tolerance=bench.tolerance, max_tries=bench.search_steps, what=what)
    if source == "uniform":
        landing = land_on_budget(
            _uniform_builder(originals), target, 1e-3, 1.0, increasing=True, first=1.0 / math.sqrt(budget), **search
        )
    elif source == "slim":
        landing = land_on_budget(
            _slim_builder(originals), target, 0.0, 0.999, increasing=False, first=1.0 - 1.0 / budget, **search
        )
    else:
        importance, scope = (
            (l1_importance(), bench.l1_norm) if source == "l1" else (magnitude_importance(), bench.tp_magnitude)
        )
        build = _magnitude_builder(originals, importance, scope.global_pruning)
        landing = land_on_budget(
            build, target, 0.0, max_ratio(originals.teacher, originals.example_input), increasing=False, **search
        )
    return Student(source, landing, time.perf_counter() - started)


def _uniform_builder(o: Originals) -> Build:
    def build(multiplier: float) -> tuple[nn.Module, dict[str, Any], float, dict[str, Any]]:
        arch = scale_arch(o.teacher_arch, multiplier)
        model = build_generator(arch).to(o.example_input.device)
        return model, arch, o.count(model), {"width_multiplier": multiplier}

    return build


def _magnitude_builder(o: Originals, importance: Any, global_pruning: bool) -> Build:
    def build(ratio: float) -> tuple[nn.Module, dict[str, Any], float, dict[str, Any]]:
        student, arch = magnitude_prune(o.teacher, importance, ratio, global_pruning, o.example_input)
        return student, arch, o.count(student), {"pruning_ratio": ratio, "global_pruning": global_pruning}

    return build


def _slim_builder(o: Originals) -> Build:
    def build(sparsity: float) -> tuple[nn.Module, dict[str, Any], float, dict[str, Any]]:
        settings = o.prune.model_copy(update={"target": "macs", "sparsity": sparsity})
        try:
            result = prune(o.condensed, o.condensed_arch, settings, o.example_input)
        except ValueError as exc:
            if "unreachable" in str(exc):  # more MACs than min_width allows; anything else is a real error
                raise Infeasible(str(exc)) from exc
            raise
        report = result.report
        extra = {
            "macs_sparsity": sparsity,
            "channels_removed_fraction": report["channels_removed_fraction"],
            "prune_output_psnr": report["output_diff"]["psnr"],
        }
        return result.student, result.arch, o.count(result.student), extra

    return build
