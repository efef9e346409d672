"""Settings of ``alap bench-latency`` (bench/latency.yaml): the paper-size teachers, devices, runtimes and budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from alap.config import load_validated
from alap.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PaperTeacher(_Strict):
    """A reference-size generator, built untrained (latency depends on shapes, not on weight values)."""

    kind: Literal["unet", "resnet"]
    ngf: PositiveInt = 64
    num_downs: PositiveInt = Field(8, description="U-Net levels (unet_256: 8)")
    n_blocks: PositiveInt = Field(9, description="ResNet blocks (resnet_9blocks: 9)")
    norm: Literal["batch", "instance"] = Field(description="the reference's: batch (pix2pix), instance (CycleGAN)")


class Int8Student(_Strict):
    """A trained student of the pipeline whose int8 export is scored against its fp32 export
    (alap.profile.int8_quality): ``models/<task>/<model>/student.pt``, the task as the params file defines it."""

    task: str = Field(description="a task of the params file (its test split is scored)")
    model: str = Field(description="the student's point name, e.g. s0.75")


class LatencyBenchParams(_Strict):
    """What the paper-resolution latency benchmark measures and where it writes."""

    image_size: PositiveInt = Field(256, description="square input side (the paper's 256)")
    teachers: dict[str, PaperTeacher] = Field(min_length=1, description="row-group name -> teacher")
    devices: list[str] = Field(default_factory=lambda: ["cpu-t1", "cpu-t2"], min_length=1)
    backends: list[Literal["onnxruntime", "torch"]] = Field(default_factory=lambda: ["onnxruntime", "torch"])
    throughput_batch: PositiveInt = Field(8, description="batch of the images/s column (onnxruntime)")
    budgets_ms: list[float] = Field(
        default_factory=lambda: [33.0, 16.7, 8.3], description="p50 budgets the planner prunes to (30/60/120 FPS)"
    )
    teacher_fractions: list[float] = Field(
        default_factory=list,
        description="more budgets, as fractions of the teacher's p50 on the plan device measured in the same run: "
        "on a loaded machine every absolute budget can be out of reach, these still show what the planner picks",
    )
    plan_device: str = Field("cpu-t2", description="device the budgets hold on")
    plan_backend: Literal["onnxruntime", "torch"] = "onnxruntime"
    min_width: PositiveInt = Field(2, description="prune.min_width of the planned students")
    condense_steps: PositiveInt = Field(30, description="steps of the short condense that ranks the channels")
    condense_images: PositiveInt = Field(8, description="synthetic face images the condense cycles through")
    sparsity_weight: float = Field(1e-3, ge=0, description="condense's L1 weight on the scale factors")
    round_to: list[PositiveInt] = Field(
        default_factory=lambda: [1, 4, 8, 16], description="kept-width multiples compared at equal MACs"
    )
    widths_macs_x: float = Field(8.0, gt=1, description="MACs reduction of the width comparison's students")
    widths_rounds: PositiveInt = Field(
        3, description="interleaved timing rounds of the width comparison (its p50 is the median over rounds)"
    )
    int8: bool = Field(True, description="also time every row quantized to int8 (onnxruntime static, QDQ)")
    int8_students: list[Int8Student] = Field(
        default_factory=list,
        description="trained pipeline students whose int8 export's quality and latency are set beside their fp32 "
        "export's (the paper-size rows are untrained: no quality there)",
    )
    int8_calibration_images: PositiveInt = Field(8, description="training inputs int8 calibrates on")
    warmup: int = Field(2, ge=0)
    min_repeats: PositiveInt = 5
    min_seconds: float = Field(1.0, ge=0)
    seed: int = 0
    notes: list[str] = Field(
        default_factory=list, description="paragraphs the report prints under its header (how and when it ran)"
    )
    out_dir: Path = Path("bench/latency_out")
    cache_dir: Path = Field(Path(".alap/cache/latency"), description="the planner's candidate timings")
    report: Path = Path("reports/latency.md")
    plot: Path = Path("reports/latency/latency_vs_gmacs.png")


class LatencyBenchParamsError(UserError):
    """bench/latency.yaml is missing or invalid."""


def load_latency_bench_params(path: str | Path) -> LatencyBenchParams:
    return load_validated(path, LatencyBenchParams, LatencyBenchParamsError)
