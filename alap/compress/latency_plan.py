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
from typing import Any

from alap.compress.params import LatencyTarget, PruneParams
from alap.errors import UserError

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


def plan_for_latency(
    counts_for: Callable[[int], list[int]],
    max_k: int,
    latency_of: Callable[[list[int]], float],
    target: LatencyTarget,
    min_width: int,
) -> tuple[list[int], dict[str, Any]]:
    """Per-group removal counts of the fewest channels ``k`` (``counts_for(k)``, ``0 <= k <= max_k``) whose
    ``latency_of(counts)`` meets ``target.p50_ms``, and the search's record for the prune report."""
    timed: dict[tuple[int, ...], float] = {}
    trail: list[dict[str, Any]] = []

    def p50(k: int) -> float:
        counts = counts_for(k)
        key = tuple(counts)
        if key not in timed:  # rounding maps several k to one plan: time it once
            timed[key] = float(latency_of(counts))
            log.info("latency plan: %d channels removed -> p50 %.3f ms (budget %.3f)", k, timed[key], target.p50_ms)
        trail.append({"channels_removed": sum(counts), "p50_ms": timed[key]})
        return timed[key]

    budget = target.p50_ms
    where = f"{target.device}/{target.backend} at batch {target.batch_size}"
    full = p50(0)
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
        lo, hi = 0, max_k  # p50(lo) > budget >= p50(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if p50(mid) <= budget:
                hi = mid
            else:
                lo = mid
        best = hi
    counts = counts_for(best)
    planned = timed[tuple(counts)]
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
        "candidates_timed": len(timed),
        "search": trail,
    }
