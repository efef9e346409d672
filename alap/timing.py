"""When a stage's work happened, recorded in its report so that tracking shows real times.

MLflow runs are logged after the stages, sometimes minutes or a re-log later; a run's start and end must be the
stage's own. Each report that a training stage writes carries ``wall_s`` (all attempts, resumes included) and
``finished_at`` (UTC, when its outputs were complete); a model's run spans the stages that made it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

FINISHED_AT = "finished_at"


def stage_times(wall_s: float) -> dict[str, Any]:
    """``{"wall_s", "finished_at"}`` for a report written now, after ``wall_s`` seconds of work."""
    return {"wall_s": round(wall_s, 2), FINISHED_AT: datetime.now(UTC).isoformat(timespec="seconds")}


def time_window(reports: Iterable[Mapping[str, Any]]) -> tuple[float, float] | None:
    """(start, end) in Unix seconds over the reports that record both times; None when none does.

    A report's start is its end minus its wall time: after a resume that is earlier than the last attempt's
    start, which is what a run spanning every attempt should show."""
    spans = []
    for report in reports:
        finished, wall = report.get(FINISHED_AT), report.get("wall_s")
        if finished is None or wall is None:
            continue
        end = datetime.fromisoformat(finished).timestamp()
        spans.append((end - float(wall), end))
    if not spans:
        return None
    return min(start for start, _ in spans), max(end for _, end in spans)
