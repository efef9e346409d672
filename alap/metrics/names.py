"""Every metric name alap writes, with its label, unit, better direction and display format.

The names are a contract (docs/architecture.md) between the stages that write metrics (evaluate's ``metrics.json``,
profile's ``latency.json``) and everything that reads them: the summary tables, the HTML report and its plots, the
benchmark report and plots, MLflow logging and promotion. Each reader used to keep its own copy of a label or of which
way is better, and the copies drifted as soon as a metric was added; this table is the only place that says either.
Latency names are a pattern, ``latency.<device>.<backend>.bs<N>.p50_ms|p90_ms``, built and parsed by
:class:`LatencyKey`, and read through the one :data:`LATENCY` entry.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

LATENCY_KEY = re.compile(
    r"^latency\.(?P<device>[^.]+)\.(?P<backend>[^.]+)\.bs(?P<batch>[1-9][0-9]*)\.(?P<stat>p50_ms|p90_ms)$"
)


@dataclass(frozen=True)
class Metric:
    """One metric: what people call it and which way is better.

    ``spec`` formats one model's value in the summary tables. ``digits`` is the precision at which the benchmark
    compares methods: it shows that many decimals and calls a gap below one unit of the last a tie, unless
    ``relative_margin`` sets the tie as a fraction of the value (latencies, which carry the machine's load).
    ``core`` metrics are the contract's set (docs/architecture.md), measured on every task with targets: columns of
    ``reports/summary.csv`` even where no model has them, and what a benchmark row records. The others are columns only
    where some model was measured on them, so a report of files written before they existed keeps its shape.
    ``interval`` names the metrics holding this one's 95% interval (low, high), ``spread`` the one holding its standard
    deviation; those are ``uncertainty`` metrics: columns of summary.csv, values in MLflow and benchmark rows, and in
    the readable tables written beside the value they qualify (:meth:`shown`), never ranked on their own.
    """

    key: str
    label: str
    direction: Literal["lower", "higher"]
    spec: str
    digits: int
    kind: Literal["quality", "uncertainty", "cost"] = "quality"
    unit: str | None = None
    core: bool = True
    relative_margin: float | None = None
    interval: tuple[str, str] | None = None
    spread: str | None = None

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "lower"

    @property
    def heading(self) -> str:
        """The label with its unit, e.g. ``PSNR (dB)``: table headers and plot axes."""
        return self.label if self.unit is None else f"{self.label} ({self.unit})"

    def better(self, a: float, b: float) -> bool:
        return a < b if self.lower_is_better else a > b

    def clearly_better(self, a: float, b: float) -> bool:
        """``a`` beats ``b`` by more than the tie margin (smaller gaps are reported as ties)."""
        margin = abs(b) * self.relative_margin if self.relative_margin is not None else 10.0**-self.digits
        return self.better(a, b) and abs(a - b) > margin

    def fmt(self, value: float | None) -> str:
        """The value at the precision methods are compared at, ``n/a`` where it was not measured."""
        return "n/a" if value is None else f"{value:.{self.digits}f}"

    @property
    def shown_heading(self) -> str:
        """The heading of a column of :meth:`shown` cells, e.g. ``FID [95% CI]``, ``KID ± std``."""
        return self.heading + (" [95% CI]" if self.interval else " ± std" if self.spread else "")

    def shown(self, values: Mapping[str, Any], spec: str | None = None) -> str | None:
        """This metric's value in ``values`` (a metrics.json, a summary row) for people: formatted with ``spec``
        (default :attr:`spec`), followed by its interval ``[low, high]`` or ``± std`` where ``values`` holds them,
        e.g. ``122.40 [115.03, 130.21]``, ``0.0123 ± 0.0010``; None where the value was not measured."""
        value = _measured(values.get(self.key))
        if value is None:
            return None
        spec = self.spec if spec is None else spec
        text = format(value, spec)
        bounds = [_measured(values.get(key)) for key in self.interval or ()]
        if bounds and None not in bounds:
            text += f" [{format(bounds[0], spec)}, {format(bounds[1], spec)}]"
        std = _measured(values.get(self.spread)) if self.spread else None
        if std is not None:
            text += f" ± {format(std, spec)}"
        return text


def _measured(value: Any) -> float | None:
    """A number, or None for what was not measured (absent, null, or a NaN cell of a frame)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# In the column order of reports/summary.csv. The ``*_teacher`` metrics compare with the teacher's output: what a
# student is trained to reproduce, and the only reference a task of input images alone (layout images) has; the
# uncertainty of such a metric carries the suffix too (``fid_ci_low_teacher``): every metric against the teacher ends
# in ``_teacher``. FID's interval is a bootstrap's (alap.metrics.fid.fid_bootstrap_interval), KID's std is over its
# subsets.
METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("fid", "FID", "lower", ".1f", 2, interval=("fid_ci_low", "fid_ci_high")),
        Metric("fid_ci_low", "FID 95% CI low", "lower", ".1f", 2, kind="uncertainty"),
        Metric("fid_ci_high", "FID 95% CI high", "lower", ".1f", 2, kind="uncertainty"),
        Metric(
            "fid_teacher",
            "FID to teacher",
            "lower",
            ".1f",
            2,
            core=False,
            interval=("fid_ci_low_teacher", "fid_ci_high_teacher"),
        ),
        Metric("fid_ci_low_teacher", "FID to teacher 95% CI low", "lower", ".1f", 2, kind="uncertainty", core=False),
        Metric("fid_ci_high_teacher", "FID to teacher 95% CI high", "lower", ".1f", 2, kind="uncertainty", core=False),
        Metric("kid", "KID", "lower", ".4f", 4, spread="kid_std"),
        Metric("kid_std", "KID std", "lower", ".4f", 4, kind="uncertainty"),
        Metric("kid_teacher", "KID to teacher", "lower", ".4f", 4, core=False, spread="kid_std_teacher"),
        Metric("kid_std_teacher", "KID to teacher std", "lower", ".4f", 4, kind="uncertainty", core=False),
        Metric("lpips", "LPIPS", "lower", ".3f", 4),
        Metric("lpips_teacher", "LPIPS to teacher", "lower", ".3f", 4),
        Metric("psnr", "PSNR", "higher", ".2f", 2, unit="dB"),
        Metric("psnr_teacher", "PSNR to teacher", "higher", ".2f", 2, unit="dB", core=False),
        Metric("ssim", "SSIM", "higher", ".3f", 4),
        Metric("gmacs", "GMACs", "lower", "#.3g", 4, kind="cost"),
        Metric("params_m", "params", "lower", "#.3g", 3, kind="cost", unit="M"),
    )
}
# quantize.int8: a model's static int8 quantization run by ONNX Runtime is scored like the model itself
# (alap.evaluate), its metrics named as the model's behind ``int8.`` (``int8.fid``, ``int8.lpips_teacher``); its latency
# is the latency keys of backend ``onnxruntime-int8``. Columns only where measured (not core).
INT8_PREFIX = "int8."


def _int8_twin(m: Metric) -> Metric:
    return dataclasses.replace(
        m,
        key=INT8_PREFIX + m.key,
        label=f"int8 {m.label}",
        core=False,
        interval=None if m.interval is None else (INT8_PREFIX + m.interval[0], INT8_PREFIX + m.interval[1]),
        spread=None if m.spread is None else INT8_PREFIX + m.spread,
    )


METRICS.update({twin.key: twin for twin in (_int8_twin(m) for m in list(METRICS.values()) if m.kind != "cost")})
QUALITY: tuple[Metric, ...] = tuple(m for m in METRICS.values() if m.kind == "quality")
# Every latency key reads as this entry (its key is the pattern's): p50 and p90 alike, any device and batch.
LATENCY = Metric(
    "latency.<device>.<backend>.bs<N>.p50_ms|p90_ms",
    "latency",
    "lower",
    ".2f",
    2,
    kind="cost",
    unit="ms",
    relative_margin=0.05,
)


def metric(key: str) -> Metric:
    """The entry of ``key``: a named metric, or :data:`LATENCY` under ``key`` for any latency key."""
    if key in METRICS:
        return METRICS[key]
    if LATENCY_KEY.match(key):
        return dataclasses.replace(LATENCY, key=key)
    raise KeyError(f"{key!r} is not a metric alap knows: one of {sorted(METRICS)} or {LATENCY.key}")


@dataclass(frozen=True)
class LatencyKey:
    """One device x backend x batch size combination: builds its latency keys and parses them back."""

    device: str
    backend: str
    batch: int = 1

    @classmethod
    def parse(cls, key: str) -> LatencyKey:
        match = LATENCY_KEY.match(key)
        if match is None:
            raise ValueError(f"not a latency metric key: {key!r}")
        return cls(match["device"], match["backend"], int(match["batch"]))

    @property
    def _prefix(self) -> str:
        return f"latency.{self.device}.{self.backend}.bs{self.batch}"

    @property
    def p50(self) -> str:
        return f"{self._prefix}.p50_ms"

    @property
    def p90(self) -> str:
        return f"{self._prefix}.p90_ms"

    @property
    def speedup(self) -> str:
        """The report's derived column: teacher p50 over this model's p50 on this combination."""
        return f"speedup.{self.device}.{self.backend}.bs{self.batch}"

    @property
    def label(self) -> str:
        return f"{self.device}/{self.backend} bs{self.batch}"
