"""Typed pipeline parameters: params.yaml validated once, before any work starts.

Every stage, flow and CLI verb reads its settings through :func:`load_params`, so a wrong type, an unknown key,
a value out of range or an unknown task/architecture fails at start-up with the key path and what was expected,
never an hour into a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from alap.compress.params import CondenseParams, DistillParams, PruneParams

DEFAULT_PARAMS = Path("params.yaml")

# Bounds shared by the ``train`` section and a task's overrides of it, so the two cannot drift apart.
LearningRate = Annotated[float, Field(gt=0, le=1e-1)]
AdamBeta1 = Annotated[float, Field(ge=0, lt=1)]
DecayFrom = Annotated[float, Field(ge=0, le=1, description="fraction of steps after which lr decays linearly to 0")]


class Strict(BaseModel):
    """Base for every params section: unknown keys are errors, so typos never fall back to defaults silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Strict):
    """Sizes of the synthetic tasks (real folder datasets keep their own counts)."""

    image_size: int = Field(64, ge=32, le=1024, description="square side in pixels; a power of two")
    n_train: PositiveInt = 400
    n_val: PositiveInt = 40
    n_test: PositiveInt = 100

    @model_validator(mode="after")
    def _power_of_two(self) -> "DataParams":
        if self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two (U-Net downsamplings), got {self.image_size}")
        return self


class TrainOverrides(Strict):
    """What one task trains differently from the shared ``train`` section (unset keys keep the shared value).

    Datasets differ: CycleGAN's two generators and two discriminators cost ~4x a pix2pix step, so an unpaired
    task usually wants smaller batches; a harder mapping wants more steps or another learning rate; and Adam's
    beta1 of 0.5, the reference setting that steadies a loss of adversarial and cycle terms, need not suit a
    pix2pix teacher whose loss is mostly L1 (face2cartoon at 64 px, 800 steps: 18.58 dB test PSNR with 0.9,
    18.26 with 0.5; at 1200 steps 18.17 and 18.61, so the spread between runs is as large as the effect).
    ``lr_decay_from`` 1.0 keeps the rate constant: a task whose validation PSNR falls while the rate decays to 0
    can stop at the step where it peaked instead.
    """

    steps: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    lr: LearningRate | None = None
    beta1: AdamBeta1 | None = None
    lr_decay_from: DecayFrom | None = None


class TaskParams(Strict):
    """Where one task's data lives and which generator it trains.

    ``source: synthetic`` generates the built-in task of the same name into ``root``; ``folder`` reads a real
    dataset already there in the given ``layout``.
    """

    source: Literal["synthetic", "folder"] = "synthetic"
    layout: Literal["mask_image", "paired", "paired_ab", "unpaired"]
    root: Path
    arch: Literal["unet", "resnet"]
    num_classes: PositiveInt | None = Field(None, description="mask_image only: number of class ids")
    train: TrainOverrides = TrainOverrides()

    @model_validator(mode="after")
    def _classes_for_masks(self) -> "TaskParams":
        if (self.layout == "mask_image") != (self.num_classes is not None):
            raise ValueError("num_classes is required for layout 'mask_image' and only allowed there")
        return self

    @property
    def paired(self) -> bool:
        return self.layout != "unpaired"


class UnetParams(Strict):
    ngf: PositiveInt = 64
    num_downs: int = Field(8, ge=2, le=10)
    norm: Literal["batch", "instance"] = "batch"
    dropout: bool = False


class ResnetParams(Strict):
    ngf: PositiveInt = 64
    n_blocks: int = Field(9, ge=1, le=20)
    norm: Literal["batch", "instance"] = "instance"
    dropout: bool = False


class DiscriminatorParams(Strict):
    ndf: PositiveInt = 64
    n_layers: int = Field(3, ge=1, le=5)


class ModelParams(Strict):
    unet: UnetParams = UnetParams()
    resnet: ResnetParams = ResnetParams()
    discriminator: DiscriminatorParams = DiscriminatorParams()


class TrainParams(Strict):
    """Teacher training: pix2pix (L1 + cGAN) for paired tasks, CycleGAN (GAN + cycle + identity) otherwise."""

    steps: PositiveInt = 2000
    batch_size: PositiveInt = 8
    lr: LearningRate = 2e-4
    beta1: AdamBeta1 = 0.5
    gan_mode: Literal["lsgan", "vanilla"] = "lsgan"
    lambda_l1: float = Field(100.0, ge=0)
    lambda_gan: float = Field(1.0, ge=0)
    lambda_cycle: float = Field(10.0, ge=0)
    lambda_identity: float = Field(0.5, ge=0)
    checkpoint_every: PositiveInt = 250
    lr_decay_from: DecayFrom = 0.5


class SweepParams(Strict):
    sparsities: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _in_range(self) -> "SweepParams":
        for s in self.sparsities:
            if not 0.0 <= s < 1.0:
                raise ValueError(f"every sparsity must be in [0, 1), got {s}")
        if len(set(self.sparsities)) != len(self.sparsities):
            raise ValueError(f"sparsities must be distinct, got {self.sparsities}")
        return self


class EvaluateParams(Strict):
    batch_size: PositiveInt = 16
    lpips_net: Literal["alex", "vgg"] = "alex"
    kid_subset_size: PositiveInt = 50
    grid_rows: PositiveInt = 6


class ProfileParams(Strict):
    devices: list[str] = Field(default_factory=lambda: ["cpu-t1", "cpu-t2", "cuda0"])
    backends: list[Literal["torch", "onnxruntime"]] = Field(default_factory=lambda: ["torch", "onnxruntime"])
    batch_sizes: list[PositiveInt] = Field(default_factory=lambda: [1])
    warmup: int = Field(5, ge=0)
    min_repeats: PositiveInt = 20
    min_seconds: float = Field(1.0, ge=0)


class Params(Strict):
    """The whole of params.yaml."""

    profile_name: str = Field(description="which ready profile these params came from (demo, paper, or yours)")
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    run_tasks: list[str] = Field(min_length=1, description="the tasks (keys of `tasks`) the pipeline runs")
    data: DataParams = DataParams()
    tasks: dict[str, TaskParams]
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    condense: CondenseParams = CondenseParams()
    prune: PruneParams = PruneParams()
    distill: DistillParams = DistillParams()
    sweep: SweepParams
    evaluate: EvaluateParams = EvaluateParams()
    profile: ProfileParams = ProfileParams()

    @model_validator(mode="after")
    def _known_tasks(self) -> "Params":
        from alap.data.tasks import SYNTHETIC_TASKS

        unknown = [t for t in self.run_tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"run_tasks names unknown tasks {unknown}; defined in `tasks`: {sorted(self.tasks)}")
        for name, task in self.tasks.items():
            if task.source == "synthetic" and name not in SYNTHETIC_TASKS:
                raise ValueError(
                    f"tasks.{name}: source 'synthetic' needs a built-in task name, one of {sorted(SYNTHETIC_TASKS)}"
                )
        uses_unet = any(self.tasks[t].arch == "unet" for t in self.run_tasks)
        if uses_unet and 2 ** self.model.unet.num_downs > self.data.image_size:
            raise ValueError(f"model.unet.num_downs={self.model.unet.num_downs} halves {self.data.image_size}-pixel "
                             f"images below 1 pixel; use at most {self.data.image_size.bit_length() - 1}")
        return self

    def train_for(self, task_name: str) -> TrainParams:
        """The ``train`` section with ``tasks.<task_name>.train``'s overrides applied."""
        return self.train.model_copy(update=self.tasks[task_name].train.model_dump(exclude_none=True))


class ParamsError(ValueError):
    """params.yaml is missing, not YAML, or does not validate; the message lists every bad key path."""


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``path``; raise :class:`ParamsError` naming the file and each bad key path."""
    return load_validated(path, Params, ParamsError, hint="copy one of configs/*.yaml there")


M = TypeVar("M", bound=BaseModel)


def load_validated(path: str | Path, model: type[M], error: type[ValueError], hint: str = "") -> M:
    """Read a YAML mapping from ``path`` into ``model``; every failure is an ``error`` naming the file and,
    for validation failures, each bad key path with what was expected and what was given."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: params file not found" + (f" ({hint})" if hint else ""))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: invalid parameters:"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "<top level>"
            got = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
            lines.append(f"  - {where}: {err['msg']}{got}")
        raise error("\n".join(lines)) from None
