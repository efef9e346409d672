"""The summary tables: per-model JSON files in, one pandas frame and readable tables out.

The report never computes a metric; it reads what the evaluate and profile stages wrote
(``reports/<task>/<model>/metrics.json`` and ``latency.json``) and derives only ratios against the
teacher (speed-up, MAC reduction). A file that is absent leaves its cells empty, so a missing
measurement is visible as a gap instead of being papered over; a file that is present but malformed
raises, naming the file, because a silently skipped number would mislead the choice of a student.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from alap.metrics.names import LATENCY, LATENCY_KEY, METRICS, QUALITY, LatencyKey

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
LATENCY_FILE = "latency.json"
GRID_FILE = "grid.png"
TEACHER = "teacher"
CONDENSED = "condensed"

# The profile stage's records name the fraction of the measured peak one of these ways (brief vs. profile_model).
_FRACTION_FIELDS = ("achieved_fraction_of_peak", "achieved_fraction")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_metrics(path: Path, data: dict[str, Any], task: str, model: str) -> None:
    """The evaluate stage's contract: the file names its own task and model, metrics are numbers or null."""
    for field, expected in (("task", task), ("model", model)):
        if data.get(field) != expected:
            raise ValueError(f"{path}: field {field!r} must be {expected!r} (its directory), got {data.get(field)!r}")
    for name in (*METRICS, "sparsity"):
        value = data.get(name)
        if value is not None and not _is_number(value):
            raise ValueError(f"{path}: {name!r} must be a number or null, got {value!r}")
    sparsity = data.get("sparsity")
    if sparsity is not None and not 0.0 <= sparsity < 1.0:
        raise ValueError(f"{path}: 'sparsity' must be in [0, 1) or null, got {sparsity!r}")
    if "measured_on" in data and not isinstance(data["measured_on"], dict):
        raise ValueError(f"{path}: 'measured_on' must be an object, got {data['measured_on']!r}")


def _validate_latency(path: Path, data: dict[str, Any], task: str, model: str) -> None:
    """The profile stage's contract: flat ``latency.*`` keys with positive milliseconds, records a list of
    objects, ``skipped`` a map of device to reason, and (where recorded) its own task and model."""
    for field, expected in (("task", task), ("model", model)):
        if field in data and data[field] != expected:
            raise ValueError(f"{path}: field {field!r} must be {expected!r} (its directory), got {data[field]!r}")
    for key, value in data.items():
        if not key.startswith("latency."):
            continue
        if LATENCY_KEY.match(key) is None:
            raise ValueError(f"{path}: {key!r} is not {LATENCY.key}")
        if not _is_number(value) or not value > 0:
            raise ValueError(f"{path}: {key!r} must be a positive number of milliseconds, got {value!r}")
    records = data.get("records", [])
    if not isinstance(records, list) or not all(isinstance(rec, dict) for rec in records):
        raise ValueError(f"{path}: 'records' must be a list of objects")
    skipped = data.get("skipped", {})
    if not isinstance(skipped, dict) or not all(isinstance(v, str) for v in skipped.values()):
        raise ValueError(f"{path}: 'skipped' must map device names to reasons")


@dataclass(frozen=True)
class ModelReport:
    """What the pipeline left for one model of one task; ``None`` where a file is absent."""

    task: str
    model: str
    directory: Path
    metrics: dict[str, Any] | None
    latency: dict[str, Any] | None

    @property
    def sparsity(self) -> float | None:
        return None if self.metrics is None else self.metrics.get("sparsity")

    @property
    def grid(self) -> Path | None:
        path = self.directory / GRID_FILE
        return path if path.is_file() else None

    def metric(self, name: str) -> float:
        """A metric as a float, NaN where it was not measured (no file, null, or absent key)."""
        value = None if self.metrics is None else self.metrics.get(name)
        return math.nan if value is None else float(value)

    @cached_property
    def latencies(self) -> dict[str, float]:
        if self.latency is None:
            return {}
        return {key: float(value) for key, value in self.latency.items() if key.startswith("latency.")}

    def fraction_of_peak(self, key: LatencyKey) -> float:
        """The achieved fraction of the device's measured peak for one combination, NaN where not recorded."""
        for rec in [] if self.latency is None else self.latency.get("records", []):
            if (rec.get("device"), rec.get("backend"), rec.get("batch_size")) != (key.device, key.backend, key.batch):
                continue
            for field in _FRACTION_FIELDS:
                if _is_number(rec.get(field)):
                    return float(rec[field])
        return math.nan


def _order(report: ModelReport) -> tuple[int, float, str]:
    """Teacher, condensed, then sweep points by sparsity (points without one last, by name)."""
    rank = {TEACHER: 0, CONDENSED: 1}.get(report.model, 2)
    sparsity = report.sparsity
    return rank, math.inf if sparsity is None else float(sparsity), report.model


def load_task(reports_dir: Path, task: str) -> list[ModelReport]:
    """Every model of ``task`` that has a metrics or latency file, in report order.

    Raises FileNotFoundError naming the teacher's metrics file when the task has no metrics at all:
    a report of latencies alone cannot say which student is good enough.
    """
    task_dir = Path(reports_dir) / task
    reports: list[ModelReport] = []
    for directory in sorted(p for p in task_dir.iterdir() if p.is_dir()) if task_dir.is_dir() else []:
        metrics_path, latency_path = directory / METRICS_FILE, directory / LATENCY_FILE
        if not metrics_path.is_file() and not latency_path.is_file():
            log.debug("%s: no %s or %s, not a model report", directory, METRICS_FILE, LATENCY_FILE)
            continue
        metrics = read_json(metrics_path) if metrics_path.is_file() else None
        if metrics is not None:
            _validate_metrics(metrics_path, metrics, task, directory.name)
        latency = read_json(latency_path) if latency_path.is_file() else None
        if latency is not None:
            _validate_latency(latency_path, latency, task, directory.name)
        reports.append(ModelReport(task, directory.name, directory, metrics, latency))
    if not any(r.metrics is not None for r in reports):
        raise FileNotFoundError(
            f"no metrics for task {task!r}: expected {task_dir / TEACHER / METRICS_FILE} "
            f"(and {task_dir}/<model>/{METRICS_FILE} per model) from the evaluate stage"
        )
    return sorted(reports, key=_order)


def p50_keys(reports: Iterable[ModelReport]) -> list[LatencyKey]:
    """The device x backend x batch combinations with a p50 anywhere in ``reports``, in sorted key order."""
    keys = {key for r in reports for key in r.latencies if key.endswith(".p50_ms")}
    return [LatencyKey.parse(key) for key in sorted(keys)]


def _teacher(reports: list[ModelReport]) -> ModelReport | None:
    return next((r for r in reports if r.model == TEACHER), None)


def metric_columns(reports: Iterable[ModelReport]) -> list[str]:
    """The metrics of the summary, in the registry's order: the core metrics always, the others where some model has
    a value (so a report of files older than a metric keeps its columns)."""
    measured = {name for r in reports if r.metrics for name, value in r.metrics.items() if value is not None}
    return [m.key for m in METRICS.values() if m.core or m.key in measured]


def summary_frame(tasks: dict[str, list[ModelReport]]) -> pd.DataFrame:
    """reports/summary.csv as a frame: the metric columns, then speed-ups and MAC reduction vs. the teacher.

    Columns: task, model, sparsity, :func:`metric_columns`, every latency key (sorted), ``speedup.<device>.
    <backend>.bs<N>`` (teacher p50 / model p50) and ``macs_reduction`` (teacher gmacs / model gmacs).
    Ratios are NaN (an empty CSV cell) where either side was not measured.
    """
    all_reports = [r for reports in tasks.values() for r in reports]
    metric_names = metric_columns(all_reports)
    latency_columns = sorted({key for r in all_reports for key in r.latencies})
    speed_keys = p50_keys(all_reports)
    rows: list[dict[str, Any]] = []
    for task, reports in tasks.items():
        teacher = _teacher(reports)
        if teacher is None:
            log.warning("task %s has no teacher report: speed-ups and MAC reductions stay empty", task)
        for r in reports:
            sparsity = math.nan if r.sparsity is None else float(r.sparsity)
            row: dict[str, Any] = {"task": task, "model": r.model, "sparsity": sparsity}
            row.update({name: r.metric(name) for name in metric_names})
            row.update({key: r.latencies.get(key, math.nan) for key in latency_columns})
            for key in speed_keys:
                base = math.nan if teacher is None else teacher.latencies.get(key.p50, math.nan)
                row[key.speedup] = base / r.latencies.get(key.p50, math.nan)
            base_macs = math.nan if teacher is None else teacher.metric("gmacs")
            gmacs = r.metric("gmacs")
            row["macs_reduction"] = base_macs / gmacs if gmacs > 0 else math.nan
            rows.append(row)
    columns = [
        "task",
        "model",
        "sparsity",
        *metric_names,
        *latency_columns,
        *(k.speedup for k in speed_keys),
        "macs_reduction",
    ]
    return pd.DataFrame(rows, columns=columns)


_MISSING = "—"
# (header, format) of the columns the report derives itself; metric columns read theirs from the registry.
_OWN_COLUMNS = {"sparsity": ("sparsity", ".2f"), "macs_reduction": ("× fewer MACs", ".2f")}
_SETTING_AND_COST = ("sparsity", "gmacs", "macs_reduction", "params_m")


def _display_columns(task_frame: pd.DataFrame) -> list[str]:
    """The summary columns the readable tables show, before the latency columns: the setting and cost, then the
    quality metrics of the summary (each with its uncertainty beside it, see :func:`_cell`)."""
    return [*_SETTING_AND_COST, *(m.key for m in QUALITY if m.key in task_frame.columns)]


def _header(name: str) -> str:
    return _OWN_COLUMNS[name][0] if name in _OWN_COLUMNS else METRICS[name].shown_heading


def _cell(row: pd.Series, name: str) -> str:
    """One cell for people: a quality metric with its interval or spread (``FID [95% CI]``, ``KID ± std``)."""
    if name in _OWN_COLUMNS:
        return fmt(row[name], _OWN_COLUMNS[name][1])
    return METRICS[name].shown(row) or _MISSING


def fmt(value: Any, spec: str) -> str:
    """One number for people: formatted, or a dash where it was not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _MISSING
    return format(value, spec)


def _latency_cell(row: pd.Series, report: ModelReport, key: LatencyKey) -> str:
    p50 = row.get(key.p50, math.nan)
    if math.isnan(p50):
        return _MISSING
    parts = [f"{fmt(p50, LATENCY.spec)} {LATENCY.unit}", f"{fmt(row.get(key.speedup, math.nan), '.2f')}×"]
    fraction = report.fraction_of_peak(key)
    parts.append(f"{fmt(fraction, '.1%')} of peak")
    return " · ".join(parts)


def display_table(task_frame: pd.DataFrame, reports: list[ModelReport]) -> tuple[list[str], list[list[str]]]:
    """Headers and string rows for one task: quality, size, and per device/backend p50 · speed-up · % of peak.

    ``task_frame`` holds this task's rows of :func:`summary_frame` in the order of ``reports``.
    """
    if list(task_frame["model"]) != [r.model for r in reports]:
        raise ValueError("display_table: task_frame rows must be the reports' models in the same order")
    keys = p50_keys(reports)
    columns = _display_columns(task_frame)
    headers = ["model", *(_header(name) for name in columns)]
    headers += [f"{key.label}: p50 · speed-up · of peak" for key in keys]
    rows: list[list[str]] = []
    for (_, row), report in zip(task_frame.iterrows(), reports):
        cells = [str(row["model"]), *(_cell(row, name) for name in columns)]
        cells += [_latency_cell(row, report, key) for key in keys]
        rows.append(cells)
    return headers, rows


def _weights_note(weights: dict[str, Any]) -> str:
    """One short phrase per metric (file or name, and the start of its sha256) instead of the whole record."""
    parts = []
    for metric, record in sorted(weights.items()):
        if isinstance(record, dict):
            name = record.get("file") or record.get("metric") or "?"
            digest = f" (sha256 {record['sha256'][:12]}…)" if record.get("sha256") else ""
            parts.append(f"{metric} `{name}`{digest}")
        else:
            parts.append(f"{metric} `{record}`")
    return ", ".join(parts)


def task_notes(reports: list[ModelReport]) -> list[str]:
    """What a reader must know to trust the table: what it was measured on, and what is missing."""
    notes: list[str] = []
    settings = {
        (r.metrics.get("measured_on", {}).get("image_size"), r.metrics.get("measured_on", {}).get("samples"))
        for r in reports
        if r.metrics is not None
    }
    described = sorted(
        f"{'?' if samples is None else samples} samples at {'?' if size is None else size} px"
        for size, samples in settings
    )
    if len(described) == 1:
        notes.append(f"Quality measured on {described[0]}.")
    else:
        notes.append(
            f"Warning: models were measured on different settings ({'; '.join(described)}); compare with care."
        )
    teacher = _teacher(reports)
    weights = teacher.metrics.get("measured_on", {}).get("weights") if teacher and teacher.metrics else None
    if weights:
        notes.append(f"Metric weights: {_weights_note(weights)}; full provenance in each {METRICS_FILE}.")
    if teacher is None or teacher.metrics is None:
        notes.append("No teacher metrics: MAC reductions and speed-ups are not available.")
    no_metrics = [r.model for r in reports if r.metrics is None]
    no_latency = [r.model for r in reports if r.latency is None]
    if no_metrics:
        notes.append(f"No {METRICS_FILE} for: {', '.join(no_metrics)}.")
    if no_latency:
        notes.append(f"No {LATENCY_FILE} for: {', '.join(no_latency)}.")
    skipped = {name: reason for r in reports if r.latency for name, reason in r.latency.get("skipped", {}).items()}
    if skipped:
        notes.append(
            "Not profiled: " + "; ".join(f"{name} ({reason})" for name, reason in sorted(skipped.items())) + "."
        )
    return notes


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table, model names left-aligned and numbers right-aligned."""
    align = [":---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_summary(frame: pd.DataFrame, tasks: dict[str, list[ModelReport]], notes: dict[str, list[str]]) -> str:
    """reports/summary.md: per task, its notes and one table."""
    parts = [
        "# alap summary",
        "",
        "Speed-up and × fewer MACs are relative to the teacher; p50 is the median latency per call.",
        "",
    ]
    for task, reports in tasks.items():
        headers, rows = display_table(frame[frame["task"] == task], reports)
        parts += [f"## {task}", "", *(f"- {note}" for note in notes[task]), "", markdown_table(headers, rows), ""]
    return "\n".join(parts)
