"""reports/latency.md and its plot from ``alap bench-latency``'s row files (alap.bench.paper_latency).

Two tables per teacher: latency (p50/p90 per device x runtime at batch 1, with MACs and params) and efficiency
(frames/s, images/s at the throughput batch, fraction of the device's measured peak, and the MACs ratio beside the
speed-up ratio against the teacher, which is the question the benchmark answers: do fewer MACs buy time here?).
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from alap import io
from alap.bench.latency_params import LatencyBenchParams
from alap.bench.paper_latency import TEACHER_ROW

_BACKEND_LABEL = {"onnxruntime": "ORT", "torch": "PyTorch"}


def _record(row: dict[str, Any], device: str, backend: str, batch: int) -> dict[str, Any] | None:
    for rec in row.get("records", []):
        if (rec["device"], rec["backend"], rec["batch_size"]) == (device, backend, batch):
            return rec
    return None


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def latency_table(rows: dict[str, dict[str, Any]], params: LatencyBenchParams) -> list[str]:
    combos = [(d, b) for b in params.backends for d in params.devices]
    head = ["model", "GMACs", "params (M)", *[f"{d} {_BACKEND_LABEL[b]} p50 / p90 (ms)" for d, b in combos]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        if "unreachable" in row:
            lines.append(f"| {name} | unreachable: {row['unreachable']} |" + " |" * (len(head) - 2))
            continue
        cells = [name, _fmt(row["gmacs"], ".2f"), _fmt(row["params_m"], ".2f")]
        for device, backend in combos:
            rec = _record(row, device, backend, 1)
            cells.append("-" if rec is None else f"{rec['p50_ms']:.1f} / {rec['p90_ms']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def efficiency_table(rows: dict[str, dict[str, Any]], params: LatencyBenchParams) -> list[str]:
    teacher = rows.get(TEACHER_ROW)
    bs = params.throughput_batch
    head = [
        "model",
        "budget (ms)",
        "planned p50 (ms)",
        *[f"{d} ORT FPS" for d in params.devices],
        *[f"{d} ORT img/s bs{bs}" for d in params.devices],
        *[f"{d} ORT % of peak" for d in params.devices],
        "MACs ratio",
        *[f"{d} {_BACKEND_LABEL[b]} speed-up" for b in params.backends for d in params.devices],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        if "unreachable" in row:
            continue
        singles = [_record(row, d, "onnxruntime", 1) for d in params.devices]
        batched = [_record(row, d, "onnxruntime", bs) for d in params.devices]
        cells = [
            name,
            _fmt(row.get("budget_ms"), ".1f"),
            _fmt(row.get("plan", {}).get("p50_ms_planned"), ".1f"),
            *[_fmt(None if r is None else 1000.0 / r["p50_ms"]) for r in singles],
            *[_fmt(None if r is None else r["images_per_s"]) for r in batched],
            *[_fmt(None if r is None else 100 * r["achieved_fraction"], ".0f") for r in singles],
            _fmt(None if teacher is None else teacher["gmacs"] / row["gmacs"], ".1f") + "x",
        ]
        for backend in params.backends:
            for device in params.devices:
                mine, base = _record(row, device, backend, 1), teacher and _record(teacher, device, backend, 1)
                cells.append("-" if not (mine and base) else f"{base['p50_ms'] / mine['p50_ms']:.1f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def int8_table(rows: dict[str, dict[str, Any]], params: LatencyBenchParams) -> list[str]:
    """int8 (onnxruntime static QDQ) beside fp32 for every row that has it."""
    head = [
        "model",
        *[f"{d} ORT fp32 -> int8 p50 (ms)" for d in params.devices],
        "output PSNR vs fp32 (dB)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        if "int8" not in row:
            continue
        cells = [name]
        for device in params.devices:
            fp32 = _record(row, device, "onnxruntime", 1)
            int8 = next((r for r in row["int8"]["records"] if r["device"] == device), None)
            if fp32 is None or int8 is None:
                cells.append("-")
            else:
                gain = fp32["p50_ms"] / int8["p50_ms"]
                cells.append(f"{fp32['p50_ms']:.1f} -> {int8['p50_ms']:.1f} ({gain:.2f}x)")
        cells.append(f"{row['int8']['psnr_vs_fp32']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def int8_students_table(rows: list[dict[str, Any]], params: LatencyBenchParams) -> list[str]:
    """Trained students: fp32 and int8 exports side by side, quality against the task's test targets, the int8
    output against the fp32 output, and batch-1 ORT p50 per device."""
    head = [
        "student",
        "precision",
        "FID",
        "KID (± std)",
        "PSNR (dB)",
        "LPIPS",
        "LPIPS to fp32",
        "PSNR to fp32 (dB)",
        *[f"{d} ORT p50 (ms)" for d in params.devices],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        for precision in ("fp32", "int8"):
            q = row[precision]
            own = precision == "fp32"
            cells = [
                f"{row['task']}/{row['model']}",
                precision,
                f"{q['fid']:.1f}",
                f"{q['kid']:.4f} ± {q['kid_std']:.4f}",
                f"{q['psnr']:.2f}",
                f"{q['lpips']:.4f}",
                "-" if own else f"{row['lpips_vs_fp32']:.5f}",
                "-" if own else f"{row['psnr_vs_fp32']:.1f}",
            ]
            for device in params.devices:
                p50 = q["p50_ms"][device]
                gain = "" if own else f" ({row['fp32']['p50_ms'][device] / p50:.2f}x)"
                cells.append(f"{p50:.3f}{gain}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def int8_students_section(rows: list[dict[str, Any]], params: LatencyBenchParams) -> list[str]:
    """The report's section on trained students in int8 (empty without any)."""
    if not rows:
        return []
    sizes = sorted({row["image_size"] for row in rows})
    return [
        "",
        "## int8 on trained students (ONNX Runtime static QDQ against the fp32 export)",
        "",
        f"Each student's fp32 ONNX export and its int8 copy (calibrated on {rows[0]['calibration_images']} training "
        f"inputs of its task) run by ONNX Runtime on the task's {rows[0]['images']} test images at "
        f"{'/'.join(map(str, sizes))} px; outputs rounded to 8 bits before every metric. FID and KID against the real "
        "test targets, PSNR and LPIPS against the ground truth, and the int8 output against the fp32 output (the "
        "cost of quantization alone); the p50 of each file at batch 1, with int8's speed-up over fp32. 1-minute "
        "load average when measured: " + ", ".join(f"{row['load_average_1min']:.1f}" for row in rows) + ".",
        "",
        *int8_students_table(rows, params),
    ]


def widths_table(rows: list[dict[str, Any]], params: LatencyBenchParams) -> list[str]:
    base = {device: rows[0]["p50_ms"][device] for device in params.devices}
    head = ["kept widths", "GMACs", *[f"{d} {params.plan_backend} p50 (ms)" for d in params.devices]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        label = "as planned" if row["round_to"] == 1 else f"multiples of {row['round_to']}"
        cells = [label, f"{row['gmacs']:.3f}"]
        for device in params.devices:
            p50 = row["p50_ms"][device]
            cells.append(f"{p50:.2f} ({100 * (p50 / base[device] - 1):+.0f}%)" if row is not rows[0] else f"{p50:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_latency_vs_gmacs(results: dict[str, dict[str, dict[str, Any]]], params: LatencyBenchParams) -> None:
    """One panel per device: batch-1 p50 against GMACs, a line per teacher x runtime, the budgets dashed."""
    fig = Figure(figsize=(5.2 * len(params.devices), 4.2))
    axes = fig.subplots(1, len(params.devices), squeeze=False)[0]
    for ax, device in zip(axes, params.devices):
        for name, rows in results.items():
            for backend in params.backends:
                points = sorted(
                    (row["gmacs"], rec["p50_ms"])
                    for row in rows.values()
                    if "records" in row and (rec := _record(row, device, backend, 1)) is not None
                )
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, marker="o", label=f"{name} {_BACKEND_LABEL[backend]}")
        for budget in params.budgets_ms:
            ax.axhline(budget, color="gray", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("GMACs per image")
        ax.set_ylabel("p50 latency, batch 1 (ms)")
        ax.set_title(f"{device}, {params.image_size}x{params.image_size}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with io.atomic_path(params.plot) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def build_latency_report(
    results: dict[str, dict[str, dict[str, Any]]],
    params: LatencyBenchParams,
    notes: list[str],
    widths: dict[str, list[dict[str, Any]]] | None = None,
    int8_students: list[dict[str, Any]] | None = None,
) -> str:
    """Write reports/latency.md (and the plot) from ``results`` ({teacher: {row: row}}), the width comparison and
    the trained students' int8 comparison; returns the text."""
    loads = [
        row["load_average_1min"] for rows in results.values() for row in rows.values() if "load_average_1min" in row
    ]
    if loads:
        notes = [
            f"1-minute load average of the machine when each row finished: {min(loads):.1f} to {max(loads):.1f}"
            "; above the thread count, other work inflated the timings (and the measured peaks).",
            *notes,
        ]
    lines = [
        "# Latency at the paper's resolution",
        "",
        f"Generated by `alap bench-latency` (rows in {params.out_dir}); {params.image_size}x{params.image_size} "
        f"inputs, teachers untrained at reference size, students planned by `prune.target: latency` on "
        f"{params.plan_device} {params.plan_backend} for p50 budgets {params.budgets_ms} ms"
        + (f" and {params.teacher_fractions} of the teacher's p50 there" if params.teacher_fractions else "")
        + ". GMACs as the reports "
        "count them; % of peak uses executed MACs against the device's measured peak (alap.profile.roofline). "
        "No quality numbers: the ranking comes from a short condense of an untrained teacher.",
        *[line for note in notes for line in ("", note)],
    ]
    for name, rows in results.items():
        spec = params.teachers[name]
        depth = f"{spec.num_downs} downsamplings" if spec.kind == "unet" else f"{spec.n_blocks} blocks"
        lines += [
            "",
            f"## {name}: {spec.kind}, ngf {spec.ngf}, {depth}, {spec.norm} norm",
            "",
            *latency_table(rows, params),
            "",
            *efficiency_table(rows, params),
        ]
        int8 = int8_table(rows, params)
        if int8:
            lines += ["", *int8]
    if widths:
        lines += [
            "",
            f"## Kept widths rounded up to a multiple, at {params.widths_macs_x:g}x fewer MACs "
            f"({params.plan_backend}, batch 1)",
            "",
            f"Each p50 is the median of {params.widths_rounds} interleaved timing rounds; GMACs differ a little "
            "because rounding up keeps channels the MACs search then takes elsewhere.",
        ]
        for name, rows in widths.items():
            lines += ["", f"{name}:", "", *widths_table(rows, params)]
    lines += int8_students_section(int8_students or [], params)
    plot_latency_vs_gmacs(results, params)
    lines += ["", f"![latency vs GMACs]({params.plot.relative_to(params.report.parent).as_posix()})", ""]
    text = "\n".join(lines)
    io.write_text(params.report, text)
    return text
