"""Pareto plots of the benchmark: quality (FID, LPIPS, PSNR) against cost (GMACs, latency), one colour per method.

The pipeline's report plots students of one method; here the question is which *method* buys the most quality
per cost, so every method gets its own colour and marker and its budgets are joined by a line. The dashed line is
the Pareto front over all students, drawn as in the pipeline's report (alap.report.plots.draw_pareto_front). Agg
canvas through matplotlib's object API, as in alap.report.
"""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from alap.bench.methods import METHODS
from alap.metrics.names import LATENCY, METRICS, Metric
from alap.report.plots import draw_pareto_front

QUALITIES = tuple(METRICS[key] for key in ("fid", "lpips", "psnr"))
_COLORS = (
    "tab:gray",
    "tab:brown",
    "tab:olive",
    "tab:pink",
    "tab:red",
    "tab:orange",
    "tab:purple",
    "tab:cyan",
    "tab:green",
    "tab:blue",
    "teal",
    "gold",
    "navy",
    "lime",
    "magenta",
    "darkorange",
    "maroon",
)
_MARKERS = ("s", "v", "^", "<", "o", ">", "P", "X", "D", "h", "x", "p", "8", "H", "+", "1", "2")
STYLE = {name: {"color": c, "marker": m} for name, c, m in zip(METHODS, _COLORS, _MARKERS, strict=True)}
_REFERENCE_STYLE = {
    "teacher": {"marker": "*", "s": 160, "color": "black"},
    "condensed": {"marker": "d", "s": 70, "color": "dimgray"},
}


def pareto_figure(
    task: str, rows: list[dict[str, Any]], references: list[dict[str, Any]], latency_key: str, latency_label: str
) -> Figure:
    """Rows x = (GMACs, latency), columns = quality metrics measured for this task."""
    qualities = [q for q in QUALITIES if any(r.get(q.key) is not None for r in rows)]
    gmacs = METRICS["gmacs"]
    costs = [
        (gmacs.key, f"{gmacs.heading} per image"),
        (latency_key, f"p50 {LATENCY.label}, {latency_label} ({LATENCY.unit})"),
    ]
    fig = Figure(figsize=(4.6 * max(1, len(qualities)), 7.4), layout="constrained")
    axes = fig.subplots(2, max(1, len(qualities)), squeeze=False)
    for i, (cost, cost_label) in enumerate(costs):
        for j, quality in enumerate(qualities):
            _panel(axes[i][j], rows, references, cost, cost_label, quality)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle(f"{task}: quality vs. cost, per method")
    return fig


def _panel(
    ax: Axes, rows: list[dict[str, Any]], references: list[dict[str, Any]], cost: str, cost_label: str, quality: Metric
) -> None:
    column = quality.key
    for method in METHODS:
        points = sorted(
            (r[cost], r[column])
            for r in rows
            if r["method"] == method and r.get(cost) is not None and r.get(column) is not None
        )
        if points:
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], linewidth=1, markersize=6, label=method, **STYLE[method]
            )
    for ref in references:
        if ref.get(cost) is not None and ref.get(column) is not None:
            ax.scatter([ref[cost]], [ref[column]], label=ref["method"], zorder=4, **_REFERENCE_STYLE[ref["method"]])
    measured = [r for r in rows if r.get(cost) is not None and r.get(column) is not None]
    draw_pareto_front(ax, [r[cost] for r in measured], [r[column] for r in measured], quality.lower_is_better)
    if not measured:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel(f"{quality.heading}, {quality.direction} is better")
    ax.grid(True, alpha=0.3)
