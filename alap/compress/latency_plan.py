"""The latency planner: the fewest channels removed whose *measured* p50 meets a budget on a device.

Fewer MACs do not mean less time on a given device (layer shapes, memory traffic and kernel choice decide), so
``prune.target: latency`` times candidates instead of counting MACs. Candidates lie on the one ranking the MACs
planner uses (alap.compress.prune: the ``k`` lowest-scored channels go, each layer keeping ``min_width``), so the
student is the same kind of network at every budget and only ``k`` is searched. Latency depends on shapes, not
on weight values: a candidate is its architecture, built freshly initialised and timed (alap.profile.candidates,
which caches every timing on disk), never trained.

Search: bisection over ``k``. Latency falls as ``k`` grows up to measurement noise, so the search assumes it
is monotone and needs about ``log2(channels)`` timings: the full network (budget met without pruning: nothing
goes), the smallest reachable student (budget below it: a UserError naming its p50), then halving. The result is
the smallest timed ``k`` whose p50 meets the budget; one channel fewer measured above it, so the plan usually
lands just under the budget. When it lands further under than ``tolerance`` (one channel more or less moves the
latency by a step larger than the tolerance, as a layer crosses a kernel's tile width) the report says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alap.compress.params import LatencyTarget, PruneParams
from alap.errors import UserError
from alap.profile.candidates import CandidateCost

log = logging.getLogger(__name__)


# Kept-width multiples measured to pay, per generator kind and device kind (reports/latency.md, "Kept widths"): at
# 256 px and 8x fewer MACs, ONNX Runtime batch 1, 3 interleaved rounds on the 2-core EPYC under load 2-4.5, a U-Net
# with widths rounded up to multiples of 8 ran 13% (cpu-t1) and 16% (cpu-t2) faster than as planned at equal MACs
# (16: 19% and 15%; 4: 6%); a ResNet's multiples stayed within the rounds' 10% spread. Untimed pairs (CUDA) stay 1.
AUTO_ROUND_TO = {("unet", "cpu"): 8}


def auto_round_to(params: PruneParams, kind: str) -> int:
    """``params.round_to``, with ``auto`` resolved: the multiple measured to pay for generator ``kind`` on the
    latency target's device kind (AUTO_ROUND_TO), 1 for every other target (no device, so nothing measured). The
    planner times the rounded candidates, so a latency budget holds whatever the multiple."""
    if params.round_to != "auto":
        return params.round_to
    if params.target != "latency":
        return 1
    device_kind = "cpu" if params.latency.device.startswith("cpu") else "cuda"
    return AUTO_ROUND_TO.get((kind, device_kind), 1)


class BudgetUnreachable(UserError):
    """The budget is below the p50 of the smallest student the ranking and ``min_width`` allow."""


@dataclass(frozen=True)
class LatencyOf:
    """How the planner times a removal plan: ``arch_for(counts)`` is the candidate's architecture, ``timer`` gives
    its cached p50 (for the search) and a fresh one (to confirm the chosen plan)."""

    timer: CandidateCost
    arch_for: Callable[[list[int]], dict[str, Any]]

    def cached(self, counts: list[int]) -> float:
        return float(self.timer.p50_ms(self.arch_for(counts)))

    def fresh(self, counts: list[int]) -> float:
        return float(self.timer.fresh_p50_ms(self.arch_for(counts)))


# How often a chosen plan is re-timed afresh and, when that timing is over the budget, searched again aiming lower.
CONFIRM_ROUNDS = 3


def plan_for_latency(
    counts_for: Callable[[int], list[int]],
    max_k: int,
    timing: LatencyOf,
    target: LatencyTarget,
    min_width: int,
) -> tuple[list[int], dict[str, Any]]:
    """Per-group removal counts of the fewest channels ``k`` (``counts_for(k)``, ``0 <= k <= max_k``) whose p50
    meets ``target.p50_ms``, and the search's record for the prune report.

    A plan is accepted only when a fresh timing of it also meets the budget: a cached timing taken while the machine
    was quieter (or one lucky run) would otherwise decide, and the student would re-measure over the budget
    (reports/latency.md: the paper-size ResNet planned at 32.5 ms for 33 ms re-measured at 34.2 ms). When the fresh
    timing is over, the search aims lower by the ratio between the two timings and tries again."""
    timed: dict[tuple[int, ...], float] = {}
    trail: list[dict[str, Any]] = []

    def p50(k: int) -> float:
        counts = counts_for(k)
        key = tuple(counts)
        if key not in timed:  # rounding maps several k to one plan: time it once
            timed[key] = timing.cached(counts)
            log.info("latency plan: %d channels removed -> p50 %.3f ms (budget %.3f)", k, timed[key], target.p50_ms)
        trail.append({"channels_removed": sum(counts), "p50_ms": timed[key]})
        return timed[key]

    def fewest_within(lo: int, aim: float) -> int:
        """The smallest ``k`` in ``(lo, max_k]`` with ``p50(k) <= aim``, given ``p50(lo) > aim`` (``max_k`` if
        none is)."""
        hi = max_k
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if p50(mid) <= aim:
                hi = mid
            else:
                lo = mid
        return hi

    budget = target.p50_ms
    where = f"{target.device}/{target.backend} at batch {target.batch_size}"
    full = p50(0)
    confirmations: list[dict[str, float]] = []
    if full <= budget:
        log.warning("latency plan: the unpruned network already meets %.3f ms on %s (%.3f ms)", budget, where, full)
        best = 0
    else:
        smallest = p50(max_k)
        if smallest > budget:
            raise BudgetUnreachable(
                f"prune.latency.p50_ms {budget:g} ms is below the smallest reachable student: {smallest:.3f} ms p50 "
                f"on {where} (every layer kept at min_width={min_width}); raise the budget or lower prune.min_width"
            )
        best = fewest_within(0, budget)
        for attempt in range(CONFIRM_ROUNDS):
            counts = counts_for(best)
            planned, fresh = timed[tuple(counts)], timing.fresh(counts)  # every searched plan was timed
            confirmations.append({"channels_removed": sum(counts), "p50_ms": planned, "fresh_ms": fresh})
            if fresh <= budget or best == max_k or attempt == CONFIRM_ROUNDS - 1:
                break  # the plan is the last one re-timed
            aim = planned * budget / fresh  # it ran this much slower afresh: aim that much lower (below planned)
            log.info("latency plan: re-timed at %.3f ms, over the budget: searching again below %.3f ms", fresh, aim)
            best = fewest_within(best, aim)
    counts = counts_for(best)
    planned = timed[tuple(counts)]
    confirmed = not confirmations or confirmations[-1]["fresh_ms"] <= budget
    if not confirmed:
        log.warning(
            "latency plan: the chosen student re-timed at %.3f ms, over the %.3f ms budget, %d times: the machine is "
            "busier than the budget allows for",
            confirmations[-1]["fresh_ms"],
            budget,
            len(confirmations),
        )
    within = best == 0 or planned >= (1.0 - target.tolerance) * budget
    if not within:
        log.warning(
            "latency plan: %.3f ms is %.1f%% under the %.3f ms budget (tolerance %.0f%%): removing one channel less "
            "measured over it",
            planned,
            100 * (1 - planned / budget),
            budget,
            100 * target.tolerance,
        )
    return counts, {
        **target.model_dump(exclude={"p50_ms"}),
        "p50_ms_target": budget,
        "p50_ms_planned": planned,
        "p50_ms_unpruned": full,
        "within_tolerance": within,
        "confirmed": confirmed,
        "confirmations": confirmations,
        "candidates_timed": len(timed),
        "search": trail,
    }
