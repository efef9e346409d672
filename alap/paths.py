"""Where each stage reads and writes, in one place, so stages, flows, the CLI and dvc.yaml agree.

The layout is per task and per sweep point: ``models/<task>/teacher.pt``, ``models/<task>/s0.5/student.pt``, ...
A sweep point's name is ``s`` and its sparsity (``s0.5``), or for a latency budget the device and the budget
(``cpu-t2-33ms``): the ``model`` column of reports/summary.csv.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TORCH_HOME = Path(".torch")  # project-local (gitignored) home of the offline FID/LPIPS weights
DEFAULT_STATE = Path(".alap/state")  # resume state and locks: outside DVC outputs
LATENCY_CACHE = Path(".alap/cache/latency")  # candidate timings of the latency planner, shared by every run here


def point_name(sparsity: float) -> str:
    """``s0.9`` for 0.9: the float as Python (and DVC's ``s${item.s}`` in dvc.yaml) writes it, so the CLI, the
    flows and DVC name a point's folder alike."""
    return f"s{float(sparsity)}"


def latency_point_name(device: str, p50_ms: float) -> str:
    """``cpu-t2-33ms`` for 33.0 on cpu-t2, ``cpu-t1-16.7ms`` for 16.7: the point (folder, DVC stage suffix, report
    row, MLflow run) of the student planned for a p50 budget on a device; the budget as Python writes the float,
    less a trailing ``.0``, so each budget has one name."""
    return f"{device}-{repr(float(p50_ms)).removesuffix('.0')}ms"


LATENCY_POINT = re.compile(r"(?P<device>cpu-t\d+|cuda\d+)-(?P<p50>\d+(?:\.\d+)?)ms")


def parse_latency_point(name: str) -> tuple[str, float] | None:
    """The device and p50 budget a latency point's name says (``cpu-t2-33ms`` -> ``("cpu-t2", 33.0)``); None for
    any other name (``s0.75``, ``teacher``)."""
    match = LATENCY_POINT.fullmatch(name)
    return None if match is None else (match["device"], float(match["p50"]))


@dataclass(frozen=True)
class TaskPaths:
    task: str
    models: Path = Path("models")
    reports: Path = Path("reports")
    state: Path = DEFAULT_STATE

    @property
    def model_dir(self) -> Path:
        return self.models / self.task

    @property
    def teacher(self) -> Path:
        return self.model_dir / "teacher.pt"

    @property
    def teacher_aux(self) -> Path:
        return self.model_dir / "teacher_aux.pt"

    @property
    def train_metrics(self) -> Path:
        return self.model_dir / "train_metrics.json"

    @property
    def teacher_source(self) -> Path:
        """Where an imported teacher came from (file, digest, inferred layout) and how good it is on the task."""
        return self.model_dir / "teacher_source.json"

    @property
    def condensed(self) -> Path:
        return self.model_dir / "condensed.pt"

    def checkpoint(self, model_name: str, point_dir: Path | None = None) -> Path:
        """The checkpoint behind a report row: ``teacher``, ``condensed``, or a sweep point's ``student.pt``
        (in ``point_dir``, default ``<model_dir>/<model_name>``)."""
        if model_name in ("teacher", "condensed"):
            return getattr(self, model_name)
        return (point_dir or self.model_dir / model_name) / "student.pt"

    def point_dir(self, sparsity: float) -> Path:
        return self.model_dir / point_name(sparsity)

    def pruned(self, sparsity: float) -> Path:
        return self.point_dir(sparsity) / "pruned.pt"

    def student(self, sparsity: float) -> Path:
        return self.point_dir(sparsity) / "student.pt"

    @property
    def report_dir(self) -> Path:
        return self.reports / self.task

    @property
    def condense_report(self) -> Path:
        """The condensed checkpoint's meta (wall time, channels below threshold), readable without torch."""
        return self.report_dir / "condense" / "condense.json"

    @property
    def real_features(self) -> Path:
        """Inception features of the real test targets, shared by the evaluations of every model of the task."""
        return self.report_dir / "fid_real_features.pt"

    def resume_state(self, stage: str, key: str) -> Path:
        """Resume checkpoints live outside DVC outputs (DVC deletes outs before rerunning a stage) and are keyed
        by a hash of the stage's inputs so that changed params never resume from stale state."""
        return self.state / self.task / f"{stage}-{key}.pt"
