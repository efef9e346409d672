"""What the teacher and each student cost to make, next to what the teacher reached.

Read from the JSON files the train, condense, prune and distill stages leave (``train_metrics.json``,
``condense.json``, ``prune_report.json``, ``distill_report.json``), so the summary answers "how long did this take,
and is the teacher any good" without anyone opening a checkpoint. A missing file becomes a note saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alap.paths import TaskPaths
from alap.report.tables import CONDENSED, TEACHER, ModelReport, read_json

TRAIN_FILE, PRUNE_FILE, DISTILL_FILE = "train_metrics.json", "prune_report.json", "distill_report.json"


def _optional(path: Path) -> dict[str, Any] | None:
    return read_json(path) if path.is_file() else None


def teacher_note(paths: TaskPaths) -> str:
    """Where the teacher came from (training steps and time, or the imported file) and its floors: test PSNR against
    the mean-image predictor, and for unpaired tasks its FID against the untranslated inputs' (the identity)."""
    train, source = _optional(paths.train_metrics), _optional(paths.teacher_source)
    if train is not None:
        note, quality = f"Teacher: {train['steps']} steps in {train['wall_s']:.0f} s", train
    elif source is not None:
        note, quality = (
            f"Teacher: imported from {source['source_file']} (sha256 {source['source_sha256'][:12]}…)",
            source,
        )
    else:
        return f"No {paths.train_metrics}: the teacher's training time and quality are unknown."
    if quality.get("psnr_test") is not None and quality.get("psnr_mean_image") is not None:
        note += (
            f"; test PSNR {quality['psnr_test']:.2f} dB vs {quality['psnr_mean_image']:.2f} dB for the mean "
            f"training image ({quality['psnr_test'] - quality['psnr_mean_image']:+.2f} dB)"
        )
    if quality.get("fid_identity") is not None:
        note += f"; FID {_teacher_fid(paths)} vs {quality['fid_identity']:.2f} for the untranslated test inputs"
    return note + "."


def _teacher_fid(paths: TaskPaths) -> str:
    """The teacher's FID from its evaluation (reports/<task>/teacher/metrics.json); "?" before evaluate ran."""
    metrics = _optional(paths.report_dir / TEACHER / "metrics.json")
    return "?" if metrics is None or metrics.get("fid") is None else f"{metrics['fid']:.2f}"


def compression_note(paths: TaskPaths, reports: list[ModelReport]) -> str | None:
    """Each student's compression wall time (the shared condense, then its own prune and distill), as a ratio of
    the teacher's training time where the teacher was trained here; None when the task has no students."""
    students = [r.model for r in reports if r.model not in (TEACHER, CONDENSED)]
    if not students:
        return None
    train, condense = _optional(paths.train_metrics), _optional(paths.condense_report)
    if condense is None or (train is None and not paths.teacher_source.is_file()):
        missing = paths.condense_report if condense is None else paths.train_metrics
        return f"No {missing}: compression time vs teacher training is unknown."
    parts = []
    for name in students:
        prune, distill = (_optional(paths.model_dir / name / file) for file in (PRUNE_FILE, DISTILL_FILE))
        if prune is None or distill is None:
            parts.append(f"{name} ?")
            continue
        wall = condense["wall_s"] + prune["wall_s"] + distill["wall_s"]
        parts.append(
            f"{name} {wall:.0f} s" if train is None else f"{name} {wall / train['wall_s']:.2f}x ({wall:.0f} s)"
        )
    versus = "" if train is None else " vs teacher training"
    return f"Compression time{versus} (condense once, then prune + distill per student): " + ", ".join(parts) + "."


def cost_notes(models_dir: Path, reports_dir: Path, task: str, reports: list[ModelReport]) -> list[str]:
    paths = TaskPaths(task, models=Path(models_dir), reports=Path(reports_dir))
    notes = [teacher_note(paths)]
    compression = compression_note(paths, reports)
    return notes if compression is None else [*notes, compression]
