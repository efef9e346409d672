"""Typed settings of the benchmark (bench/params.yaml), validated once before hours of work start.

The benchmark adds only what it needs on top of the pipeline's params.yaml: tasks, data, models, teacher
training, condense/prune/distill settings, evaluation and profiling all come from there, so a benchmark row
named ``alap`` is exactly what the pipeline produces at that MACs budget (distill settings, feature layers
included; only the number of steps is the benchmark's, so that every fine-tuning method gets the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from alap.config import load_validated
from alap.errors import UserError

MethodName = Literal[
    "uniform",
    "l1_norm",
    "slimming",
    "tp_magnitude",
    "alap",
    "alap_original_teacher",
    "alap_pruned_teacher",
    "alap_output_only",
    "alap_no_condense",
    "alap_gan",
    "alap_no_output_distill",
    "alap_no_floor",
    "alap_min_width",
    "alap_more_features",
    "alap_beta1",
    "alap_no_gan",
    "alap_strong_target",
]
ALL_METHODS: tuple[str, ...] = MethodName.__args__  # type: ignore[attr-defined]
DEFAULT_BENCH_PARAMS = Path("bench/params.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MagnitudePruning(_Strict):
    """How a magnitude baseline spreads its pruning: one ratio per layer (``global_pruning: false``), or one
    threshold over all layers' normalised scores (Torch-Pruning's global pruning)."""

    global_pruning: bool = False


def _distinct(values: list | None) -> list | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError(f"must be distinct, got {values}")
    return values


def _reductions(budgets: list[float] | None) -> list[float] | None:
    bad = [b for b in budgets or [] if not b > 1.0]
    if bad:
        raise ValueError(f"every budget is a MACs reduction factor > 1 (4 = 4x fewer MACs), got {bad}")
    return budgets


class TaskPlan(_Strict):
    """What one task runs where it differs from the benchmark's defaults (e.g. only the ablation that answers that
    task's question, so that the whole benchmark fits its time budget); unset fields take the top-level ones."""

    budgets: list[float] | None = Field(None, min_length=1)
    methods: list[MethodName] | None = Field(None, min_length=1)
    seeds: list[NonNegativeInt] | None = Field(None, min_length=1)

    _distinct = field_validator("budgets", "methods", "seeds")(_distinct)
    _reductions = field_validator("budgets")(_reductions)


class BenchParams(_Strict):
    """bench/params.yaml: what to compare, at which MACs budgets, over which seeds and test images, with how many
    fine-tuning steps."""

    tasks: list[str] = Field(min_length=1, description="tasks of the pipeline's params.yaml to benchmark")
    budgets: list[float] = Field(
        default_factory=lambda: [4.0, 8.0, 16.0],
        min_length=1,
        description="MACs budgets as reduction factors: 4 = 4x fewer MACs than the teacher",
    )
    tolerance: float = Field(0.05, gt=0, le=0.5, description="how far a student's MACs may miss its budget (relative)")
    methods: list[MethodName] = Field(default_factory=lambda: list(ALL_METHODS), min_length=1)
    seeds: list[NonNegativeInt] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="seeds of every fine-tuning method (data order, initialisation, noise), added to the pipeline's "
        "seed: seed 0 fine-tunes as the pipeline does. The teacher and condensed network are shared",
    )
    per_task: dict[str, TaskPlan] = Field(
        default_factory=dict, description="per task, budgets/methods/seeds that replace the top-level ones"
    )
    test_images: PositiveInt | None = Field(
        None,
        description="test images of every synthetic task (data.n_test of the benchmark's own data); null = the "
        "pipeline's data.n_test",
    )
    finetune_steps: PositiveInt | None = Field(
        None,
        description="steps of every fine-tuning method (distillation "
        "and ground-truth fine-tuning alike); null = the pipeline's "
        "distill.steps. 'uniform' trains for the teacher's steps",
    )
    l1_norm: MagnitudePruning = MagnitudePruning()
    tp_magnitude: MagnitudePruning = MagnitudePruning()
    search_steps: PositiveInt = Field(24, le=64, description="most candidate students tried to land on a budget")
    latency: str = Field(
        "cpu-t1.torch.bs1",
        pattern=r"^[^.\s]+\.[^.\s]+\.bs[1-9][0-9]*$",
        description="<device>.<backend>.bs<N>: the latency the report ranks and plots",
    )
    out_dir: Path = Field(Path("bench/out"), description="students, their metrics and latencies, per task")
    metrics_dir: Path = Field(Path("bench/metrics"), description="DVC metrics, one JSON per task")
    ledger_dir: Path = Field(
        Path("bench/ledger"),
        description="every finished row, one JSON per task, kept in git: a fresh clone continues a cut-off run",
    )
    report: Path = Field(Path("reports/benchmark.md"))
    plots_dir: Path = Field(Path("reports/bench"), description="Pareto plots and their CSV data")
    track: bool = Field(True, description="log every row to the MLflow experiment 'alap-bench'")

    _distinct = field_validator("tasks", "budgets", "methods", "seeds")(_distinct)
    _reductions = field_validator("budgets")(_reductions)

    @model_validator(mode="after")
    def _plans_name_tasks(self) -> BenchParams:
        unknown = sorted(set(self.per_task) - set(self.tasks))
        if unknown:
            raise ValueError(f"per_task names tasks {unknown} that are not in tasks {self.tasks}")
        return self

    def plan(self, task: str) -> tuple[list[float], list[str], list[int]]:
        """The budgets, methods and seeds ``task`` runs."""
        own = self.per_task.get(task, TaskPlan())
        return (
            list(own.budgets or self.budgets),
            list(own.methods or self.methods),
            list(own.seeds or self.seeds),
        )

    def latency_key(self) -> str:
        """The flat metric key (docs/architecture.md) of the latency the report ranks by."""
        return f"latency.{self.latency}.p50_ms"


class BenchParamsError(UserError):
    """bench/params.yaml is missing, not YAML, or does not validate; the message names the file and keys."""


def load_bench_params(path: str | Path = DEFAULT_BENCH_PARAMS) -> BenchParams:
    """Read and validate the benchmark's params file."""
    return load_validated(path, BenchParams, BenchParamsError, hint="the benchmark's own params, see bench/")
