"""Typed settings of the benchmark (bench/params.yaml), validated once before hours of work start.

The benchmark adds only what it needs on top of the pipeline's params.yaml: tasks, data, models, teacher
training, condense/prune/distill settings, evaluation and profiling all come from there, so a benchmark row
named ``alap`` is exactly what the pipeline produces at that MACs budget (distill settings, feature layers
included; only the number of steps is the benchmark's, so that every fine-tuning method gets the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

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
]
ALL_METHODS: tuple[str, ...] = MethodName.__args__  # type: ignore[attr-defined]
DEFAULT_BENCH_PARAMS = Path("bench/params.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MagnitudePruning(_Strict):
    """How a magnitude baseline spreads its pruning: one ratio per layer (``global_pruning: false``), or one
    threshold over all layers' normalised scores (Torch-Pruning's global pruning)."""

    global_pruning: bool = False


class BenchParams(_Strict):
    """bench/params.yaml: what to compare, at which MACs budgets, with how many fine-tuning steps."""

    tasks: list[str] = Field(min_length=1, description="tasks of the pipeline's params.yaml to benchmark")
    budgets: list[float] = Field(
        default_factory=lambda: [4.0, 8.0, 16.0],
        min_length=1,
        description="MACs budgets as reduction factors: 4 = 4x fewer MACs than the teacher",
    )
    tolerance: float = Field(0.05, gt=0, le=0.5, description="how far a student's MACs may miss its budget (relative)")
    methods: list[MethodName] = Field(default_factory=lambda: list(ALL_METHODS), min_length=1)
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
    report: Path = Field(Path("reports/benchmark.md"))
    plots_dir: Path = Field(Path("reports/bench"), description="Pareto plots and their CSV data")
    track: bool = Field(True, description="log every row to the MLflow experiment 'alap-bench'")

    @field_validator("tasks", "budgets", "methods")
    @classmethod
    def _distinct(cls, values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError(f"must be distinct, got {values}")
        return values

    @field_validator("budgets")
    @classmethod
    def _reductions(cls, budgets: list[float]) -> list[float]:
        bad = [b for b in budgets if not b > 1.0]
        if bad:
            raise ValueError(f"every budget is a MACs reduction factor > 1 (4 = 4x fewer MACs), got {bad}")
        return budgets

    def latency_key(self) -> str:
        """The flat metric key (docs/architecture.md) of the latency the report ranks by."""
        return f"latency.{self.latency}.p50_ms"


class BenchParamsError(UserError):
    """bench/params.yaml is missing, not YAML, or does not validate; the message names the file and keys."""


def load_bench_params(path: str | Path = DEFAULT_BENCH_PARAMS) -> BenchParams:
    """Read and validate the benchmark's params file."""
    return load_validated(path, BenchParams, BenchParamsError, hint="the benchmark's own params, see bench/")
