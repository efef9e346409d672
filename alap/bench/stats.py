"""Seeds into numbers a reader can trust: mean ± std per method, FID's interval, and a winner only beyond the spread.

The rule (written into reports/benchmark.md by alap.bench.report): on a metric, the method with the best mean
*wins* only when it beats every other method clearly, where ``a`` clearly beats ``b`` when

- its mean is better by more than ``std_a + std_b`` (sample standard deviations over the seeds, 0 for one seed),
- and by more than the metric's display margin (:meth:`alap.metrics.names.Metric.clearly_better`),
- and, for FID where both have bootstrap intervals, the intervals do not overlap (the interval of a method is the
  mean over its seeds of each seed's ``fid_ci_low`` / ``fid_ci_high``: the test-sample uncertainty of one run,
  which the seeds' std does not contain, since every seed is scored on the same test images).

Otherwise the result is a tie between the best method and every method it does not clearly beat.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from alap.metrics.names import Metric

FID_INTERVAL = ("fid_ci_low", "fid_ci_high")


@dataclass(frozen=True)
class Spread:
    """One method's values of one metric over its seeds."""

    mean: float
    std: float
    n: int
    interval: tuple[float, float] | None = None  # FID only: the mean of the seeds' bootstrap intervals


@dataclass(frozen=True)
class Verdict:
    """``winner`` when the best mean clearly beats every other method, else ``tied`` (best first, by mean)."""

    best: str
    winner: str | None
    tied: tuple[str, ...]


def spread(rows: list[dict[str, Any]], key: str) -> Spread | None:
    """``key`` over ``rows`` (one method's seeds; rows without it are left out), None if no row has it."""
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    interval = None
    if key == "fid":
        bounds = [
            (r[FID_INTERVAL[0]], r[FID_INTERVAL[1]]) for r in rows if all(r.get(k) is not None for k in FID_INTERVAL)
        ]
        if bounds and len(bounds) == len(values):
            interval = (statistics.fmean(b[0] for b in bounds), statistics.fmean(b[1] for b in bounds))
    return Spread(statistics.fmean(values), std, len(values), interval)


def clearly_beats(metric: Metric, a: Spread, b: Spread) -> bool:
    """Whether ``a`` beats ``b`` on ``metric`` beyond the spread (the module's rule)."""
    if not metric.clearly_better(a.mean, b.mean) or not abs(a.mean - b.mean) > a.std + b.std:
        return False
    if a.interval is not None and b.interval is not None:
        low, high = sorted([a.interval, b.interval], key=lambda iv: iv[0])
        return low[1] < high[0]
    return True


def decide(metric: Metric, spreads: dict[str, Spread | None]) -> Verdict | None:
    """The winner or the tie among ``spreads`` (method -> its spread; None = not measured), None if none has it."""
    measured = {name: s for name, s in spreads.items() if s is not None and math.isfinite(s.mean)}
    if not measured:
        return None
    order = sorted(measured, key=lambda n: measured[n].mean, reverse=not metric.lower_is_better)
    best = order[0]
    tied = tuple(n for n in order if n == best or not clearly_beats(metric, measured[best], measured[n]))
    return Verdict(best, best if len(tied) == 1 else None, tied)


def describe(verdict: Verdict | None, metric: Metric, spreads: dict[str, Spread | None]) -> str:
    """``"`alap` 120.22 ± 3.10"`` for a winner, ``"tie: `alap`, `slimming`"`` otherwise, ``n/a`` unmeasured."""
    if verdict is None:
        return "n/a"
    if verdict.winner is not None:
        return f"`{verdict.winner}` {fmt(metric, spreads[verdict.winner])}"
    return "tie: " + ", ".join(f"`{name}`" for name in verdict.tied)


def fmt(metric: Metric, value: Spread | None, interval: bool = False) -> str:
    """``mean ± std`` at the metric's precision (``mean`` alone for one seed), FID's interval on request."""
    if value is None:
        return "n/a"
    text = metric.fmt(value.mean) if value.n == 1 else f"{metric.fmt(value.mean)} ± {metric.fmt(value.std)}"
    if interval and value.interval is not None:
        text += f" [{metric.fmt(value.interval[0])}, {metric.fmt(value.interval[1])}]"
    return text
