"""What a sweep point's stages agree on after its prune: the sparsity it reached.

A sparsity point (``s0.75``) is named after its sparsity; a latency point (``cpu-t2-33ms``) removes what its
budget needs, so its sparsity (the fraction of the teacher's MACs removed) is known only once it is pruned. The
prune stage records it in the point's prune report, where distill, evaluate and tracking read it, so every
student has one number to sort and filter by.
"""

from __future__ import annotations

import json
from pathlib import Path

PRUNE_REPORT = "prune_report.json"


def recorded_sparsity(point_dir: Path) -> float:
    """A point's sparsity as its prune stage recorded it in ``point_dir/prune_report.json``."""
    report = Path(point_dir) / PRUNE_REPORT
    if not report.is_file():
        raise FileNotFoundError(f"{report}: no prune report for the student in {point_dir}; prune the point first")
    return float(json.loads(report.read_text())["sparsity"])
