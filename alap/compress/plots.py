"""What condensing did, per layer: a CSV table and a PNG of the scale-factor distribution.

Users decide the prune setting from these: the histogram should show a mass of channels near zero, well separated
from the rest, and the per-layer bars show whether the threshold would empty a layer.
"""

from __future__ import annotations

import csv
import io as _io
import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: stages run on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from alap import io  # noqa: E402
from alap.compress.scale_factors import ChannelLayer, hidden_layers  # noqa: E402

COLUMNS = ["layer", "norm", "gated", "width", "min", "median", "mean", "max", "below_threshold", "below_fraction"]


def scale_table(layers: list[ChannelLayer], threshold: float) -> list[dict[str, Any]]:
    """One row per prunable conv: its scale-factor statistics and how many channels fall below ``threshold``."""
    rows = []
    for layer in hidden_layers(layers):
        scale = layer.scale().double().cpu()
        below = int((scale < threshold).sum())
        rows.append(
            {
                "layer": layer.name,
                "norm": "" if layer.norm is None else type(layer.norm).__name__,
                "gated": layer.gate is not None,
                "width": scale.numel(),
                "min": float(scale.min()),
                "median": float(scale.median()),
                "mean": float(scale.mean()),
                "max": float(scale.max()),
                "below_threshold": below,
                "below_fraction": below / scale.numel(),
            }
        )
    return rows


def write_scale_table(rows: list[dict[str, Any]], path: str | os.PathLike) -> None:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    io.write_text(path, buffer.getvalue())


def plot_scales(layers: list[ChannelLayer], threshold: float, path: str | os.PathLike) -> None:
    """Left: histogram of log10 scale factors with the threshold; right: channels below it per layer."""
    hidden = hidden_layers(layers)
    scales = torch.cat([layer.scale().double().cpu() for layer in hidden])
    floor = 1e-8  # exact zeros would be -inf on the log axis
    logs = scales.clamp_min(floor).log10().numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    left.hist(logs, bins=60, color="tab:blue")
    left.axvline(math.log10(max(threshold, floor)), color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    left.set_xlabel("log10 |scale factor|")
    left.set_ylabel("channels")
    below_total = int((scales < threshold).sum())
    left.set_title(f"{below_total} of {scales.numel()} channels below threshold")
    left.legend()
    rows = scale_table(layers, threshold)
    x = range(len(rows))
    right.bar(x, [r["width"] for r in rows], color="lightgray", label="width")
    right.bar(x, [r["below_threshold"] for r in rows], color="tab:red", label="below threshold")
    right.set_xticks(list(x), [r["layer"] for r in rows], rotation=90, fontsize=6)
    right.set_ylabel("channels")
    right.legend()
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
