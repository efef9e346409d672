"""Pareto plots: which students buy the most speed for the least quality, per task.

A student is worth considering only if no other model is both cheaper (fewer GMACs, lower latency)
and better (lower FID/LPIPS, higher PSNR); those models form the Pareto front that the plots draw.
Figures are built on matplotlib's object API with the Agg canvas (no pyplot), so rendering needs
no display and leaves matplotlib's global backend alone. The same points are also written as a
small CSV per task for DVC's ``plots:``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from alap.metrics.names import LATENCY, METRICS, QUALITY, LatencyKey, Metric
from alap.report.tables import CONDENSED, TEACHER, ModelReport, p50_keys

# The quality metrics plotted against cost (where measured): FID to teacher stands in for FID on a task of input
# images alone, which has no real targets to measure FID against.
PLOTTED = tuple(METRICS[key] for key in ("fid", "fid_teacher", "lpips", "lpips_teacher", "psnr"))
_STYLE = {
    TEACHER: {"marker": "*", "s": 180, "color": "tab:red", "label": "teacher", "zorder": 4},
    CONDENSED: {"marker": "D", "s": 70, "color": "tab:orange", "label": "condensed", "zorder": 4},
}
_POINT_STYLE = {"marker": "o", "s": 45, "color": "tab:blue", "label": "student", "zorder": 3}


def pareto_mask(cost: Sequence[float], quality: Sequence[float], lower_is_better: bool) -> list[bool]:
    """True for each point that no other point dominates (no more cost, no worse quality, better in one).

    Points missing either value are never on the front: an unmeasured model cannot be recommended.
    """
    sign = 1.0 if lower_is_better else -1.0
    points = [(float(c), sign * float(q)) for c, q in zip(cost, quality)]
    finite = [not (math.isnan(c) or math.isnan(q)) for c, q in points]
    mask: list[bool] = []
    for i, (c, q) in enumerate(points):
        dominated = any(
            finite[j] and j != i and oc <= c and oq <= q and (oc < c or oq < q) for j, (oc, oq) in enumerate(points)
        )
        mask.append(finite[i] and not dominated)
    return mask


def draw_pareto_front(ax: Axes, cost: Sequence[float], quality: Sequence[float], lower_is_better: bool) -> None:
    """The Pareto front of the points (:func:`pareto_mask`) as a dashed step line, when it has two points or more."""
    front = sorted((c, q) for c, q, on in zip(cost, quality, pareto_mask(cost, quality, lower_is_better)) if on)
    if len(front) > 1:
        ax.step(
            [p[0] for p in front],
            [p[1] for p in front],
            where="post",
            linestyle="--",
            color="gray",
            linewidth=1,
            label="Pareto front",
            zorder=2,
        )


def reference_latency_key(task_frame: pd.DataFrame, reports: list[ModelReport]) -> LatencyKey | None:
    """The latency column DVC's plot uses: the combination measured for the most models (ties: sorted order)."""
    keys = p50_keys(reports)
    if not keys:
        return None
    return max(keys, key=lambda k: (int(task_frame[k.p50].notna().sum()), -keys.index(k)))


def pareto_data(task_frame: pd.DataFrame, reports: list[ModelReport]) -> pd.DataFrame:
    """One task's points for DVC plots: cost (``gmacs``, ``p50_ms`` of one named latency key) and quality.

    ``p50_ms`` is a fixed column name so that dvc.yaml's ``plots:`` can name it whatever devices a run
    profiled; ``latency_key`` says which measurement it is. ``pareto_*`` flag the FID fronts.
    """
    key = reference_latency_key(task_frame, reports)
    data = task_frame[["task", "model", "sparsity", "gmacs", "params_m"]].copy()
    data["latency_key"] = "" if key is None else key.p50
    data["p50_ms"] = math.nan if key is None else task_frame[key.p50]
    for column in (m.key for m in QUALITY if m.key in task_frame.columns):
        data[column] = task_frame[column]
    fid = METRICS["fid"]
    data["pareto_gmacs_fid"] = pareto_mask(data["gmacs"], data[fid.key], fid.lower_is_better)
    data["pareto_latency_fid"] = pareto_mask(data["p50_ms"], data[fid.key], fid.lower_is_better)
    return data.reset_index(drop=True)


def _draw_panel(ax: Axes, frame: pd.DataFrame, x: str, x_label: str, quality: Metric) -> None:
    xs, ys = frame[x].astype(float), frame[quality.key].astype(float)
    shown = xs.notna() & ys.notna()
    if not shown.any():
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="gray")
    for model, px, py in zip(frame["model"][shown], xs[shown], ys[shown]):
        ax.scatter([px], [py], **_STYLE.get(model, _POINT_STYLE))
        # condensed sits at the teacher's cost: label it on the left so the two names never collide.
        left = model == CONDENSED
        ax.annotate(
            model,
            (px, py),
            textcoords="offset points",
            xytext=(-7, -3) if left else (5, 4),
            ha="right" if left else "left",
            fontsize=8,
        )
    if quality.interval and all(key in frame.columns for key in quality.interval):  # FID's 95% interval
        low, high = (frame[key].astype(float) for key in quality.interval)
        bars = shown & low.notna() & high.notna()
        below, above = (ys[bars] - low[bars]).clip(lower=0), (high[bars] - ys[bars]).clip(lower=0)
        ax.errorbar(xs[bars], ys[bars], yerr=[below, above], fmt="none", ecolor="gray", elinewidth=1, capsize=2)
    draw_pareto_front(ax, xs, ys, quality.lower_is_better)
    positive = xs[shown][xs[shown] > 0]
    if len(positive) > 1 and positive.max() / positive.min() > 10:
        ax.set_xscale("log")
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"{quality.heading}, {quality.direction} is better")
    ax.grid(True, alpha=0.3)


def _legend(ax: Axes) -> None:
    """One legend entry per kind of point, however many students there are."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")


def pareto_figure(task_frame: pd.DataFrame, x_axes: list[tuple[str, str]], title: str) -> Figure:
    """Quality vs. cost: one row per cost axis ``(column, label)``, one column per measured quality metric."""
    qualities = [q for q in PLOTTED if q.key in task_frame.columns and task_frame[q.key].notna().any()]
    if not x_axes or not qualities:
        fig = Figure(figsize=(6, 3), layout="constrained")
        ax = fig.add_subplot()
        ax.axis("off")
        missing = "quality metrics" if x_axes else "latency"
        ax.text(0.5, 0.5, f"{title}\n\nnothing to plot: no {missing} measured", ha="center", va="center")
        return fig
    fig = Figure(figsize=(4.4 * len(qualities), 3.6 * len(x_axes)), layout="constrained")
    axes = fig.subplots(len(x_axes), len(qualities), squeeze=False)
    for row, (x, x_label) in enumerate(x_axes):
        for col, quality in enumerate(qualities):
            _draw_panel(axes[row][col], task_frame, x, x_label, quality)
    _legend(axes[0][0])
    fig.suptitle(title)
    return fig


def gmacs_figure(task: str, task_frame: pd.DataFrame) -> Figure:
    gmacs = METRICS["gmacs"]
    return pareto_figure(task_frame, [(gmacs.key, f"{gmacs.heading} per image")], f"{task}: quality vs. compute")


def latency_figure(task: str, task_frame: pd.DataFrame, reports: list[ModelReport]) -> Figure:
    """One row per device x backend x batch size that anyone in the task was profiled on."""
    x_axes = [(key.p50, f"p50 {LATENCY.label}, {key.label} ({LATENCY.unit})") for key in p50_keys(reports)]
    return pareto_figure(task_frame, x_axes, f"{task}: quality vs. latency")
