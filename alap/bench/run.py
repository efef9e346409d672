"""Run the benchmark of one task: every method at every MACs budget with every seed, evaluated and profiled like the
pipeline's students, into ``<out_dir>/<task>/`` (one folder per budget, method and seed) plus ``results.json``.

The benchmark owns its teacher and condensed network (``<out_dir>/<task>/teacher.pt``, ``condensed.pt``, and
the synthetic data under ``<out_dir>/<task>/data``), made exactly as ``alap train`` / ``alap condense`` make them
from the same params: so it runs for any task of params.yaml, also one the pipeline's ``run_tasks`` leave out
(the demo leaves out the CycleGAN task), and DVC tracks it as one output per task. They are remade when what
they depend on changes (``upstream.json``), which wipes the task folder: every row depends on them.

The unit of work is one task x budget x method x seed: each finished unit writes ``row.json`` with a key of
everything it depends on, so an interrupted benchmark continues where it stopped (unfinished training resumes
from its checkpoint in ``.alap/state/bench``) and a changed setting recomputes only the units it concerns. Every
finished row also goes into the task's ledger (:class:`RowLedger`), a file in git, so that a benchmark cut off
by the end of a session continues in a fresh clone, which has no ``<out_dir>``. The
seed moves fine-tuning's data order, initialisation (adapters, discriminators, ``uniform``'s network) and noise;
the landed student of a budget is the same for every seed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from alap import io
from alap.bench.budget import BudgetMissed
from alap.bench.finetune import TuneResult, finetune_on_objective, train_from_scratch
from alap.bench.methods import METHODS, Method, more_feature_layers
from alap.bench.params import BenchParams
from alap.bench.students import Originals, Student, land_student
from alap.compress.distill import distill
from alap.compress.features import feature_modules, feature_names
from alap.compress.params import DistillParams, PruneParams
from alap.config import Params
from alap.data.batches import endless_batches, to_device
from alap.device import resolve_device
from alap.errors import UserError
from alap.evaluate import evaluate_model
from alap.gan_aux import load_aux
from alap.loop import params_key
from alap.metrics.fid import InceptionFeatures
from alap.metrics.names import METRICS
from alap.models import arch_of, build_generator, load_checkpoint, save_checkpoint
from alap.paths import DEFAULT_STATE, TaskPaths
from alap.selection import ValFid, val_fid_validator
from alap.steps.condense import condense_task
from alap.steps.data import prepare_data
from alap.steps.profile import profile_into
from alap.task import Task
from alap.train import build_gan, train_teacher

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
ROW_FILE = "row.json"
UPSTREAM_FILE = "upstream.json"
REFERENCES = ("teacher", "condensed")
# The core metrics (docs/architecture.md), which every benchmarked task measures (its tasks have targets): a row's
# quality and cost.
RECORDED_METRICS = tuple(m.key for m in METRICS.values() if m.core)
# The uncertainty of a row's quality metrics (docs/architecture.md contracts), recorded where evaluate writes them.
UNCERTAINTY = ("fid_ci_low", "fid_ci_high", "kid_std")


def budget_name(budget: float) -> str:
    """Folder and run-name form of a budget: ``b4``, ``b8``, ``b2.5``."""
    return f"b{budget:g}"


@dataclass
class TaskBench:
    """Everything the methods of one task share, loaded once."""

    params: Params
    bench: BenchParams
    task: Task
    device: torch.device
    paths: TaskPaths
    out_dir: Path
    torch_home: Path
    originals: Originals
    aux: dict[str, nn.Module]
    teacher_wall_s: float
    condense_wall_s: float
    val_batches: list[dict[str, Any]]
    identity: str
    more_layers: list[str]  # the feature layers of 'alap_more_features' for this teacher
    ledger: RowLedger

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.originals.example_input.shape[1:])  # type: ignore[return-value]


def bench_paths(bench: BenchParams, task_name: str) -> TaskPaths:
    """Where the benchmark keeps the teacher and condensed network of a task: inside its own task folder.

    Its resume checkpoints live apart from the pipeline's too. A teacher trained by both is the same file to the
    byte, so a shared folder would let the benchmark "resume" the pipeline's finished condense run in seconds and
    report that as the time condensing takes.
    """
    pipeline = TaskPaths(task_name)
    out = Path(bench.out_dir)
    return dataclasses.replace(
        pipeline, models=out, reports=out / task_name / "pipeline", state=DEFAULT_STATE / "bench"
    )


def bench_params(params: Params, bench: BenchParams, task_name: str) -> Params:
    """``params`` with a synthetic task generated under the benchmark's task folder with ``bench.test_images``
    test images (folder datasets stay put, with their own test split), and fp32 only: the methods are compared as
    trained (``quantize`` is bench-latency's, and no unit key holds it)."""
    if params.quantize.int8:
        params = params.model_copy(update={"quantize": params.quantize.model_copy(update={"int8": False})})
    task = params.tasks[task_name]
    if task.source != "synthetic":
        return params
    root = Path(bench.out_dir) / task_name / "data"
    data = params.data.model_copy(update={"n_test": bench.test_images or params.data.n_test})
    return params.model_copy(
        update={"data": data, "tasks": {**params.tasks, task_name: task.model_copy(update={"root": root})}}
    )


def _upstream_key(params: Params, task_name: str) -> str:
    """Everything the task's data, teacher and condensed network are made from: of ``model``, the section of the
    task's own generator kind (a ResNet setting does not restart a U-Net task's benchmark) and the task's
    discriminator."""
    p = params
    task = p.tasks[task_name]
    generator = getattr(p.model, task.arch) if task.arch else None  # an imported teacher's arch is in its file
    return params_key(p.seed, p.data, task, generator, p.discriminator_for(task_name), p.train, p.condense)


def _refresh_upstream(params: Params, out_dir: Path, task_name: str) -> None:
    """Empty the task folder when its data, teacher or condensed network were made from other settings.

    DVC keeps the folder between runs (``persist``, so that a killed benchmark resumes), so nothing else would
    notice a changed teacher recipe; every row depends on the teacher, so none is worth keeping.
    """
    stamp = out_dir / UPSTREAM_FILE
    key = _upstream_key(params, task_name)
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        return
    if out_dir.exists() and any(out_dir.iterdir()):
        log.info("%s: data/teacher settings changed (or unknown), starting the task's benchmark afresh", task_name)
        shutil.rmtree(out_dir)
    io.write_json(stamp, {"task": task_name, "key": key})


def prepare_task(
    params: Params, bench: BenchParams, task_name: str, torch_home: Path, paths: TaskPaths | None = None
) -> TaskBench:
    """Load (or make) the task's data, teacher and condensed network; check the feature layers up front."""
    params = bench_params(params, bench, task_name)
    task = Task.from_params(params, task_name)
    paths = paths or bench_paths(bench, task_name)
    _refresh_upstream(params, Path(bench.out_dir) / task_name, task_name)
    device = resolve_device(params.device)
    if not Path(task.params.root).exists():
        prepare_data(params, task_name)
    if not paths.teacher.is_file():
        log.info("%s: no teacher at %s, training one (alap train)", task_name, paths.teacher)
        train_teacher(params, task_name, paths, torch_home)
    if not paths.condensed.is_file():
        log.info("%s: no condensed network at %s, condensing (alap condense)", task_name, paths.condensed)
        condense_task(params, task_name, paths, torch_home)
    teacher_wall = _wall_of(paths.train_metrics, "train_metrics.json of the teacher")
    teacher, _ = load_checkpoint(paths.teacher, map_location=device, expect_task=task_name)
    condensed, _ = load_checkpoint(paths.condensed, map_location=device, expect_task=task_name)
    condense_wall = _wall_of(paths.condense_report, "condense.json of the condensed network")
    example = next(iter(DataLoader(task.dataset("val"), batch_size=16)))["A"].to(device)
    originals = Originals(teacher, arch_of(teacher), condensed, arch_of(condensed), example, params.prune)
    _check_feature_layers(params, bench, originals.teacher_arch["kind"], teacher, example)
    val_batches = [
        to_device(b, device) for b in DataLoader(task.dataset("val"), batch_size=params.distill.val_batch_size)
    ]
    identity = params_key(teacher, condensed)
    more_layers = more_feature_layers(feature_names(teacher))
    feature_modules(teacher, more_layers, example)
    return TaskBench(
        params,
        bench,
        task,
        device,
        paths,
        Path(bench.out_dir) / task_name,
        Path(torch_home),
        originals,
        load_aux(paths.teacher_aux, task_name, device),
        teacher_wall,
        condense_wall,
        val_batches,
        identity,
        more_layers,
        RowLedger(Path(bench.ledger_dir) / f"{task_name}.json"),
    )


def _check_feature_layers(
    params: Params, bench: BenchParams, kind: str, teacher: nn.Module, example: torch.Tensor
) -> None:
    """ALAP distils features at the pipeline's distill.feature_layers; fail now, not after hours of training."""
    names = params.distill.layers_for(kind)
    methods = {name for task in bench.tasks for name in bench.plan(task)[1]}
    if not names and "alap_output_only" in methods:
        raise ValueError(
            f"distill.feature_layers names no layer for {kind} generators, so ALAP would be output-only "
            "and the 'alap_output_only' ablation would repeat it; set feature layers in params.yaml"
        )
    feature_modules(teacher, names, example)  # unknown names raise with the valid ones


def finetune_steps(params: Params, bench: BenchParams) -> int:
    """Steps of every fine-tuning method: the benchmark's setting, else the pipeline's distill.steps."""
    return bench.finetune_steps or params.distill.steps


def _wall_of(path: Path, what: str) -> float:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: {what} not found; the benchmark needs the wall times of training and "
            "condensing (rerun `alap train` / `alap condense` to write them)"
        )
    data = json.loads(path.read_text())
    if not isinstance(data.get("wall_s"), (int, float)) or data["wall_s"] <= 0:
        raise ValueError(f"{path}: expected a positive number 'wall_s', got {data.get('wall_s')!r}")
    return float(data["wall_s"])


@dataclass(frozen=True)
class Unit:
    """One resumable piece of the benchmark: a method at a budget with a seed."""

    budget: float
    method: Method
    seed: int

    @property
    def dir(self) -> str:
        return f"{budget_name(self.budget)}/{self.method.name}/seed{self.seed}"

    @property
    def model(self) -> str:
        return f"{self.method.name}-{budget_name(self.budget)}-seed{self.seed}"

    @property
    def names(self) -> dict[str, Any]:
        """The row's fields that name the unit and describe its method (not part of its key: :func:`_unit_key`)."""
        m = self.method
        fields = {"source": m.source, "tune": m.tune, "teacher": m.teacher, "features": m.features}
        return {"method": m.name, "model": self.model, "dir": self.dir, **fields}


class Progress:
    """One stderr line per unit (done, reused or failed), with how far the task is and how long it has run."""

    def __init__(self, task: str, total: int) -> None:
        self.task, self.total, self.done, self.started = task, total, 0, time.perf_counter()

    def tick(self, what: str, outcome: str) -> None:
        self.done += 1
        minutes = (time.perf_counter() - self.started) / 60
        log.info("%s [%d/%d] %s: %s (%.1f min so far)", self.task, self.done, self.total, what, outcome, minutes)


def run_task(
    params: Params, bench: BenchParams, task_name: str, torch_home: Path, paths: TaskPaths | None = None
) -> dict[str, Any]:
    """Benchmark one task; write and return ``<out_dir>/<task>/results.json``."""
    tb = prepare_task(params, bench, task_name, torch_home, paths)
    budgets, methods, seeds = bench.plan(task_name)
    units = [Unit(b, METHODS[m], s) for b in budgets for m in methods for s in seeds]
    progress = Progress(task_name, len(REFERENCES) + len(units))
    references = []
    for name in REFERENCES:
        row, reused = _reference_row(tb, name)
        references.append(row)
        progress.tick(name, "already done" if reused else "measured")
    rows, missed = [], []
    students: dict[tuple, Student | BudgetMissed] = {}
    for unit in units:
        try:
            row, reused = _unit_row(tb, unit, students)
        except BudgetMissed as exc:  # this method cannot reach this budget: say so, go on with the rest
            log.warning("%s %s: %s", task_name, unit.dir, exc)
            missed.append({"method": unit.method.name, "budget": unit.budget, "seed": unit.seed, "error": str(exc)})
            progress.tick(unit.dir, "no student within the tolerance")
            continue
        rows.append(row)
        progress.tick(unit.dir, "already done" if reused else f"done in {row['wall_s']['total']:.0f} s")
    results = {
        "task": task_name,
        "teacher_train_wall_s": tb.teacher_wall_s,
        "condense_wall_s": tb.condense_wall_s,
        "image_size": tb.task.image_size,
        "test_images": len(tb.task.dataset("test", for_eval=True)),
        "identity_baseline": None if tb.task.params.paired else _identity_baseline(tb.paths.train_metrics),
        "budgets": budgets,
        "methods": methods,
        "seeds": seeds,
        "finetune_steps": finetune_steps(tb.params, bench),
        "teacher_steps": tb.task.train.steps,
        "paired": tb.task.params.paired,
        "distill_lambda_gan": tb.params.distill.lambda_gan,
        "feature_layers": tb.params.distill.layers_for(tb.originals.teacher_arch["kind"]),
        "more_feature_layers": tb.more_layers,
        "references": references,
        "rows": rows,
        "missed": missed,
    }
    tb.ledger.keep({row["key"] for row in [*references, *rows]})
    io.write_json(tb.out_dir / RESULTS_FILE, _finite(results))
    return results


def _reference_row(tb: TaskBench, name: str) -> tuple[dict[str, Any], bool]:
    """The teacher or condensed network, evaluated and profiled like every student; and whether an earlier run
    had written its row."""
    out = tb.out_dir / name
    key = params_key(tb.identity, name, tb.params.evaluate, tb.params.profile)
    done = _finished(tb, out, key)
    if done is not None:
        return done, True
    checkpoint = getattr(tb.paths, name)
    wall = tb.teacher_wall_s if name == "teacher" else tb.condense_wall_s
    row = {
        "task": tb.task.name,
        "method": name,
        "budget": 1.0,
        "model": name,
        "dir": name,
        "wall_s": {"total": wall},
        "wall_ratio": wall / tb.teacher_wall_s,
        "key": key,
    }
    return _measure(tb, row, checkpoint, out, sparsity=None), False


def prune_settings(params: Params, method: Method) -> PruneParams:
    """The pipeline's prune settings with the method's floors (a ``None`` floor keeps the pipeline's)."""
    change = {"min_width": method.min_width, "min_width_fraction": method.min_width_fraction}
    return params.prune.model_copy(update={k: v for k, v in change.items() if v is not None})


def distill_settings(tb: TaskBench, method: Method) -> DistillParams:
    """The pipeline's distill settings as ``method`` changes them, with the benchmark's number of steps."""
    kind = tb.originals.teacher_arch["kind"]
    layers = {"none": [], "pipeline": tb.params.distill.layers_for(kind), "more": tb.more_layers}
    pipeline = tb.params.distill
    changed = {
        "lambda_gan": method.lambda_gan,
        "lambda_teacher": method.lambda_teacher,
        "lambda_target": method.lambda_target,
        "beta1": method.beta1,
    }
    return DistillParams.model_validate(
        {
            **pipeline.model_dump(),
            "steps": finetune_steps(tb.params, tb.bench),
            "teacher": method.teacher or pipeline.teacher,
            "feature_layers": layers[method.features],
            **{name: value for name, value in changed.items() if value is not None},
        }
    )


def objective_settings(params: Params) -> dict[str, int | float]:
    """The settings of distill that fine-tuning on the task objective reads (:func:`_tune` takes them from here, the
    validation batches' size through :func:`prepare_task`), so that its units are keyed on nothing else."""
    return params.distill.model_dump(include={"lr", "checkpoint_every", "validate_every", "val_batch_size"})


def tuning_settings(tb: TaskBench, method: Method) -> DistillParams | dict[str, int | float] | None:
    """The settings of distill that ``method``'s fine-tuning reads: all of them for distillation, those of
    :func:`objective_settings` for fine-tuning on the task objective, none for training from scratch (it follows
    the task's train settings)."""
    if method.tune == "distill":
        return distill_settings(tb, method)
    if method.tune == "objective":
        return objective_settings(tb.params)
    return None


def _unit_row(tb: TaskBench, unit: Unit, students: dict[tuple, Student | BudgetMissed]) -> tuple[dict[str, Any], bool]:
    """The unit's row and whether an earlier run had written it. Otherwise: land the student (shared by the
    budget's methods with the same source and floors, and by every seed), fine-tune it, evaluate and profile."""
    method, budget = unit.method, unit.budget
    out = tb.out_dir / unit.dir
    key = _unit_key(tb, unit)
    done = _finished(tb, out, key, unit.names)
    if done is not None:
        return done, True
    prune = prune_settings(tb.params, method)
    which = (budget, method.source, prune if method.source == "slim" else None)
    if which not in students:
        try:
            originals = dataclasses.replace(tb.originals, prune=prune)
            students[which] = land_student(method.source, budget, originals, tb.bench)
        except BudgetMissed as exc:
            students[which] = exc
    student = students[which]
    if isinstance(student, BudgetMissed):
        raise student
    log.info(
        "%s %s: student %.4g GMACs (%+.1f%% of budget), %s",
        tb.task.name,
        unit.dir,
        student.landing.gmacs,
        100 * student.landing.deviation,
        method.tune,
    )
    # The row's key is known before landing (so a finished unit costs nothing); the resume state's also covers the
    # landed student, so that a change of code that lands another student never resumes the old one's training.
    state = tb.paths.resume_state(f"bench-{unit.model}", params_key(key, student.landing.student))
    tuned = _tune(tb, unit, student, state)
    save_checkpoint(
        out / "student.pt",
        tuned.student,
        arch_of(tuned.student),
        {"task": tb.task.name, "role": "bench", "method": method.name, "budget": budget, "seed": unit.seed},
    )
    condense = tb.condense_wall_s if method.condenses else 0.0
    wall = {
        "condense": condense,
        "student": round(student.wall_s, 2),
        "train": round(tuned.wall_s, 2),
        "total": round(condense + student.wall_s + tuned.wall_s, 2),
    }
    row = {
        "task": tb.task.name,
        **unit.names,
        "budget": budget,
        "seed": unit.seed,
        "target_gmacs": student.landing.target_gmacs,
        "gmacs_deviation": student.landing.deviation,
        "student": student.describe(),
        "steps": tuned.steps,
        "best_step": tuned.best_step,
        "val_psnr_best": tuned.best_psnr,
        "val_psnr_start": tuned.start_psnr,
        "wall_s": wall,
        "wall_ratio": wall["total"] / tb.teacher_wall_s,
        "key": key,
    }
    return _measure(tb, row, out / "student.pt", out, sparsity=1.0 - 1.0 / budget), False


def _identity_baseline(train_metrics: Path) -> dict[str, float]:
    """An unpaired teacher's floor, as alap.train measured it on the test split: the untranslated inputs' FID and
    KID against the real target images. A student above it translates worse than doing nothing."""
    record = json.loads(train_metrics.read_text())
    return {"fid": record["fid_identity"], "kid": record["kid_identity"]}


def _unit_key(tb: TaskBench, unit: Unit) -> str:
    """Everything the unit's numbers depend on, and nothing they do not: not the method's name (a renamed method,
    or an ablation that became the pipeline's default, keeps its rows), and a setting only where the method uses
    it (prune's floors shape only a ``slim`` student, the magnitude settings only their own baselines)."""
    method, b = unit.method, tb.bench
    return params_key(
        tb.identity,
        method.source,
        method.tune,
        unit.budget,
        tb.params.seed,
        unit.seed,
        tb.task.train,
        prune_settings(tb.params, method) if method.source == "slim" else None,
        tuning_settings(tb, method),
        tb.params.evaluate,
        tb.params.profile,
        b.tolerance,
        finetune_steps(tb.params, b),
        b.l1_norm if method.source == "l1" else None,
        b.tp_magnitude if method.source == "tp" else None,
        b.search_steps,
    )


def _finished(tb: TaskBench, out: Path, key: str, names: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The row an earlier run wrote with the same key, from the unit's folder or else the ledger, if any, under
    this unit's ``names`` (a unit of another name may have computed it; see :func:`_unit_key`); then also in the
    ledger."""
    path = out / ROW_FILE
    row = json.loads(path.read_text()) if path.is_file() else None
    if row is None or row.get("key") != key:
        row = tb.ledger.get(key)
    if row is not None:
        row = {**row, **(names or {})}
        tb.ledger.put(row)
    return row


class RowLedger:
    """Every finished row of one task's benchmark (references and units), by key, in one JSON file kept in git.

    ``<out_dir>/<task>`` is a DVC output (checkpoints, grids, row.json files), not in git, so a fresh clone starts
    without it; a unit whose key is in the ledger is not computed again. The key covers the teacher's and condensed
    network's weights, which train to the same bytes on the same machine, so a clone continues the run; any other
    input recomputes. It does not cover alap's code (any edit would rerun hours of units): a change of code that
    changes a unit's numbers must remove those rows from the ledger and their folders from bench/out. A row reused
    from the ledger alone has no checkpoint, grid or metrics.json in its folder: its numbers are those measured when
    it ran. Rewritten atomically after every row (alap/io.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        io.check_output(path)
        try:
            data = json.loads(path.read_text()) if path.is_file() else {"rows": []}
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}: the benchmark's row ledger is not valid JSON ({exc}); restore it from git"
            ) from exc
        self.rows: dict[str, dict[str, Any]] = {row["key"]: row for row in data["rows"]}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def put(self, row: dict[str, Any]) -> None:
        if self.rows.get(row["key"]) != row:
            self.rows[row["key"]] = row
            self._write()

    def keep(self, keys: set[str]) -> None:
        """Drop the rows of units no longer in the plan (or of an older teacher)."""
        if set(self.rows) - keys:
            self.rows = {k: row for k, row in self.rows.items() if k in keys}
            self._write()

    def _write(self) -> None:
        rows = sorted(self.rows.values(), key=lambda row: (str(row.get("dir")), row["key"]))
        io.write_json(self.path, {"rows": rows})


def _val_fid(tb: TaskBench) -> ValFid | None:
    """For an unpaired task, the validator that picks which checkpoint a training without a teacher keeps."""
    if tb.task.params.paired:
        return None
    return partial(val_fid_validator, tb.task, inception=InceptionFeatures(tb.torch_home, tb.device), device=tb.device)


def _tune(tb: TaskBench, unit: Unit, student: Student, state: Path) -> TuneResult:
    """Train a private copy of the landed student as the unit's method says, seeded by the unit's seed (added to
    the pipeline's, so seed 0 fine-tunes exactly as the distill stage does)."""
    params, paired, method = tb.params, tb.task.params.paired, unit.method
    seed = params.seed + unit.seed
    torch.manual_seed(seed)
    settings = tb.task.train
    batches = endless_batches(tb.task.dataset("train"), settings.batch_size, seed + 2, tb.device)
    if method.tune == "scratch":  # a fresh start: new weights for the landed widths, new discriminators
        network = build_generator(student.landing.arch).to(tb.device)
        _, _, fresh_aux = build_gan(tb.task, params, tb.device)
        return train_from_scratch(
            network, tb.task.objective_kind, fresh_aux, settings, settings.steps, batches, state, _val_fid(tb)
        )
    if method.tune == "objective":
        network = copy.deepcopy(student.landing.student).to(tb.device)
        objective = objective_settings(params)
        return finetune_on_objective(
            network,
            tb.task.objective_kind,
            copy.deepcopy(tb.aux),
            settings,
            objective["lr"],
            finetune_steps(params, tb.bench),
            batches,
            tb.val_batches,
            _val_fid(tb),
            state,
            objective["checkpoint_every"],
            objective["validate_every"],
        )
    teachers = {
        "condensed": tb.originals.condensed,
        "original": tb.originals.teacher,
        "pruned": copy.deepcopy(student.landing.student).to(tb.device).eval(),
    }
    settings = distill_settings(tb, method)
    discriminator = None
    if settings.lambda_gan > 0:  # the teacher's own discriminator (of the B domain for CycleGAN), as GAN Compression
        discriminator = copy.deepcopy(tb.aux["D"] if paired else tb.aux["D_A"])
    network = copy.deepcopy(student.landing.student).to(tb.device)
    result = distill(
        network,
        teachers[settings.teacher],
        batches,
        tb.val_batches,
        settings,
        paired,
        tb.originals.example_input,
        state,
        discriminator=discriminator,
    )
    best = result.best_psnr if math.isfinite(result.best_psnr) else None
    return TuneResult(result.student, settings.steps, result.best_step, best, result.start_psnr, result.wall_s)


def _measure(tb: TaskBench, row: dict[str, Any], checkpoint: Path, out: Path, sparsity: float | None) -> dict[str, Any]:
    """Evaluate and profile ``checkpoint`` into ``out`` with the pipeline's code; write and return the row."""
    metrics = evaluate_model(
        tb.params,
        tb.task.name,
        row["model"],
        checkpoint,
        tb.paths.teacher,
        out,
        tb.torch_home,
        sparsity=sparsity,
        real_cache=tb.out_dir / "fid_real_features.pt",
    )
    latency = _profile(tb, checkpoint, out, row["model"])
    recorded = {k: metrics.get(k) for k in (*RECORDED_METRICS, *UNCERTAINTY) if k in RECORDED_METRICS or k in metrics}
    row = _finite({**row, **recorded, **latency})
    io.write_json(out / ROW_FILE, row)
    tb.ledger.put(row)
    return row


def _profile(tb: TaskBench, checkpoint: Path, out: Path, name: str) -> dict[str, float]:
    """Latency of the model on every configured device x backend, as the profile stage measures it (into
    ``out/latency.json``)."""
    model, _ = load_checkpoint(checkpoint, map_location="cpu", expect_task=tb.task.name)
    return profile_into(tb.params, model, tb.shape, out, tb.task.name, name, progress=False)["metrics"]


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: non-finite floats (e.g. PSNR of identical outputs) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
