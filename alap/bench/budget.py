"""Land a student on a MACs budget: search the one knob of a method (width multiplier, pruning ratio, MACs
sparsity) until the student's conventional GMACs (alap.metrics.cost) are as close to the budget as the knob allows.

Every method is compared at the *same* cost, so each search keeps going after the first candidate inside the
tolerance until it is within ``precision`` (or out of tries), and keeps the closest candidate seen: a method that
lands 4% under the budget while another lands 4% over would otherwise be compared at 8% different cost.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from alap.models.arch import validate_arch

log = logging.getLogger(__name__)


class BudgetMissed(ValueError):
    """No knob setting gave a student within the tolerance of its budget; the message says how close it got."""


class Infeasible(Exception):
    """Raised by a builder for a knob value the method cannot realise (e.g. more MACs removed than min widths
    allow); the search treats it as overshooting the budget."""


@dataclass
class Landing:
    """The chosen knob value, the student it gave, its GMACs and relative deviation from the target."""

    knob: float
    student: nn.Module
    arch: dict[str, Any]
    gmacs: float
    target_gmacs: float
    tries: int
    extra: dict[str, Any]

    @property
    def deviation(self) -> float:
        return self.gmacs / self.target_gmacs - 1.0


Build = Callable[[float], tuple[nn.Module, dict[str, Any], float, dict[str, Any]]]


def land_on_budget(
    build: Build,
    target_gmacs: float,
    lo: float,
    hi: float,
    increasing: bool,
    tolerance: float,
    max_tries: int,
    what: str,
    first: float | None = None,
    precision: float = 0.005,
    resolution: float = 1e-3,
) -> Landing:
    """Bisect the knob in ``[lo, hi]`` for the student whose GMACs are closest to ``target_gmacs``.

    ``build(knob)`` returns ``(student, arch, gmacs, extra)`` or raises :class:`Infeasible` for a knob beyond what
    the method can realise (past the ``hi`` end); GMACs must be monotone in the knob (``increasing`` says which
    way). ``first`` is tried before bisecting (a method's documented setting, e.g. MACs sparsity
    ``1 - 1/budget``). Stops once within ``precision`` of the target, once the knob interval is narrower than
    ``resolution`` of the initial one (widths are integers: a finer knob changes nothing), or after ``max_tries``
    students. Raises :class:`BudgetMissed` naming ``what`` when the closest student is further than ``tolerance``
    from the target.
    """
    if not lo < hi:
        raise ValueError(f"{what}: empty search interval [{lo}, {hi}]")
    best: Landing | None = None
    tries = 0
    seen: list[float] = []
    min_width = resolution * (hi - lo)

    def too_big(knob: float) -> bool:
        """Build at ``knob``; True when its GMACs are above the target."""
        nonlocal best, tries
        tries += 1
        try:
            student, arch, gmacs, extra = build(knob)
        except Infeasible as exc:  # past the hi end: further along than any feasible knob
            log.debug("%s: knob %.5f infeasible (%s)", what, knob, exc)
            return increasing
        seen.append(gmacs)
        candidate = Landing(knob, student, arch, gmacs, target_gmacs, tries, extra)
        if best is None or abs(candidate.deviation) < abs(best.deviation):
            best = candidate
        log.debug("%s: knob %.5f -> %.5f GMACs (target %.5f)", what, knob, gmacs, target_gmacs)
        return gmacs > target_gmacs

    knob = first if first is not None and lo < first < hi else 0.5 * (lo + hi)
    while True:
        if too_big(knob) == increasing:
            hi = knob
        else:
            lo = knob
        if (best is not None and abs(best.deviation) <= precision) or tries >= max_tries or hi - lo < min_width:
            break
        knob = 0.5 * (lo + hi)
    if best is None:
        raise BudgetMissed(f"{what}: every knob tried was infeasible (searched down to [{lo:.4g}, {hi:.4g}])")
    best.tries = tries
    if abs(best.deviation) > tolerance:
        raise BudgetMissed(
            f"{what}: the closest student has {best.gmacs:.4g} GMACs, {100 * best.deviation:+.1f}% from the budget's "
            f"{target_gmacs:.4g} GMACs (tolerance {100 * tolerance:.0f}%, {tries} tries; students tried span "
            f"{min(seen):.4g}..{max(seen):.4g} GMACs)"
        )
    return best


def scale_arch(arch: dict[str, Any], multiplier: float) -> dict[str, Any]:
    """The same architecture with every channel width multiplied by ``multiplier`` (rounded, at least 1)."""
    if not multiplier > 0:
        raise ValueError(f"width multiplier must be > 0, got {multiplier}")

    def scale(value: Any) -> Any:
        if isinstance(value, list):
            return [scale(v) for v in value]
        if isinstance(value, dict):
            return {k: scale(v) for k, v in value.items()}
        return max(1, round(value * multiplier))

    scaled = copy.deepcopy(arch)
    scaled["widths"] = scale(arch["widths"])
    validate_arch(scaled)
    return scaled
