"""Typed pipeline parameters: params.yaml validated once, before any work starts.

Every stage, flow and CLI verb reads its settings through :func:`load_params`, so a wrong type, an unknown key,
a value out of range or an unknown task/architecture fails at start-up with the key path and what was expected,
never an hour into a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from alap.compress.params import (
    INT8_BACKEND,
    CondenseParams,
    DistillParams,
    LatencyBackend,
    LatencyTarget,
    PruneParams,
    int8_on_cpu,
)
from alap.errors import UserError
from alap.paths import latency_point_name, parse_latency_point

DEFAULT_PARAMS = Path("params.yaml")
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"  # where training runs: params.yaml device, alap compress --device

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
    n_test: PositiveInt = 500

    @model_validator(mode="after")
    def _power_of_two(self) -> DataParams:
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
    can stop at the step where it peaked instead. ``checkpoint_every`` is also how often a CycleGAN teacher is
    validated (it keeps its best validation FID), and such a teacher's FID swings by 100-200 points between
    checkpoints 100 steps apart (reports/horse2zebra.md), so it wants more candidates than a pix2pix task.
    """

    steps: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    lr: LearningRate | None = None
    beta1: AdamBeta1 | None = None
    lr_decay_from: DecayFrom | None = None
    # the two settings added after runs were keyed stay out of a task's dump while unset, so those keys still match
    pool_size: int | None = Field(None, ge=0, le=1000, exclude_if=lambda size: size is None)
    checkpoint_every: PositiveInt | None = Field(None, exclude_if=lambda every: every is None)


class DiscriminatorOverrides(Strict):
    """What one task's PatchGAN discriminators differ in from the shared ``model.discriminator`` (unset keys keep
    the shared value). Why per task: a PatchGAN judges patches as wide as its receptive field, and that should
    suit the task's images. 3 layers see 70 px, more than a whole 64-px image, while pix2pix tasks at 256 px want
    them; 2 layers see 34 px (reports/horse2zebra.md). Unset keys stay out of a run's key, so runs keyed before this
    setting existed stay valid."""

    ndf: PositiveInt | None = Field(None, exclude_if=lambda ndf: ndf is None)
    n_layers: int | None = Field(None, ge=1, le=5, exclude_if=lambda layers: layers is None)


class CondenseOverrides(Strict):
    """What one task condenses differently from the shared ``condense`` section (unset keys keep the shared
    value; the section stays out of the task's dump while empty, so runs keyed before it existed stay valid).
    An unpaired task validates its condensed network's FID more often than it checkpoints: horse2zebra's swings
    by 100 points between checkpoints 20 steps apart, so two candidates in 200 steps leave the choice to luck."""

    validate_every: PositiveInt | None = None


class TeacherFile(Strict):
    """A generator the user already trained, imported by the ``import@<task>`` stage instead of training one.

    Kind, widths, norm and depth are read from the file's tensors; the options here only settle what a state
    dict cannot say (dropout has no weights) or pick one net out of a file that holds several.
    """

    checkpoint: Path = Field(description="the generator's weights, e.g. latest_net_G.pth of the reference code base")
    key: str | None = Field(None, description="the entry to use when the file holds several nets (e.g. netG_A)")
    reverse: Path | None = Field(
        None,
        description="CycleGAN's B->A generator (latest_net_G_B.pth): with it, "
        "condense keeps the cycle term; without it the cycle term is off",
    )
    reverse_key: str | None = None
    kind: Literal["unet", "resnet"] | None = None
    norm: Literal["batch", "instance"] | None = None
    norm_affine: bool | None = None
    dropout: bool | None = Field(
        None,
        description="whether the generator was trained with dropout (not "
        "readable from a state dict: the reference default is assumed and logged)",
    )


class TaskParams(Strict):
    """Where one task's data lives and which generator it compresses.

    ``source: synthetic`` generates the built-in task of the same name into ``root``; ``folder`` reads a real
    dataset already there in the given ``layout`` (an input of the pipeline: alap never writes into it).
    The teacher is trained from ``arch`` (``model.unet``/``model.resnet``) unless ``teacher`` names a file.
    Images are resized to ``load_size`` (default ``data.image_size``); with ``crop_size``, training sees random
    crops of that size (the reference pix2pix/CycleGAN policy) while validation and evaluation use whole images.
    """

    source: Literal["synthetic", "folder"] = "synthetic"
    layout: Literal["mask_image", "paired", "paired_ab", "unpaired", "images"]
    root: Path
    arch: Literal["unet", "resnet"] | None = Field(None, description="the generator to train (no teacher file)")
    teacher: TeacherFile | None = None
    num_classes: PositiveInt | None = Field(None, description="mask_image only: number of class ids")
    load_size: int | None = Field(None, ge=16, le=4096, description="square side images are resized to")
    crop_size: int | None = Field(None, ge=16, le=4096, description="side of the random training crops")
    train: TrainOverrides = TrainOverrides()
    discriminator: DiscriminatorOverrides = Field(
        DiscriminatorOverrides(), exclude_if=lambda overrides: overrides == DiscriminatorOverrides()
    )
    condense: CondenseOverrides = Field(
        CondenseOverrides(), exclude_if=lambda overrides: overrides == CondenseOverrides()
    )

    @model_validator(mode="after")
    def _consistent(self) -> TaskParams:
        if (self.layout == "mask_image") != (self.num_classes is not None):
            raise ValueError("num_classes is required for layout 'mask_image' and only allowed there")
        if (self.arch is None) == (self.teacher is None):
            raise ValueError("give exactly one of `arch` (train a teacher) and `teacher` (import a file)")
        if self.layout == "images" and self.teacher is None:
            raise ValueError("layout 'images' has no targets to train a teacher on: name a `teacher` file")
        return self

    @property
    def paired(self) -> bool:
        """Whether items carry a ground-truth target for their input."""
        return self.layout not in ("unpaired", "images")

    @property
    def has_targets(self) -> bool:
        """Whether the task has real target-domain images (for GAN losses and FID against real images)."""
        return self.layout != "images"


class UnetParams(Strict):
    ngf: PositiveInt = 32
    num_downs: int = Field(6, ge=2, le=10)
    norm: Literal["batch", "instance"] = "batch"
    dropout: bool = False


class ResnetParams(Strict):
    ngf: PositiveInt = 16
    n_blocks: int = Field(6, ge=1, le=20)
    norm: Literal["batch", "instance"] = "instance"
    dropout: bool = False
    upsample: Literal["transpose", "resize"] = Field(
        "resize", description="transposed convs as in the reference, or nearest 2x resizing + conv (no checkerboard)"
    )


class DiscriminatorParams(Strict):
    ndf: PositiveInt = 32
    n_layers: int = Field(3, ge=1, le=5)


class ModelParams(Strict):
    unet: UnetParams = UnetParams()
    resnet: ResnetParams = ResnetParams()
    discriminator: DiscriminatorParams = DiscriminatorParams()


class TrainParams(Strict):
    """Teacher training: pix2pix (L1 + cGAN) for paired tasks, CycleGAN (GAN + cycle + identity) otherwise."""

    steps: PositiveInt = 800
    batch_size: PositiveInt = 8
    lr: LearningRate = 1e-3
    beta1: AdamBeta1 = 0.9
    gan_mode: Literal["lsgan", "vanilla"] = "lsgan"
    lambda_l1: float = Field(100.0, ge=0)
    lambda_gan: float = Field(1.0, ge=0)
    lambda_cycle: float = Field(10.0, ge=0)
    lambda_identity: float = Field(0.5, ge=0)
    checkpoint_every: PositiveInt = 200
    lr_decay_from: DecayFrom = 0.5
    pool_size: int = Field(
        0,
        ge=0,
        le=1000,
        # left out of a run's key while 0: runs keyed before the pool existed stay valid (alap.loop.params_key)
        exclude_if=lambda size: size == 0,
        description="CycleGAN only: generated images each discriminator also learns from (the reference's 50; "
        "0: only the newest batch)",
    )


class DistParams(Strict):
    """How many processes compute one training run (train, condense, distill, ``alap compress``), not what they
    compute: every process takes ``1/nproc`` of each batch of the run's batch size, gradients are averaged by
    torch DistributedDataParallel and BatchNorm statistics are those of the whole batch, so the result is the
    1-process run's up to float rounding (tests/test_dist.py). ``nproc > 1`` relaunches the command under
    ``torchrun --nproc-per-node nproc`` (alap/launch.py); ``backend`` ``auto`` is NCCL on CUDA and gloo on CPU."""

    nproc: PositiveInt = Field(1, description="processes per run (on CUDA: one GPU each)")
    backend: Literal["auto", "gloo", "nccl"] = "auto"


class LatencySweep(Strict):
    """The latency budgets of a sweep: one point per name in ``points``, ``<device>-<p50>ms`` (``cpu-t2-33ms``:
    the fewest channels removed whose measured p50 on cpu-t2 meets 33 ms; alap.compress.latency_plan), each on
    ``backend`` at ``batch_size``. A point's name is its folder, the suffix of its DVC stages
    (``prune-latency@<task>-cpu-t2-33ms``), its report row and its MLflow run; the other prune settings
    (min_width, round_to, ...) are the ``prune`` section's."""

    points: list[str] = Field(
        default_factory=list, description="point names <device>-<p50>ms, device cpu-t<N> or cuda<K>, e.g. cpu-t2-33ms"
    )
    backend: LatencyBackend = Field(
        "onnxruntime", description="runtime every budget holds in (onnxruntime-int8: cpu-t<N> points only)"
    )
    batch_size: PositiveInt = Field(1, description="images per forward pass every budget holds at")
    tolerance: float = Field(0.05, gt=0, lt=1, description="how far under its budget a plan should land")

    @model_validator(mode="after")
    def _named_points(self) -> LatencySweep:
        for name in self.points:
            parsed = parse_latency_point(name)
            if parsed is None:
                raise ValueError(
                    f"point {name!r}: expected <device>-<p50>ms with device cpu-t<N> or cuda<K>, e.g. cpu-t2-33ms"
                )
            if latency_point_name(*parsed) != name:
                raise ValueError(f"point {name!r}: write it {latency_point_name(*parsed)!r} (one name per budget)")
            if parsed[1] <= 0:
                raise ValueError(f"point {name!r}: the p50 budget must be above 0 ms")
            try:
                int8_on_cpu(parsed[0], self.backend)
            except ValueError as exc:
                raise ValueError(f"point {name!r}: {exc}") from None
        if len(set(self.points)) != len(self.points):
            raise ValueError(f"points must be distinct, got {self.points}")
        return self

    def target(self, name: str) -> LatencyTarget:
        """The budget the point ``name`` (one of ``points``) plans for."""
        device, p50_ms = parse_latency_point(name)
        return LatencyTarget(
            device=device, backend=self.backend, batch_size=self.batch_size, p50_ms=p50_ms, tolerance=self.tolerance
        )


class SweepParams(Strict):
    """The sweep points: one per fraction of MACs to remove (``s0.75``, with prune.target's measure) and one per
    latency budget on a device (``cpu-t2-33ms``). dvc.yaml iterates both lists, so with a ``dvc`` section both
    are written out, empty or not."""

    sparsities: list[float] = Field(
        default_factory=list,
        description="one sweep point per fraction of MACs to remove; empty with prune.target 'latency', whose one "
        "point is its budget, or when the sweep has only latency points",
    )
    latency: LatencySweep = Field(LatencySweep(), description="one sweep point per p50 budget on a device")

    @model_validator(mode="after")
    def _in_range(self) -> SweepParams:
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


class QuantizeParams(Strict):
    """Lower precision beside fp32: what the pipeline also measures of each model (the benchmark of methods stays
    fp32; int8 at the paper's size is bench-latency's)."""

    int8: bool = Field(
        False,
        description="also measure every profiled and evaluated model's static int8 quantization in ONNX Runtime "
        "(alap.profile.quantize, calibrated on the task's first training inputs): its latency as backend "
        "onnxruntime-int8 on the cpu-t<N> devices, its quality as int8.* metrics (int8.fid, int8.lpips_teacher, ...)",
    )


class PromoteParams(Strict):
    """The gates a registered student must pass to become champion, and which passing one wins.

    ``alap promote``, the promotion flow and its nightly deployment all read this section, so the gates are written
    once; a flag or flow parameter overrides a gate for one run through :meth:`with_overrides`, validated alike.
    """

    device: str = Field(
        "cpu-t2",
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="profiled device whose latency gates (e.g. cpu-t2, cuda0); names the alias "
        "<device>-champion, so letters, digits, '-' and '_' only",
    )
    backend: Literal["torch", "onnxruntime"] = Field("onnxruntime", description="runtime the latency gate reads")
    max_p50_ms: float = Field(
        33.0,
        gt=0,
        allow_inf_nan=False,
        description="batch-1 median latency limit on device/backend (33 ms: 30 frames/s)",
    )
    max_fid_ratio: float = Field(
        1.10,
        gt=0,
        allow_inf_nan=False,
        description="the student's FID at most this times the teacher's: no visible loss",
    )
    max_lpips_teacher: float = Field(
        0.05, gt=0, allow_inf_nan=False, description="LPIPS to the teacher's output at most this: it still imitates it"
    )
    prefer: Literal["quality", "speed"] = Field(
        "quality", description="among passing versions: the lowest FID (quality) or the lowest latency (speed)"
    )
    precisions: list[Literal["fp32", "int8"]] = Field(
        default_factory=lambda: ["fp32"],
        min_length=1,
        description="the precisions each version is judged at, each by its own values: fp32 (the model's metrics and "
        "device/backend's latency) and int8 (its static int8 quantization's, measured with quantize.int8: int8.fid, "
        "int8.lpips_teacher and the latency of backend onnxruntime-int8 on device); the best passing pair wins",
    )

    @model_validator(mode="after")
    def _precisions(self) -> PromoteParams:
        if len(set(self.precisions)) != len(self.precisions):
            raise ValueError(f"precisions must be distinct, got {self.precisions}")
        if "int8" in self.precisions:
            int8_on_cpu(self.device, INT8_BACKEND)
        return self

    def with_overrides(self, **gates: object) -> PromoteParams:
        """These gates with the given ones replaced (``None`` keeps this section's value), validated like it."""
        given = {name: value for name, value in gates.items() if value is not None}
        try:
            return PromoteParams.model_validate({**self.model_dump(), **given})
        except ValidationError as exc:
            problems = [
                f"promote.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})" for e in exc.errors()
            ]
            raise ValueError("invalid promotion gates: " + "; ".join(problems)) from None


class DvcRoster(Strict):
    """What dvc.yaml iterates over, per kind of stage. DVC's templating cannot filter ``run_tasks`` or look a
    value up by task name, so these lists spell out what ``tasks`` and ``run_tasks`` already say; alap checks
    them (:meth:`Params._roster_matches`) and, when they are off, says the exact lines to write."""

    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)  # `import` is a Python keyword

    generate: list[str] = Field(default_factory=list, description="built-in tasks: data@<task> writes data/<task>")
    train: list[str] = Field(default_factory=list, description="tasks whose teacher train@<task> trains")
    imports: dict[str, Path] = Field(
        default_factory=dict, alias="import", description="import@<task>: task -> its teacher file (a dep of the stage)"
    )


REMOVED_KEYS = {
    ("prune", "sparsity"): "each sweep point brings its own (sweep.sparsities); delete the key",
    **{
        ("distill", f"w_{name}"): f"renamed distill.lambda_{name} (loss weights are lambda_* in every section)"
        for name in ("teacher", "target", "feature", "gan")
    },
}


class Params(Strict):
    """The whole of params.yaml."""

    profile_name: str = Field(description="which ready profile these params came from (demo, paper, or yours)")
    seed: int = 0
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    run_tasks: list[str] = Field(min_length=1, description="the tasks (keys of `tasks`) the pipeline runs")
    dvc: DvcRoster | None = Field(None, description="run_tasks as dvc.yaml iterates them (DVC pipelines only)")
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
    quantize: QuantizeParams = QuantizeParams()
    promote: PromoteParams = Field(PromoteParams(), description="the gates of `alap promote` and the promotion flow")
    dist: DistParams = DistParams()

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, raw: Any) -> Any:
        """Keys an earlier alap read: say what replaced them rather than 'extra inputs are not permitted'."""
        if isinstance(raw, dict):
            for (section, key), why in REMOVED_KEYS.items():
                if isinstance(raw.get(section), dict) and raw[section].get(key) is not None:
                    raise ValueError(f"{section}.{key} was removed: {why}")
        return raw

    @model_validator(mode="before")
    @classmethod
    def _builtin_task_defaults(cls, raw: Any) -> Any:
        """A built-in task needs only its name: its layout and classes are the generator's, its root data/<name>."""
        from alap.data.tasks import SYNTHETIC_TASKS

        if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict):
            return raw
        tasks = {}
        for name, task in raw["tasks"].items():
            info = SYNTHETIC_TASKS.get(name)
            if isinstance(task, dict) and task.get("source", "synthetic") == "synthetic" and info is not None:
                builtin = {"layout": info.layout, "num_classes": info.num_classes}
                for key, value in builtin.items():
                    if task.get(key, value) != value:
                        raise ValueError(
                            f"tasks.{name}.{key}: the built-in task {name} has {key} {value!r}, "
                            f"got {task[key]!r} (leave it out)"
                        )
                task = {**builtin, "root": f"data/{name}", **task}
            tasks[name] = task
        return {**raw, "tasks": tasks}

    @model_validator(mode="after")
    def _known_tasks(self) -> Params:
        from alap.data.tasks import SYNTHETIC_TASKS

        unknown = [t for t in self.run_tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"run_tasks names unknown tasks {unknown}; defined in `tasks`: {sorted(self.tasks)}")
        for name, task in self.tasks.items():
            if task.source == "synthetic" and name not in SYNTHETIC_TASKS:
                raise ValueError(
                    f"tasks.{name}: source 'synthetic' needs a built-in task name, one of {sorted(SYNTHETIC_TASKS)}"
                )
            if self.crop_size(name) > self.load_size(name):  # checked here, where an unset load_size is resolved
                raise ValueError(
                    f"tasks.{name}.crop_size ({self.crop_size(name)}) must not exceed its load_size "
                    f"({self.load_size(name)}; default data.image_size)"
                )
        if any(self.tasks[t].arch == "unet" for t in self.run_tasks):
            smallest = min(self.crop_size(t) for t in self.run_tasks if self.tasks[t].arch == "unet")
            if 2**self.model.unet.num_downs > smallest:
                raise ValueError(
                    f"model.unet.num_downs={self.model.unet.num_downs} halves {smallest}-pixel "
                    f"images below 1 pixel; use at most {smallest.bit_length() - 1}"
                )
        return self

    @model_validator(mode="after")
    def _points_match_the_target(self) -> Params:
        """A sweep has points: sparsities (prune.target's measure) and latency budgets. prune.target 'latency' is
        one point, its prune.latency budget, for `alap compress` and the sweep flow; dvc.yaml's latency points
        are sweep.latency.points, next to the sparsity points of prune.target."""
        points = self.sweep.latency.points
        if self.prune.target != "latency":
            if not self.sweep.sparsities and not points:
                raise ValueError(
                    f"sweep: prune.target {self.prune.target!r} needs at least one point in sweep.sparsities "
                    "or sweep.latency.points"
                )
            return self
        if self.dvc is not None:
            budget = latency_point_name(self.prune.latency.device, self.prune.latency.p50_ms)
            raise ValueError(
                "prune.target 'latency' with dvc: dvc.yaml's latency budgets are sweep points: list them in "
                f"sweep.latency.points (e.g. {budget!r}) "
                "and keep prune.target for the sparsity points (macs, channels or threshold)"
            )
        if self.sweep.sparsities or points:
            raise ValueError(
                "sweep: prune.target 'latency' plans one point, its prune.latency budget; leave sweep.sparsities "
                "and sweep.latency.points empty"
            )
        return self

    @model_validator(mode="after")
    def _dvc_sweep_written_out(self) -> Params:
        """dvc.yaml reads ``${sweep.latency.points}`` from the params file itself: absent, DVC fails to template."""
        if self.dvc is not None and not {"latency"} <= self.sweep.model_fields_set:
            raise ValueError(
                "sweep.latency: dvc.yaml iterates sweep.latency.points; write latency: {points: []} for none"
            )
        if self.dvc is not None and "points" not in self.sweep.latency.model_fields_set:
            raise ValueError("sweep.latency.points: dvc.yaml iterates it; write points: [] for none")
        return self

    @model_validator(mode="after")
    def _batches_split_over_processes(self) -> Params:
        """Each process takes an equal share of every batch (alap.dist.World.shard), so a batch size must divide."""
        nproc = self.dist.nproc
        sizes = {"train.batch_size": self.train.batch_size}
        overrides = {name: task.train.batch_size for name, task in self.tasks.items()}
        sizes.update({f"tasks.{name}.train.batch_size": size for name, size in overrides.items() if size})
        for key, size in sizes.items():
            if size % nproc:
                raise ValueError(f"{key} ({size}) does not split over dist.nproc={nproc} processes: use a multiple")
        return self

    @model_validator(mode="after")
    def _roster_matches(self) -> Params:
        if self.dvc is None:
            return self
        run = [self.tasks[t] for t in self.run_tasks]
        want = DvcRoster.model_validate(
            {
                "generate": [t for t, p in zip(self.run_tasks, run) if p.source == "synthetic"],
                "train": [t for t, p in zip(self.run_tasks, run) if p.teacher is None],
                "import": {t: p.teacher.checkpoint for t, p in zip(self.run_tasks, run) if p.teacher is not None},
            }
        )
        if self.dvc != want:
            shown = want.model_dump(mode="json")
            raise ValueError(
                "dvc: does not match tasks and run_tasks; dvc.yaml iterates these lists, so write "
                f"dvc: {{generate: {shown['generate']}, train: {shown['train']}, "
                f"import: {shown['import']}}}"
            )
        folder_roots = {t: p.root for t, p in zip(self.run_tasks, run) if p.source == "folder"}
        for name, root in folder_roots.items():
            if Path(root) != Path("data") / name:
                raise ValueError(
                    f"tasks.{name}.root is {str(root)!r}; dvc.yaml reads a task's data from "
                    f"data/{name}: move or link the folder there (alap compress takes any folder)"
                )
        return self

    def at_latency_point(self, name: str) -> Params:
        """These params as the latency point ``name`` of ``sweep.latency.points`` is made: prune.target 'latency'
        on its budget (the other prune settings kept); its sweep is that one point."""
        if name not in self.sweep.latency.points:
            raise ValueError(f"latency point {name!r} is not in sweep.latency.points {self.sweep.latency.points}")
        prune = self.prune.model_copy(
            update={"target": "latency", "sparsity": None, "latency": self.sweep.latency.target(name)}
        )
        return self.model_copy(update={"prune": prune})

    def train_for(self, task_name: str) -> TrainParams:
        """The ``train`` section with ``tasks.<task_name>.train``'s overrides applied."""
        return self.train.model_copy(update=self.tasks[task_name].train.model_dump(exclude_none=True))

    def condense_for(self, task_name: str) -> CondenseParams:
        """The ``condense`` section with ``tasks.<task_name>.condense``'s overrides applied."""
        return self.condense.model_copy(update=self.tasks[task_name].condense.model_dump(exclude_none=True))

    def discriminator_for(self, task_name: str) -> DiscriminatorParams:
        """``model.discriminator`` with ``tasks.<task_name>.discriminator``'s overrides applied."""
        overrides = self.tasks[task_name].discriminator.model_dump(exclude_none=True)
        return self.model.discriminator.model_copy(update=overrides)

    def load_size(self, task_name: str) -> int:
        """The square side a task's images are resized to (whole images: validation, evaluation, profiling)."""
        return self.tasks[task_name].load_size or self.data.image_size

    def crop_size(self, task_name: str) -> int:
        """The side of a task's training crops (its load size when it does not crop)."""
        return self.tasks[task_name].crop_size or self.load_size(task_name)


class ParamsError(UserError):
    """params.yaml is missing, not YAML, or does not validate; the message lists every bad key path."""


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``path``; raise :class:`ParamsError` naming the file and each bad key path."""
    return load_validated(path, Params, ParamsError, hint="copy one of configs/*.yaml there")


M = TypeVar("M", bound=BaseModel)


def load_validated(path: str | Path, model: type[M], error: type[ValueError], hint: str = "") -> M:
    """Read a YAML mapping from ``path`` into ``model``; every failure is an ``error`` naming the file and,
    for validation failures, each bad key path with what was expected and what was given."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory; expected a params file")
    if not path.is_file():
        raise error(f"{path}: params file not found" + (f" ({hint})" if hint else ""))
    try:
        raw = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file; expected a YAML params file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "<top level>"
            got = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}{got}")
        if len(problems) == 1:  # one problem, one line
            raise error(f"{path}: invalid parameter {problems[0]}") from None
        raise error("\n  - ".join([f"{path}: invalid parameters:", *problems])) from None
