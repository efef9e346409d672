"""Typed settings of the three ALAP-AE steps, mounted in params.yaml as ``condense:``, ``prune:`` and ``distill:``.

Why here and not in alap/config.py: the compression code validates its own inputs (a Python user calls
``prune(...)`` without any params.yaml), so the ranges live next to the code that relies on them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in params.yaml must never fall back to a default silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CondenseParams(_Strict):
    """Continue training the teacher with its task loss plus a sparsity penalty that drives whole channels to zero.

    The penalty is ``weight * ramp(step) * sum |scale factor|`` over every prunable channel (Network Slimming's
    L1 on BatchNorm gamma, extended to affine InstanceNorm weights and to channel gates), optionally plus
    ``group_l1_weight * ramp(step) * sum ||filter||_2`` (group lasso on each out-channel's filter). ``ramp`` grows
    linearly from 0 to 1 over ``warmup_steps`` so the task loss is not shocked at the start.

    An unpaired (CycleGAN) task's condensed network is, like its teacher, the checkpoint with the best validation
    FID, here among those after the warm-up (alap/selection.py): continuing the GAN game for 200 steps moved
    horse2zebra's from val FID 162 to 313, and to 284 without the penalty (reports/horse2zebra.md).
    """

    steps: PositiveInt = Field(200, description="optimiser steps of condensing")
    lr: float = Field(2e-4, gt=0, le=1e-1, description="learning rate of the generator and discriminator(s)")
    scale_lr: float = Field(
        1e-2,
        gt=0,
        le=1.0,
        description="learning rate of the scale factors (norm gammas, gates): Adam moves a "
        "parameter by about lr per step, so at the task's lr a factor of 1 could not reach 0 within a short run",
    )
    sparsity_weight: float = Field(
        1e-3,
        ge=0,
        le=10,
        description="weight of the L1 penalty on channel scale factors (Network Slimming: "
        "1e-5..1e-4 for classifiers; generators with an L1 task loss of weight 100 need more)",
    )
    group_l1_weight: float = Field(0.0, ge=0, le=10, description="weight of the group-L1 penalty on filters (0 = off)")
    warmup_steps: int = Field(40, ge=0, description="steps over which the penalty weight ramps linearly from 0")
    checkpoint_every: PositiveInt = Field(100, description="resume checkpoint period in steps")
    # added after runs were keyed: stays out of the dump while unset, so those keys still match
    validate_every: PositiveInt | None = Field(
        None,
        exclude_if=lambda every: every is None,
        description="unpaired tasks: steps between validation FIDs (condensing keeps the best one after the "
        "warm-up); null = every checkpoint_every",
    )
    report_threshold: float = Field(
        1e-2,
        ge=0.0,
        description="scale factor below which the condense report (table, plot) counts a channel as emptied",
    )

    @model_validator(mode="after")
    def _warmup_fits(self) -> CondenseParams:
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must not exceed steps ({self.steps})")
        return self


# The runtimes a latency budget can hold in: PyTorch eager, ONNX Runtime on the fp32 export, and ONNX Runtime on
# its static int8 quantization (alap.profile.quantize; onnxruntime's int8 kernels are a CPU path here).
LatencyBackend = Literal["torch", "onnxruntime", "onnxruntime-int8"]
INT8_BACKEND = "onnxruntime-int8"


def int8_on_cpu(device: str, backend: str) -> None:
    """Refuse ``backend`` onnxruntime-int8 on a CUDA ``device``: the int8 model is timed by ONNX Runtime's CPU
    kernels (VNNI), so a CUDA budget in it would be a CPU timing under a GPU's name."""
    if backend == INT8_BACKEND and not device.startswith("cpu-t"):
        raise ValueError(
            f"backend {INT8_BACKEND!r} runs on the CPU (onnxruntime's int8 kernels), not on {device}: "
            "use a cpu-t<N> device, or backend torch or onnxruntime on CUDA"
        )


class LatencyTarget(_Strict):
    """A p50 budget on one device x backend x batch size: what ``prune.target: latency`` plans for.

    Latency depends on layer shapes, not weight values, so the planner times candidate architectures (freshly
    initialised, never trained) and caches each timing per device, backend and input shape
    (alap.profile.candidates). Backend ``onnxruntime-int8`` times each candidate's int8 quantization, CPU only.
    """

    device: str = Field("cpu-t2", description="device spec the budget holds on: cpu-t<N> or cuda<K>")
    backend: LatencyBackend = Field(
        "onnxruntime",
        description="runtime the student will run in: torch, onnxruntime (fp32) or onnxruntime-int8 (its static "
        "int8 quantization, cpu-t<N> devices only)",
    )
    batch_size: PositiveInt = Field(1, description="images per forward pass")
    p50_ms: float = Field(gt=0, allow_inf_nan=False, description="median latency budget in milliseconds")
    tolerance: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="the plan should land within this fraction under the budget (a wider gap is reported, since "
        "removing one channel less would exceed the budget)",
    )

    @model_validator(mode="after")
    def _device_spec(self) -> LatencyTarget:
        import re

        if not re.fullmatch(r"cpu-t\d+|cuda\d+", self.device):
            raise ValueError(f"device {self.device!r}: expected cpu-t<N> (N threads) or cuda<K>")
        int8_on_cpu(self.device, self.backend)
        return self


class PruneParams(_Strict):
    """Which channels to remove physically from the condensed network.

    ``target`` picks how the global threshold on the scale factors is set:
    - ``threshold``: remove every channel whose scale factor is below ``threshold``;
    - ``channels``: remove the fraction ``sparsity`` of all prunable channels (lowest scale factors first; a channel
      shared by coupled layers, like the ResNet trunk, counts once);
    - ``macs``: search the threshold that removes at least the fraction ``sparsity`` of the teacher's MACs;
    - ``latency``: along the same ranking, the fewest channels removed whose *measured* p50 on ``latency.device``
      meets ``latency.p50_ms`` (alap.compress.latency_plan); takes no ``sparsity``.
    Kept widths are optionally rounded up to a multiple of ``round_to`` (never below ``round_to`` nor above the
    layer's width) so the student maps well onto SIMD lanes and tensor cores; ``auto`` is the multiple measured to
    pay for the generator kind on the target's device (alap.compress.latency_plan.auto_round_to), 1 without one.
    In params.yaml ``sparsity`` is never set: each sweep point brings its own (``sweep.sparsities``).
    """

    target: Literal["threshold", "channels", "macs", "latency"] = "macs"
    sparsity: float | None = Field(
        None, ge=0.0, lt=1.0, description="fraction of channels or MACs to remove (targets 'channels' and 'macs')"
    )
    threshold: float = Field(1e-2, ge=0.0, description="scale-factor threshold (target 'threshold')")
    round_to: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        "auto",
        description="round kept widths up to a multiple of this (1 = off); auto: what was measured to pay on the "
        "latency target's device for the generator kind (8 for a U-Net on CPU), else 1",
    )
    min_width: int = Field(2, ge=1, description="never keep fewer channels than this in a layer")
    min_width_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="never keep fewer than this fraction of a layer's width in the network being pruned (rounded "
        "up; the larger of this and min_width holds; 0 = off). Against the collapse of whole stretches to "
        "min_width at high sparsity",
    )
    fold_bias: bool = Field(True, description="fold the constant output of removed channels into the next layer")
    probe_samples: int = Field(8, ge=1, le=256, description="inputs used to measure removed channels' mean output")
    latency: LatencyTarget | None = Field(None, description="the budget of target 'latency' (only with it)")

    @model_validator(mode="after")
    def _latency_with_its_target(self) -> PruneParams:
        if (self.target == "latency") != (self.latency is not None):
            raise ValueError(
                "prune.latency {device, backend, batch_size, p50_ms} is the budget of target 'latency': give both "
                f"or neither (target is {self.target!r}, latency is {'set' if self.latency else 'unset'})"
            )
        if self.target == "latency" and self.sparsity is not None:
            raise ValueError("target 'latency' takes no sparsity: the budget decides how much goes")
        return self


class DistillParams(_Strict):
    """Fine-tune the pruned student from a teacher (the condensed network by default).

    Loss = ``lambda_teacher * L1(student, teacher)`` + ``lambda_target * L1(student, ground truth)`` (paired tasks only)
    + ``lambda_feature * sum_l L1(adapter_l(student_l), teacher_l)`` over ``feature_layers`` (1x1-conv adapters, student
    width -> teacher width) + ``lambda_gan * GAN(D(student))`` with the teacher's discriminator.
    """

    steps: PositiveInt = Field(300, description="optimiser steps of distillation")
    lr: float = Field(2e-4, gt=0, le=1e-1)
    beta1: float = Field(0.5, ge=0, lt=1)
    teacher: Literal["condensed", "original", "pruned"] = Field(
        "condensed", description="which network teaches (the ablation compares all three)"
    )
    lambda_teacher: float = Field(10.0, ge=0, description="L1 between student and teacher outputs")
    lambda_target: float = Field(10.0, ge=0, description="L1 between student output and ground truth (paired tasks)")
    lambda_feature: float = Field(1.0, ge=0, description="L1 between adapted student features and teacher features")
    feature_layers: list[str] | dict[Literal["unet", "resnet"], list[str]] = Field(
        default_factory=lambda: {"unet": ["down3", "up3"], "resnet": ["block3"]},
        description='layers whose outputs are distilled, e.g. ["down2", "up3"] (U-Net) or ["block4"] (ResNet), or '
        'one list per generator kind ({"unet": [...], "resnet": [...]}) when tasks mix kinds; empty = output-only',
    )
    lambda_gan: float = Field(
        0.2, ge=0, description="adversarial loss with the teacher's discriminator (0 = off; needs target images)"
    )
    gan_mode: Literal["lsgan", "vanilla"] = "lsgan"
    checkpoint_every: PositiveInt = Field(100, description="resume checkpoint period in steps")
    validate_every: PositiveInt = Field(100, description="validation period in steps (the best student is kept)")
    val_batch_size: PositiveInt = Field(16, description="batch size of the validation passes")

    def layers_for(self, kind: str) -> list[str]:
        """The feature layers to distill for a generator of ``kind`` (``unet`` or ``resnet``)."""
        if isinstance(self.feature_layers, dict):
            return list(self.feature_layers.get(kind, []))  # type: ignore[call-overload]
        return list(self.feature_layers)

    @model_validator(mode="after")
    def _some_loss(self) -> DistillParams:
        lists = self.feature_layers.values() if isinstance(self.feature_layers, dict) else [self.feature_layers]
        for names in lists:
            if len(set(names)) != len(names):
                raise ValueError(f"feature_layers must be distinct, got {names}")
        # Feature distillation counts only if some kind has layers; the per-kind check happens in distill().
        if self.lambda_teacher + self.lambda_target + self.lambda_feature * any(lists) + self.lambda_gan <= 0:
            raise ValueError(
                "distill needs at least one loss with a positive weight "
                "(lambda_teacher, lambda_target, lambda_feature with feature_layers, lambda_gan)"
            )
        return self
