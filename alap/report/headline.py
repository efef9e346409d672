"""The few numbers a reader looks at first, one row per model: × fewer MACs, PSNR, FID with its 95% interval, LPIPS to
the teacher, and the batch-1 p50 latency and speed-up on the device that promotion gates on.

Two views of the same rows. ``reports/headline/<task>/<model>.json`` is what dvc.yaml declares as metrics, so that
``dvc metrics show`` prints a table of a handful of columns (the stages' detailed reports stay plain outputs,
readable with ``dvc metrics show <file>``). :func:`render` is the terminal summary `make demo` ends with; it fits in
100 columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from alap.io import write_json
from alap.metrics.names import METRICS, LatencyKey

HEADLINE_DIR = "headline"
FIELDS = ("macs_x", "psnr", "fid", "fid_ci_low", "fid_ci_high", "lpips_teacher", "p50_ms", "speedup")
WIDTH = 100
# field, header, format, width: the widths of the headers or of the widest usual values, so that a line with the
# champion mark fits in WIDTH. FID is shown to the unit: its interval spans several points at the demo's sample size.
_COLUMNS = (
    ("model", "model", "", 12),
    ("macs_x", "× fewer MACs", ".2f", 12),
    ("psnr", "PSNR dB", ".2f", 7),
    ("fid", METRICS["fid"].shown_heading, ".0f", 14),
    ("lpips_teacher", "LPIPS to teacher", ".3f", 16),
    ("p50_ms", "p50 ms", ".3g", 7),
    ("speedup", "speed-up", ".2f", 8),
)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def headline_rows(frame: pd.DataFrame, gate: LatencyKey) -> list[dict[str, Any]]:
    """Per row of the summary frame (reports/summary.csv): task, model and :data:`FIELDS`, None where not measured
    (the condensed network is never profiled; a task without ground truth has no PSNR)."""
    source = {
        "macs_x": "macs_reduction",
        "psnr": "psnr",
        "fid": "fid",
        "fid_ci_low": "fid_ci_low",
        "fid_ci_high": "fid_ci_high",
        "lpips_teacher": "lpips_teacher",
        "p50_ms": gate.p50,
        "speedup": gate.speedup,
    }
    return [
        {"task": row["task"], "model": row["model"], **{f: _number(row.get(c)) for f, c in source.items()}}
        for _, row in frame.iterrows()
    ]


def write_headlines(reports_dir: Path, rows: Sequence[Mapping[str, Any]]) -> list[Path]:
    """One small JSON per model under ``<reports_dir>/headline/<task>/<model>.json``; returns the paths."""
    written = []
    for row in rows:
        path = Path(reports_dir) / HEADLINE_DIR / row["task"] / f"{row['model']}.json"
        write_json(path, {field: row[field] for field in FIELDS})
        written.append(path)
    return written


def render(
    rows: Sequence[Mapping[str, Any]],
    gate: LatencyKey,
    champions: Mapping[str, str | None],
    earlier: Mapping[str, int] | None = None,
) -> str:
    """The terminal summary: per task its models, the champion marked (a task missing from ``champions`` was not
    promoted); at most :data:`WIDTH` columns. ``earlier``: the registry version of a task's champion that an
    earlier run registered (the gates rank every version, so it can beat this run's students)."""
    lines = []
    earlier = earlier or {}
    for task in dict.fromkeys(row["task"] for row in rows):
        champion = champions.get(task)
        verdict = ""
        if champion:
            verdict = f"; champion {champion}"
        elif task in earlier:
            verdict = f"; champion: registry version {earlier[task]}, from an earlier run"
        elif task in champions:
            verdict = "; no student passes the promotion gates"
        lines.append(f"{task}: p50 on {gate.device}/{gate.backend}, batch {gate.batch}{verdict}")
        lines.append("  ".join(_align(field, header, width) for field, header, _, width in _COLUMNS).rstrip())
        for row in (r for r in rows if r["task"] == task):
            cells = []
            for field, _, spec, width in _COLUMNS:
                cells.append(_align(field, _text(row, field, spec), width))
            mark = "  ← champion" if row["model"] == champion else ""
            lines.append("  ".join(cells) + mark)
        lines.append("")
    return "\n".join(line[:WIDTH] for line in lines).rstrip() + "\n"


def _text(row: Mapping[str, Any], field: str, spec: str) -> str:
    """A cell: the model's name, FID with its interval (``131 [124, 139]``), or a number; a dash where not measured."""
    value = row[field]
    if isinstance(value, str):
        return value
    shown = METRICS["fid"].shown(row, spec) if field == "fid" else None if value is None else format(value, spec)
    return "—" if shown is None else shown


def _align(field: str, text: str, width: int) -> str:
    return text.ljust(width) if field == "model" else text.rjust(width)
