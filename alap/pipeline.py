"""The pipeline's steps as plain functions of validated params: one implementation for DVC stages, Prefect
flows, the ``alap`` CLI and the tests."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from alap import io
from alap.compress.condense import condense
from alap.compress.distill import distill
from alap.compress.prune import prune
from alap.config import Params
from alap.data.batches import endless_batches, to_device
from alap.data.synthetic import generate_task
from alap.device import resolve_device
from alap.gan_aux import save_aux, stage_aux
from alap.metrics.baselines import generator_psnr, mean_image_psnr
from alap.models import arch_of, save_checkpoint
from alap.models.reference import import_generator
from alap.objectives import make_objective
from alap.paths import TaskPaths
from alap.profile.latency import profile_model
from alap.task import Task
from alap.train import params_key

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def prepare_data(params: Params, task_name: str) -> None:
    """Generate a synthetic task into its root, or validate a folder dataset where it is (every split; the
    folder is only read)."""
    task = Task.from_params(params, task_name)
    if task.params.source == "synthetic":
        d = params.data
        generate_task(task_name, task.params.root, d.image_size, d.n_train, d.n_val, d.n_test, params.seed)
        log.info("generated %s into %s", task_name, task.params.root)
    for split in SPLITS:
        dataset = task.dataset(split, for_eval=split == "test")
        log.info("%s/%s: %d items", task_name, split, len(dataset))


def import_teacher(params: Params, task_name: str, paths: TaskPaths | None = None) -> dict:
    """The ``import@<task>`` step: the task's teacher file becomes ``teacher.pt`` (and CycleGAN's reverse
    generator, when given, ``teacher_aux.pt``), as if ``train@<task>`` had trained them; nothing is trained."""
    task = Task.from_params(params, task_name)
    spec = task.params.teacher
    if spec is None:
        raise ValueError(
            f"tasks.{task_name} names no teacher file (tasks.{task_name}.teacher.checkpoint); "
            f"its teacher is trained by train@{task_name}"
        )
    paths = paths or TaskPaths(task_name)
    options = {"kind": spec.kind, "norm": spec.norm, "norm_affine": spec.norm_affine, "dropout": spec.dropout}
    teacher, meta = import_generator(spec.checkpoint, task=task_name, key=spec.key, **options)
    task.check_fits(arch_of(teacher), spec.checkpoint)
    aux, archs = {}, {}
    if spec.reverse is not None:
        if task.objective_kind != "cycle":
            raise ValueError(
                f"tasks.{task_name}.teacher.reverse: only unpaired (CycleGAN) tasks use a reverse "
                f"generator; layout {task.params.layout!r} has none"
            )
        reverse, _ = import_generator(spec.reverse, task=task_name, key=spec.reverse_key, **options)
        task.check_fits(arch_of(reverse), spec.reverse, task.channels[::-1])
        aux["G_B"], archs["G_B"] = reverse, arch_of(reverse)
    record = {
        "task": task_name,
        **{k: v for k, v in meta.items() if k != "task"},
        "reverse_file": None if spec.reverse is None else str(spec.reverse),
    }
    if task.params.paired:
        device = resolve_device(params.device)
        test_set = task.dataset("test", for_eval=True)
        record["psnr_test"] = generator_psnr(teacher.to(device), test_set, device)
        record["psnr_mean_image"] = mean_image_psnr(task.dataset("train", for_eval=True).real_targets(), test_set)
        teacher.cpu()
    save_checkpoint(
        paths.teacher, teacher, arch_of(teacher), {**meta, "role": "teacher", "image_size": task.image_size}
    )
    save_aux(paths.teacher_aux, task_name, archs, aux)
    io.write_json(paths.teacher_source, record)
    log.info(
        "imported %s as the %s teacher (%s)%s",
        spec.checkpoint,
        task_name,
        arch_of(teacher)["kind"],
        "" if spec.reverse is None else f", with the reverse generator {spec.reverse}",
    )
    return record


def _example_inputs(task: Task, device: torch.device, count: int = 16) -> torch.Tensor:
    """A batch of real validation inputs: traces the graph, probes removed channels, checks outputs."""
    loader = DataLoader(task.dataset("val"), batch_size=count)
    return next(iter(loader))["A"].to(device)


def condense_task(params: Params, task_name: str, paths: TaskPaths | None = None) -> dict:
    """Condense the trained teacher of ``task_name`` into ``condensed.pt`` (+ scale-factor table and plot)."""
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    device = resolve_device(params.device)
    torch.manual_seed(params.seed)
    teacher, teacher_meta = task.load_generator(paths.teacher, device)
    aux = stage_aux(task, params, arch_of(teacher), paths, device)
    if task.objective_kind == "teacher":
        aux["T"] = teacher  # no targets: condensing follows the imported teacher's own outputs
    batches = endless_batches(task.dataset("train"), task.train.batch_size, params.seed + 1, device)
    key = params_key(paths.teacher, params.condense, task.train)
    result = condense(
        teacher,
        arch_of(teacher),
        lambda g: make_objective(task.objective_kind, g, aux, task.train),
        batches,
        params.condense,
        params.condense.report_threshold,
        _example_inputs(task, device),
        state_path=paths.resume_state("condense", key),
        table_path=paths.report_dir / "condense" / "scale_factors.csv",
        plot_path=paths.report_dir / "condense" / "scale_factors.png",
    )
    below = sum(row["below_threshold"] for row in result.table)
    total = sum(row["width"] for row in result.table)
    meta = {
        "task": task_name,
        "role": "condensed",
        "steps": params.condense.steps,
        "channels_below_threshold": below,
        "channels": total,
    }
    # The wall time goes to the report only: in the checkpoint it would change the bytes of identical weights
    # on every rerun, and DVC would rerun every prune stage downstream.
    save_checkpoint(paths.condensed, result.model, result.arch, meta)
    report = {**meta, "wall_s": round(result.wall_s, 1)}
    io.write_json(paths.condense_report, report)
    log.info(
        "condensed %s in %.0f s: %d of %d channels below threshold %g",
        task_name,
        result.wall_s,
        below,
        total,
        params.condense.report_threshold,
    )
    return report


def prune_point(params: Params, task_name: str, sparsity: float, out_dir: Path, paths: TaskPaths | None = None) -> dict:
    """Prune the condensed network of ``task_name`` at ``sparsity`` into ``out_dir/pruned.pt`` (+ report JSON).

    ``paths`` locates the condensed network (default: the DVC layout); a sweep passes its own per-run layout.
    """
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    device = resolve_device(params.device)
    settings = params.prune.model_copy(update={"sparsity": sparsity})
    condensed, _ = task.load_generator(paths.condensed, device)
    started = time.perf_counter()
    result = prune(condensed, arch_of(condensed), settings, _example_inputs(task, device))
    report = {**result.report, "sparsity": sparsity, "wall_s": round(time.perf_counter() - started, 2)}
    save_checkpoint(
        out_dir / "pruned.pt",
        result.student,
        result.arch,
        {"task": task_name, "role": "pruned", "sparsity": sparsity, "prune": settings.model_dump()},
    )
    io.write_json(out_dir / "prune_report.json", report)
    return report


TEACHER_FILES = {"condensed": "condensed", "original": "teacher"}


def distill_point(
    params: Params, task_name: str, sparsity: float, point_dir: Path, paths: TaskPaths | None = None
) -> dict:
    """Fine-tune ``point_dir/pruned.pt`` from the teacher chosen in params into ``point_dir/student.pt``."""
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    device = resolve_device(params.device)
    torch.manual_seed(params.seed)
    student, pruned_meta = task.load_generator(point_dir / "pruned.pt", device)
    choice = params.distill.teacher
    teacher_path = point_dir / "pruned.pt" if choice == "pruned" else getattr(paths, TEACHER_FILES[choice])
    teacher, _ = task.load_generator(teacher_path, device)
    discriminator = None
    if params.distill.lambda_gan > 0:
        if not task.params.has_targets:
            raise ValueError(
                f"distill.lambda_gan > 0 needs real target images; task {task_name!r} (layout images) has "
                "none: set distill.lambda_gan: 0"
            )
        aux = stage_aux(task, params, arch_of(teacher), paths, device)
        discriminator = aux["D"] if task.params.paired else aux["D_A"]
    batches = endless_batches(task.dataset("train"), task.train.batch_size, params.seed + 2, device)
    val_batches = list(_batches_of(task.dataset("val"), params.distill.val_batch_size, device))
    key = params_key(point_dir / "pruned.pt", teacher_path, params.distill, task.train.batch_size)
    result = distill(
        student,
        teacher,
        batches,
        val_batches,
        params.distill,
        task.params.paired,
        _example_inputs(task, device),
        paths.resume_state(f"distill-{point_dir.name}", key),
        discriminator=discriminator,
    )
    report = {
        "task": task_name,
        "sparsity": sparsity,
        "teacher": choice,
        "wall_s": round(result.wall_s, 1),
        "best_step": result.best_step,
        "val_psnr_best": result.best_psnr,
        "val_psnr_before": result.start_psnr,
        "val_psnr_teacher": result.teacher_psnr,
        "validation": result.validation,
    }
    save_checkpoint(
        point_dir / "student.pt",
        result.student,
        arch_of(result.student),
        {
            **pruned_meta,
            "role": "student",
            "distill": params.distill.model_dump(mode="json"),
            "best_step": result.best_step,
        },
    )
    io.write_json(point_dir / "distill_report.json", report)
    return report


def _batches_of(dataset, batch_size: int, device: torch.device):
    for batch in DataLoader(dataset, batch_size=batch_size):
        yield to_device(batch, device)


def model_checkpoint(
    task_name: str, model_name: str, point_dir: Path | None = None, paths: TaskPaths | None = None
) -> Path:
    """The checkpoint behind a report row: ``teacher``, ``condensed``, or a sweep point's ``student.pt``."""
    paths = paths or TaskPaths(task_name)
    if model_name in ("teacher", "condensed"):
        return getattr(paths, model_name)
    return (point_dir or paths.model_dir / model_name) / "student.pt"


def evaluate_entry(
    params: Params,
    task_name: str,
    model_name: str,
    sparsity: float | None,
    torch_home: Path,
    point_dir: Path | None = None,
    paths: TaskPaths | None = None,
) -> dict:
    """Evaluate one model of a task into ``<paths.reports>/<task>/<model>/`` (default ``reports/...``)."""
    # Imported here: pytorch-fid pulls in torchvision (and torch._dynamo through it), seconds of start-up that
    # every other stage process would otherwise pay.
    from alap.evaluate import evaluate_model

    paths = paths or TaskPaths(task_name)
    return evaluate_model(
        params,
        task_name,
        model_name,
        model_checkpoint(task_name, model_name, point_dir, paths),
        paths.teacher,
        paths.report_dir / model_name,
        torch_home,
        sparsity=sparsity,
        real_cache=paths.real_features,
    )


def profile_entry(
    params: Params, task_name: str, model_name: str, point_dir: Path | None = None, paths: TaskPaths | None = None
) -> dict:
    """Time one model on every configured device x backend; ONNX file and latency JSON beside its reports."""
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    model, _ = task.load_generator(model_checkpoint(task_name, model_name, point_dir, paths))
    input_nc, _ = task.channels
    shape = (input_nc, task.image_size, task.image_size)
    return profile_into(params, model, shape, paths.report_dir / model_name, task_name, model_name)


def profile_into(
    params: Params,
    model: torch.nn.Module,
    shape: tuple[int, int, int],
    out_dir: Path,
    task_name: str,
    model_name: str,
    progress: bool = True,
) -> dict:
    """Time ``model`` on ``params.profile``'s devices x backends x batch sizes; write the ONNX file and
    ``latency.json`` into ``out_dir``; return :func:`profile_model`'s result. The profile stage and the benchmark
    both measure this way."""
    p = params.profile
    result = profile_model(
        model,
        shape,
        p.devices,
        p.backends,
        p.batch_sizes,
        onnx_dir=out_dir,
        warmup=p.warmup,
        min_repeats=p.min_repeats,
        min_seconds=p.min_seconds,
        name="model",
        progress=progress,
    )
    peaks = {f"{r['device']}.{r['backend']}": r["peak_gflops"] for r in result["records"]}
    io.write_json(
        out_dir / "latency.json",
        {
            **result["metrics"],
            "records": result["records"],
            "peak_gflops": peaks,
            "skipped": result["skipped"],
            "onnx_max_abs_diff": result["onnx_max_abs_diff"],
            "task": task_name,
            "model": model_name,
        },
    )
    return result
