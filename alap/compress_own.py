"""``alap compress``: a user's generator and image folder in, a compressed student and its numbers out.

The DVC pipeline needs a project (params.yaml, dvc.yaml, data under data/). A user who just wants their
``latest_net_G.pth`` smaller should not: this runs the same steps (alap.steps: import, condense, prune,
distill, evaluate, profile with ONNX export) for one task that it describes itself, in one output folder.
A killed run resumes: finished steps are skipped by their output files, and the training steps resume from their
checkpoints. The folder records the settings it was made with, so a rerun with other settings is refused
instead of mixing outputs of two configurations.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alap import io
from alap.compress.params import CondenseParams
from alap.config import DEVICE_PATTERN, Params, load_params
from alap.lock import output_lock
from alap.metrics.names import QUALITY, LatencyKey, Metric, metric
from alap.paths import LATENCY_CACHE, TaskPaths, latency_point_name

if TYPE_CHECKING:
    from alap.dist import World

log = logging.getLogger(__name__)

TRAINING_STEPS = ("condense", "distill")  # run by every process of a multi-process run
SETTINGS_FILE = "compress.json"
STATE_DIR = ".state"  # resume state and the lock, inside --out
RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class CompressRequest:
    """What the user asked for, as given on the command line (validated by :func:`check_request`)."""

    teacher: Path
    data: Path
    out: Path
    layout: str | None = None
    key: str | None = None
    reverse: Path | None = None
    dropout: bool | None = None
    sparsity: float | None = None
    macs_reduction: float | None = None
    latency_device: str | None = None
    p50_ms: float | None = None
    latency_backend: str = "onnxruntime"
    latency_cache: Path = LATENCY_CACHE
    load_size: int = 256
    crop_size: int | None = None
    params: Path | None = None
    condense_steps: int | None = None
    distill_steps: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    torch_home: Path = Path(".torch")
    task: str = "own"
    nproc: int | None = None


def detect_layout(root: Path) -> str:
    """The dataset layout of ``root`` from its folders (the names the reference code bases use)."""
    if (root / "trainA").is_dir():
        return "unpaired"
    if (root / "train" / "A").is_dir():
        return "paired"
    if (root / "train" / "mask").is_dir():
        raise ValueError(
            f"--data {root}: looks like a mask_image dataset (train/mask); it needs num_classes, "
            "which only params.yaml can give: use the DVC pipeline for it"
        )
    return "images"


def check_request(req: CompressRequest) -> None:
    """Every flag checked before any work; each problem is one ValueError naming the flag. The teacher files
    are read last (not yet matched), so that a damaged or foreign file is refused before ``--out`` is made."""
    if not req.teacher.is_file():
        raise ValueError(
            f"TEACHER {req.teacher}: "
            + ("is a directory; expected a .pth file" if req.teacher.is_dir() else "no such file")
        )
    if req.reverse is not None and not req.reverse.is_file():
        raise ValueError(f"--reverse {req.reverse}: no such file")
    if not req.data.is_dir():
        raise ValueError(f"--data {req.data}: not a folder of images")
    io.check_output(req.out, folder=True)
    if [req.sparsity, req.macs_reduction, req.p50_ms].count(None) != 2:
        raise ValueError(
            "give exactly one target: --sparsity S (fraction of MACs to remove, 0 <= S < 1), "
            "--macs-x N (N times fewer MACs, N > 1) or --p50-ms X with --latency-device D (a latency budget)"
        )
    if (req.p50_ms is None) != (req.latency_device is None):
        raise ValueError("--p50-ms X and --latency-device D (e.g. cpu-t2) go together: the budget holds on a device")
    if req.p50_ms is not None and not req.p50_ms > 0:
        raise ValueError(f"--p50-ms {req.p50_ms}: expected a positive budget in milliseconds")
    if req.latency_device is not None:
        from alap.compress.params import int8_on_cpu
        from alap.profile.devices import parse_device

        try:  # first: on a machine without CUDA, cuda0 would be refused as missing rather than as the wrong kind
            int8_on_cpu(req.latency_device, req.latency_backend)
        except ValueError as err:
            raise ValueError(f"--latency-backend {req.latency_backend}: {err}") from None
        try:
            parse_device(req.latency_device)
        except ValueError as err:
            raise ValueError(f"--latency-device {req.latency_device}: {err}") from None
    if req.sparsity is not None and not 0 <= req.sparsity < 1:
        raise ValueError(f"--sparsity {req.sparsity}: expected 0 <= S < 1 (the fraction of MACs to remove)")
    if req.macs_reduction is not None and not req.macs_reduction > 1:
        raise ValueError(f"--macs-x {req.macs_reduction}: expected a number > 1 (times fewer MACs)")
    for flag, value in (("--load-size", req.load_size), ("--crop-size", req.crop_size)):
        if value is not None and not 16 <= value <= 4096:  # the range of tasks.<name>.load_size/crop_size
            raise ValueError(f"{flag} {value}: expected a side of 16 to 4096 pixels")
    for flag, value in (
        ("--condense-steps", req.condense_steps),
        ("--distill-steps", req.distill_steps),
        ("--batch-size", req.batch_size),
        ("--processes", req.nproc),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value}: expected a positive integer")
    if req.crop_size is not None and req.crop_size > req.load_size:
        raise ValueError(f"--crop-size {req.crop_size}: must not exceed --load-size {req.load_size}")
    if not re.match(DEVICE_PATTERN, req.device):
        raise ValueError(f"--device {req.device}: expected auto, cpu, cuda or cuda:N")
    if req.params is not None and not req.params.is_file():
        raise ValueError(f"--params-file {req.params}: no such file")
    from alap.models.reference import read_generator_state  # torch, once the cheap checks have passed

    read_generator_state(req.teacher, req.key)
    if req.reverse is not None:
        read_generator_state(req.reverse)


def target_sparsity(req: CompressRequest) -> float | None:
    """The fraction of the teacher's MACs to remove (None for a latency budget)."""
    if req.p50_ms is not None:
        return None
    if req.sparsity is not None:
        return req.sparsity
    return round(1.0 - 1.0 / req.macs_reduction, 6)


def build_params(req: CompressRequest) -> Params:
    """One task made of the request, on top of ``--params`` (its training, compression and evaluation sections)
    or of the code defaults; the flags win over both."""
    raw: dict[str, Any] = {}
    if req.params is not None:
        raw = load_params(req.params).model_dump(mode="json")
    teacher = {
        "checkpoint": str(req.teacher),
        "key": req.key,
        "dropout": req.dropout,
        "reverse": None if req.reverse is None else str(req.reverse),
    }
    task = {
        "source": "folder",
        "layout": req.layout or detect_layout(req.data),
        "root": str(req.data),
        "teacher": teacher,
        "load_size": req.load_size,
        "crop_size": req.crop_size,
    }
    raw.update(
        profile_name="compress",
        device=req.device,
        run_tasks=[req.task],
        dvc=None,
        tasks={req.task: task},
        sweep={"sparsities": [] if req.p50_ms is not None else [target_sparsity(req)]},
    )
    prune = {k: v for k, v in raw.get("prune", {}).items() if k != "latency"}
    if req.p50_ms is None:
        raw["prune"] = {**prune, "target": "macs"}
    else:
        budget = {"device": req.latency_device, "backend": req.latency_backend, "p50_ms": req.p50_ms}
        given = raw.get("prune", {}).get("latency") or {}  # a params file's own budget settings (tolerance, batch)
        raw["prune"] = {**prune, "target": "latency", "latency": {**given, **budget}}
    if req.condense_steps is not None:
        steps = req.condense_steps
        warmup = min(raw.get("condense", {}).get("warmup_steps", CondenseParams().warmup_steps), steps)
        raw["condense"] = {**raw.get("condense", {}), "steps": steps, "warmup_steps": warmup}
    if req.distill_steps is not None:
        raw["distill"] = {**raw.get("distill", {}), "steps": req.distill_steps}
    if req.batch_size is not None:
        raw["train"] = {**raw.get("train", {}), "batch_size": req.batch_size}
    if req.nproc is not None:
        raw["dist"] = {**raw.get("dist", {}), "nproc": req.nproc}
    if req.params is None:  # CPU latency as deployed: one thread and every core
        from alap.profile.devices import cpu_cores

        raw["profile"] = {
            "devices": sorted({"cpu-t1", f"cpu-t{cpu_cores()}", "cuda0", *filter(None, [req.latency_device])}),
            "backends": ["torch", "onnxruntime"],
        }
    return Params.model_validate(raw)


def _claim_out_dir(out: Path, params: Params) -> None:
    """Record the settings in ``out``; refuse a folder made with other settings (its outputs would mix). ``dist``
    says how many processes compute, not what: a run may resume with another ``--processes``."""
    settings = params.model_dump(mode="json", exclude={"dist"})
    stamp = out / SETTINGS_FILE
    if stamp.is_file():
        before = json.loads(stamp.read_text())
        if before != settings:
            changed = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
            raise ValueError(
                f"--out {out}: holds a run made with other settings (sections {', '.join(changed)} "
                "differ); give another --out, or the same flags to resume it"
            )
        log.info("resuming the run in %s", out)
    io.write_json(stamp, settings)


def compress_own(req: CompressRequest) -> dict[str, Any] | None:
    """Run every step for ``req``; returns and writes (``out/results.json``) the teacher and student rows.

    In a multi-process run (``--processes``, alap/dist.py) every rank runs the training steps (condense, distill) and
    rank 0 alone the others, the ranks meeting after each step; rank 0 returns the rows, the others None."""
    from alap.dist import current_world  # torch, once the request is checked

    check_request(req)
    params = build_params(req)
    world = current_world()
    out = req.out
    out.mkdir(parents=True, exist_ok=True)
    # One run per --out: a second one refuses at once. Rank 0 holds the lock for a multi-process run.
    with output_lock(out / STATE_DIR, out, f"--out {out}") if world.is_main else contextlib.nullcontext():
        if world.is_main:
            _claim_out_dir(out, params)
        world.barrier()
        return _run_steps(req, params, out, world)


def _run_steps(req: CompressRequest, params: Params, out: Path, world: World) -> dict[str, Any] | None:
    """The steps not yet done in ``out`` (finished ones are skipped by their output files), then the results."""
    paths = TaskPaths(req.task, models=out / "models", reports=out / "reports", state=out / STATE_DIR)
    sparsity = target_sparsity(req)
    if sparsity is None:
        point = paths.model_dir / latency_point_name(params.prune.latency.device, params.prune.latency.p50_ms)
    else:
        point = paths.point_dir(sparsity)

    from alap.metrics.weights.provide import evaluation_targets, provision_weights
    from alap.steps import condense, distill, evaluate, profile, prune, teacher

    steps: list[tuple[str, Path, Callable[[], Any]]] = [
        ("import", paths.teacher, lambda: teacher.import_teacher(params, req.task, paths, req.torch_home)),
        ("condense", paths.condensed, lambda: condense.condense_task(params, req.task, paths, req.torch_home)),
        (
            "prune",
            point / "prune_report.json",
            lambda: prune.prune_point(params, req.task, sparsity, point, paths, req.latency_cache),
        ),
        (
            "distill",
            point / "distill_report.json",
            lambda: distill.distill_point(params, req.task, sparsity, point, paths),
        ),
    ]
    for model, model_dir in (("teacher", None), (point.name, point)):
        steps += [
            (
                f"evaluate {model}",
                paths.report_dir / model / "metrics.json",
                lambda m=model, d=model_dir: evaluate.evaluate_entry(
                    params, req.task, m, None, req.torch_home, d, paths
                ),
            ),
            (
                f"profile {model}",
                paths.report_dir / model / "latency.json",
                lambda m=model, d=model_dir: profile.profile_entry(params, req.task, m, d, paths),
            ),
        ]
    for name, output, run in steps:
        done = output.exists()
        world.barrier()  # every rank has looked before any writes: all take the same branch
        if done:
            log.info("%s: done before (%s)", name, output)
            continue
        log.info("%s ...", name)
        if name in TRAINING_STEPS:
            run()
        elif world.is_main:
            if name.startswith("evaluate"):
                # idempotent (only hashes when the files are there), and only the weights this evaluation loads
                provision_weights(req.torch_home, targets=evaluation_targets(params.evaluate.lpips_net))
            run()
        world.barrier()  # this step's outputs are written before any rank looks for the next one's
    if not world.is_main:
        return None
    results = {
        "task": req.task,
        "sparsity": sparsity,
        "teacher_file": str(req.teacher),
        "data": str(req.data),
        "student": str(point / "student.pt"),
        "onnx": str(paths.report_dir / point.name / "model.onnx"),
        "rows": [_row(paths, "teacher"), _row(paths, point.name)],
    }
    io.write_json(out / RESULTS_FILE, results)
    return results


def _row(paths: TaskPaths, model: str) -> dict[str, Any]:
    metrics = json.loads((paths.report_dir / model / "metrics.json").read_text())
    latency = json.loads((paths.report_dir / model / "latency.json").read_text())
    return {
        "model": model,
        **{k: v for k, v in metrics.items() if isinstance(v, (int, float)) or v is None},
        **{k: v for k, v in latency.items() if k.startswith("latency.")},
    }


def results_table(results: dict[str, Any]) -> str:
    """The rows as a small Markdown table: every measured quality metric, GMACs and p50 per device/backend."""
    rows = results["rows"]
    quality = [m for m in QUALITY if any(r.get(m.key) is not None for r in rows)]
    latency = [LatencyKey.parse(k) for k in sorted(rows[0]) if k.startswith("latency.") and k.endswith(".p50_ms")]
    header = [
        "model",
        *[m.shown_heading for m in quality],
        metric("gmacs").heading,
        *[f"{k.label} p50 (ms)" for k in latency],
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            r["model"],
            *[m.shown(r) or "-" for m in quality],
            _fmt(metric("gmacs"), r["gmacs"]),
            *[_fmt(metric(k.p50), r.get(k.p50)) for k in latency],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    teacher, student = rows
    lines.append(
        f"\n{teacher['gmacs'] / student['gmacs']:.1f}x fewer MACs; student: {results['student']}, "
        f"ONNX: {results['onnx']}"
    )
    return "\n".join(lines)


def _fmt(entry: Metric, value: float | None) -> str:
    return "-" if value is None else format(value, entry.spec)
