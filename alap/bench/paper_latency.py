"""``alap bench-latency``: paper-size teachers and the students the latency planner picks, timed at 256 px.

ALAP-AE's claim is device efficiency, so this measures what a deployment would see: the reference-size U-Net
(``unet_256``) and ResNet (``resnet_9blocks``) at the paper's resolution on each CPU spec and runtime, and for
each p50 budget the student that ``prune.target: latency`` plans on the budget's device. The teachers are built
untrained (latency depends on shapes, not on weight values); the planner's ranking comes from a *short* condense
(``condense_steps`` against the teacher's own outputs on synthetic faces), which is enough to order channels by
scale factor but says nothing about the students' image quality: no row here has a quality number.

Every row is one JSON file in ``out_dir/<teacher>/`` written when the row is done, and the condensed network is a
checkpoint there, so a killed run resumes at the first missing row; candidate timings are cached
(alap.profile.candidates). The report (alap.bench.latency_report) reads only these files.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alap import io
from alap.bench.latency_params import LatencyBenchParams, PaperTeacher
from alap.compress.condense import condense
from alap.compress.latency_plan import BudgetUnreachable
from alap.compress.params import CondenseParams, LatencyTarget, PruneParams
from alap.compress.prune import prune
from alap.config import Params
from alap.data.batches import BatchStream
from alap.data.faces import draw_face, render_face
from alap.metrics.cost import count_gmacs, count_params_m
from alap.models import arch_of, build_generator, default_arch, load_checkpoint, save_checkpoint
from alap.objectives import TeacherObjective
from alap.profile.candidates import CandidateTimer
from alap.profile.export import export_onnx
from alap.profile.int8_quality import int8_quality
from alap.profile.latency import measure_latency, profile_model
from alap.profile.quantize import int8_output_cost, quantize_int8

log = logging.getLogger(__name__)

TEACHER_ROW = "teacher"
WIDTHS_FILE = "widths.json"
INT8_SUFFIX = ".int8.json"
INT8_STUDENTS_DIR = "int8_students"


def budget_row(p50_ms: float) -> str:
    """``p50<=33.0ms``: the row of the student planned for a budget."""
    return f"p50<={float(p50_ms)}ms"


def row_budgets(params: LatencyBenchParams, teacher: dict[str, Any] | None) -> dict[str, float | None]:
    """Every row's name and p50 budget (None for the teacher): the absolute budgets, then the fractions of the
    teacher's p50 on the plan device as measured in this run (once the teacher row exists)."""
    budgets: dict[str, float | None] = {TEACHER_ROW: None, **{budget_row(b): b for b in params.budgets_ms}}
    plan = teacher and next(
        (
            r
            for r in teacher["records"]
            if (r["device"], r["backend"], r["batch_size"]) == (params.plan_device, params.plan_backend, 1)
        ),
        None,
    )
    if plan:
        budgets.update({f"p50<={f}xteacher": round(f * plan["p50_ms"], 3) for f in params.teacher_fractions})
    return budgets


def face_inputs(params: LatencyBenchParams) -> torch.Tensor:
    """``condense_images`` synthetic face images at the benchmark's size, in [-1, 1]: the condense's inputs."""
    rng = np.random.default_rng(params.seed)
    images = [render_face(draw_face(rng, params.image_size)) for _ in range(params.condense_images)]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1.0


def condensed_teacher(name: str, spec: PaperTeacher, params: LatencyBenchParams, inputs: torch.Tensor) -> nn.Module:
    """The teacher after a short condense against its own outputs (``out_dir/<name>/condensed.pt``, resumable)."""
    folder = params.out_dir / name
    path = folder / "condensed.pt"
    if path.is_file():
        model, _ = load_checkpoint(path)
        return model
    torch.manual_seed(params.seed)
    arch = default_arch(spec.kind, 3, 3, ngf=spec.ngf, norm=spec.norm, num_downs=spec.num_downs, n_blocks=spec.n_blocks)
    teacher = build_generator(arch).eval()
    settings = CondenseParams(
        steps=params.condense_steps,
        warmup_steps=min(5, params.condense_steps),
        sparsity_weight=params.sparsity_weight,
        checkpoint_every=max(1, params.condense_steps // 3),
    )
    dataset = [{"A": image} for image in inputs]
    log.info("%s: condensing the untrained %s for %d steps at %d px", name, spec.kind, settings.steps, inputs.shape[-1])
    result = condense(
        teacher,
        arch,
        lambda g: TeacherObjective(g, {"T": copy.deepcopy(teacher)}, settings.lr, 0.5, "lsgan", lambda_l1=100.0),
        BatchStream(dataset, batch_size=1, seed=params.seed, device=torch.device("cpu")),
        settings,
        settings.report_threshold,
        inputs[:1],
        folder / "condense_state.pt",
        folder / "scale_factors.csv",
        folder / "scale_factors.png",
    )
    save_checkpoint(path, result.model, result.arch, {"role": "condensed", "bench": "latency", "teacher": name})
    return result.model


def measure_row(model: nn.Module, name: str, params: LatencyBenchParams) -> dict[str, Any]:
    """MACs, params and latency records of ``model``: batch 1 on every device x backend, and onnxruntime at
    ``throughput_batch`` for images/s."""
    shape = (3, params.image_size, params.image_size)
    timing = {"warmup": params.warmup, "min_repeats": params.min_repeats, "min_seconds": params.min_seconds}
    single = profile_model(model, shape, params.devices, list(params.backends), [1], name=name, **timing)
    batch = [params.throughput_batch]
    batched = profile_model(model, shape, params.devices, ["onnxruntime"], batch, name=name, **timing)
    return {
        "gmacs": count_gmacs(model, (1, *shape)),
        "executed_gmacs": single["executed_gmacs"],
        "params_m": count_params_m(model),
        "records": single["records"] + batched["records"],
        "skipped": {**single["skipped"], **batched["skipped"]},
    }


def run_teacher(name: str, spec: PaperTeacher, params: LatencyBenchParams) -> dict[str, dict[str, Any]]:
    """Every row of one teacher (measured or read back from an earlier run): ``{row name: row}``."""
    folder = params.out_dir / name
    rows: dict[str, dict[str, Any]] = {}
    inputs = face_inputs(params)
    condensed = condensed_teacher(name, spec, params, inputs)

    def row_for(row_name: str, budget: float | None) -> dict[str, Any]:
        path = folder / f"{row_name}.json"
        if path.is_file():
            log.info("%s %s: measured before (%s)", name, row_name, path)
            return json.loads(path.read_text())
        log.info("%s %s ...", name, row_name)
        if budget is None:
            row = {"row": row_name, **measure_row(condensed, f"{name}-{row_name}", params)}
        else:
            row = _student_row(name, row_name, budget, condensed, inputs, params)
        row["load_average_1min"] = os.getloadavg()[0]  # other work on the machine inflates every number here
        io.write_json(path, row)
        return row

    rows[TEACHER_ROW] = row_for(TEACHER_ROW, None)
    budgets = row_budgets(params, rows[TEACHER_ROW])  # with the budgets relative to the teacher's p50
    for row_name, budget in budgets.items():
        if budget is not None:
            rows[row_name] = row_for(row_name, budget)
    if params.int8:
        for row_name, budget in budgets.items():
            path = folder / f"{row_name}{INT8_SUFFIX}"
            if "records" in rows[row_name] and not path.is_file():
                log.info("%s %s: int8 ...", name, row_name)
                model = condensed if budget is None else _student(name, row_name, budget, condensed, inputs, params)
                io.write_json(path, int8_row(model, inputs, params))
    widths = folder / WIDTHS_FILE
    if not widths.is_file() and params.round_to:
        log.info("%s: kept widths rounded to %s at %gx fewer MACs ...", name, params.round_to, params.widths_macs_x)
        io.write_json(widths, width_rows(condensed, inputs, params))
    return rows


def int8_row(model: nn.Module, inputs: torch.Tensor, params: LatencyBenchParams) -> dict[str, Any]:
    """``model`` quantized to int8 (calibrated on the condense images): batch-1 onnxruntime p50/p90 on every
    device, and its output against the fp32 model's on other synthetic faces."""
    shape = (3, params.image_size, params.image_size)
    held_out = face_inputs(params.model_copy(update={"seed": params.seed + 1, "condense_images": 4}))
    timing = {"warmup": params.warmup, "min_repeats": params.min_repeats, "min_seconds": params.min_seconds}
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_onnx(copy.deepcopy(model).cpu(), Path(scratch) / "fp32.onnx", (1, *shape))
        int8 = quantize_int8(fp32, Path(scratch) / "int8.onnx", inputs)
        records = [
            measure_latency(int8, device, "onnxruntime", 1, shape, measure_peak=False, **timing)
            for device in params.devices
        ]
        cost = int8_output_cost(fp32, int8, held_out)
    return {"records": records, **cost, "load_average_1min": os.getloadavg()[0]}


def _student(
    name: str, row_name: str, budget: float, condensed: nn.Module, inputs: torch.Tensor, params: LatencyBenchParams
) -> nn.Module:
    """The student planned for ``budget``: saved beside its row, or planned again (from the cached timings)."""
    path = params.out_dir / name / f"{row_name}.pt"
    if path.is_file():
        return load_checkpoint(path)[0]
    return _plan_student(name, row_name, budget, condensed, inputs, params)[0]


def _plan_student(
    name: str, row_name: str, budget: float, condensed: nn.Module, inputs: torch.Tensor, params: LatencyBenchParams
) -> tuple[nn.Module, dict[str, Any], CandidateTimer]:
    """Plan the student for ``budget`` on the plan device and save it as ``<row>.pt``; (student, prune report,
    timer). Raises BudgetUnreachable when no student meets the budget."""
    target = LatencyTarget(device=params.plan_device, backend=params.plan_backend, p50_ms=budget)
    settings = PruneParams(target="latency", latency=target, min_width=params.min_width, min_width_fraction=0.0)
    timing = {"warmup": params.warmup, "min_repeats": params.min_repeats, "min_seconds": params.min_seconds}
    timer = CandidateTimer(target, tuple(inputs.shape[1:]), cache_dir=params.cache_dir, **timing)
    result = prune(condensed, arch_of(condensed), settings, inputs, timer=timer)
    meta = {"role": "student", "bench": "latency", "teacher": name, "budget_ms": budget}
    save_checkpoint(params.out_dir / name / f"{row_name}.pt", result.student, result.arch, meta)
    return result.student, result.report, timer


def width_rows(condensed: nn.Module, inputs: torch.Tensor, params: LatencyBenchParams) -> list[dict[str, Any]]:
    """Students at ``widths_macs_x`` fewer MACs with kept widths rounded up to each of ``round_to``, timed in the
    plan's runtime (``plan_backend``: a GPU may have no other) on every device. Differences of a few percent
    matter here and the machine is shared, so the variants are timed in interleaved rounds (a burst of other work
    hits all of them alike) and each p50 is the median over the rounds."""
    sparsity = round(1.0 - 1.0 / params.widths_macs_x, 6)
    students = {}
    for multiple in params.round_to:
        settings = PruneParams(
            target="macs", sparsity=sparsity, round_to=multiple, min_width=params.min_width, min_width_fraction=0.0
        )
        result = prune(condensed, arch_of(condensed), settings, inputs)
        students[multiple] = result
    shape = tuple(inputs.shape[1:])
    timers = {
        device: CandidateTimer(
            LatencyTarget(device=device, backend=params.plan_backend, p50_ms=1.0), shape, cache_dir=params.cache_dir
        )
        for device in params.devices
    }
    p50s: dict[tuple[int, str], list[float]] = {}
    for _ in range(params.widths_rounds):
        for multiple, result in students.items():
            for device, timer in timers.items():
                p50s.setdefault((multiple, device), []).append(timer.measure(copy.deepcopy(result.student))["p50_ms"])
    return [
        {
            "round_to": multiple,
            "gmacs": result.report["gmacs_after"],
            "params_m": result.report["params_m_after"],
            "widths": result.arch["widths"],
            "p50_ms": {device: float(np.median(p50s[(multiple, device)])) for device in params.devices},
            "p50_ms_rounds": {device: p50s[(multiple, device)] for device in params.devices},
            "load_average_1min": os.getloadavg()[0],
        }
        for multiple, result in students.items()
    ]


def _student_row(
    name: str, row_name: str, budget: float, condensed: nn.Module, inputs: torch.Tensor, params: LatencyBenchParams
) -> dict[str, Any]:
    try:
        student, report, timer = _plan_student(name, row_name, budget, condensed, inputs, params)
    except BudgetUnreachable as err:
        log.warning("%s %s: %s", name, row_name, err)
        return {"row": row_name, "budget_ms": budget, "unreachable": str(err)}
    return {
        "row": row_name,
        "budget_ms": budget,
        "plan": {k: v for k, v in report["latency"].items() if k != "search"},
        "channels_removed_fraction": report["channels_removed_fraction"],
        "widths": arch_of(student)["widths"],
        "cache": {"file": str(timer.cache_file), "hits": timer.hits, "measured": timer.measured},
        **measure_row(student, f"{name}-{row_name}", params),
    }


def bench_latency(params: LatencyBenchParams, teachers: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run (or resume) every teacher's rows; returns ``{teacher: {row: row}}``."""
    names = list(teachers or params.teachers)
    unknown = [n for n in names if n not in params.teachers]
    if unknown:
        raise ValueError(f"--teacher {unknown}: not in the settings' teachers {sorted(params.teachers)}")
    return {name: run_teacher(name, params.teachers[name], params) for name in names}


def read_rows(params: LatencyBenchParams) -> dict[str, dict[str, Any]]:
    """The rows on disk, per teacher, in the settings' order (missing ones left out)."""
    found: dict[str, dict[str, Any]] = {}
    for name in params.teachers:
        rows: dict[str, Any] = {}
        teacher_file = params.out_dir / name / f"{TEACHER_ROW}.json"
        teacher = json.loads(teacher_file.read_text()) if teacher_file.is_file() else None
        for row_name in row_budgets(params, teacher):
            path: Path = params.out_dir / name / f"{row_name}.json"
            if path.is_file():
                rows[row_name] = json.loads(path.read_text())
            int8 = params.out_dir / name / f"{row_name}{INT8_SUFFIX}"
            if row_name in rows and int8.is_file():
                rows[row_name]["int8"] = json.loads(int8.read_text())
        if rows:
            found[name] = rows
    return found


def int8_students(
    params: LatencyBenchParams, pipeline: Params, torch_home: Path, models: Path = Path("models")
) -> list[dict[str, Any]]:
    """Each of ``params.int8_students`` scored in fp32 and int8 (alap.profile.int8_quality) and timed on
    ``params.devices`` with the pipeline's profile settings; one JSON file per student in ``out_dir/int8_students/``
    (measured once: a rerun reads it)."""
    rows = []
    for student in params.int8_students:
        path = params.out_dir / INT8_STUDENTS_DIR / f"{student.task}-{student.model}.json"
        if not path.is_file():
            log.info("%s/%s: fp32 and int8 exports on its test split ...", student.task, student.model)
            profile = pipeline.profile  # timed as the pipeline's profile stage times its models
            timing = {"warmup": profile.warmup, "min_repeats": profile.min_repeats, "min_seconds": profile.min_seconds}
            row = int8_quality(
                pipeline,
                student.task,
                student.model,
                params.devices,
                torch_home,
                models,
                params.int8_calibration_images,
                timing,
            )
            io.write_json(path, {**row, "load_average_1min": os.getloadavg()[0]})
        rows.append(json.loads(path.read_text()))
    return rows


def read_int8_students(params: LatencyBenchParams) -> list[dict[str, Any]]:
    """The int8 student comparisons on disk, in the settings' order."""
    files = [params.out_dir / INT8_STUDENTS_DIR / f"{s.task}-{s.model}.json" for s in params.int8_students]
    return [json.loads(path.read_text()) for path in files if path.is_file()]


def read_widths(params: LatencyBenchParams) -> dict[str, list[dict[str, Any]]]:
    """The width comparison of every teacher that has one on disk."""
    files = {name: params.out_dir / name / WIDTHS_FILE for name in params.teachers}
    return {name: json.loads(path.read_text()) for name, path in files.items() if path.is_file()}
