"""The compared methods as data: where each student comes from, how it is trained, and from which teacher.

Reading the table answers what differs between two rows; each ablation changes one field of ``alap``:
- ``alap_original_teacher`` / ``alap_pruned_teacher`` (``teacher``): the patent distils from the pruned network;
- ``alap_output_only`` / ``alap_more_features`` (``features``): no feature distillation, or more and deeper
  feature layers than the pipeline's ``distill.feature_layers`` (:func:`more_feature_layers`);
- ``alap_no_gan`` / ``alap_gan`` (``lambda_gan``): distillation without the adversarial term (outputs and features
  only), or with it at weight 1, as GAN Compression distils, instead of ``distill.lambda_gan`` 0.2 (1/100 of the L1
  terms' weights, teacher 10 + target 10: the ratio slimming's fine-tuning has, pix2pix's lambda_gan 1 to lambda_l1
  100);
- ``alap_strong_target`` (``lambda_target``): the student's outputs are fitted to the ground truth at weight 100,
  the L1 weight of slimming's fine-tuning (pix2pix's lambda_l1), instead of ``distill.lambda_target`` 10, so the
  ground truth outweighs the teacher's outputs (weight 10) as it does in slimming's objective (paired tasks);
- ``alap_no_output_distill`` (``lambda_teacher``): the student's outputs are no longer matched to the teacher's,
  only to the ground truth (paired tasks; features are still distilled), which tests whether the teacher's own
  errors hold a small student back where fine-tuning on the task objective (slimming) moves past them;
- ``alap_beta1`` (``beta1``): distillation's Adam with beta1 0.9, the optimiser slimming fine-tunes with (a pix2pix
  task's ``train.beta1``), instead of ``distill.beta1`` 0.5: the one difference between the two fine-tunings that
  is not in the loss;
- ``alap_no_floor`` (``min_width_fraction``): no floor on a layer's width relative to the teacher's, so heavily
  pruned students collapse to ``prune.min_width`` channels in whole stretches (the demo profile keeps >= 10%);
- ``alap_min_width`` (``min_width``): an absolute floor of 8 channels on every layer besides the relative one;
- ``alap_no_condense`` (``source``): no condense step. Without condensing there are no trained scale factors (a
  reference CycleGAN's InstanceNorm has none at all), so channels are chosen by the L1 norm of their filters -- the
  same student as the ``l1_norm`` baseline -- and the teacher is the original network (no condensed one exists).
  ``l1_norm`` vs ``alap_no_condense`` isolates distillation; ``alap_no_condense`` vs ``alap_original_teacher``
  isolates condensing (with its channel choice).
A field left ``None`` takes the pipeline's params.yaml value, so ``alap`` is exactly what the pipeline produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alap.bench.params import ALL_METHODS


def more_feature_layers(valid: list[str]) -> list[str]:
    """The ``alap_more_features`` layers among a teacher's feature names (alap.compress.features.feature_names):
    a U-Net's ``down2 .. down{L-2}`` and ``up2 .. up{L-2}`` (three levels on each side at the demo's 6 levels,
    where the pipeline distils one), or a ResNet's ``down2`` and every second block (``block2, block4, block6`` of
    6, where the pipeline distils ``block3``)."""
    if "stem" in valid:  # ResNet
        return ["down2", *[n for n in valid if n.startswith("block")][1::2]]
    levels = sum(1 for n in valid if n.startswith("down"))
    return [f"down{k}" for k in range(2, levels - 1)] + [f"up{k}" for k in range(2, levels - 1)]


@dataclass(frozen=True)
class Method:
    """One compared method. ``features``: which layers distillation matches ("pipeline": distill.feature_layers,
    "more": :func:`more_feature_layers`); ``lambda_gan`` / ``lambda_teacher`` / ``lambda_target`` / ``beta1``:
    distill's (None: the pipeline's); ``min_width`` / ``min_width_fraction``: prune's floors of a ``slim`` student
    (None: the pipeline's)."""

    name: str
    source: Literal["uniform", "l1", "tp", "slim"]
    tune: Literal["scratch", "objective", "distill"]
    teacher: Literal["condensed", "original", "pruned"] | None
    features: Literal["none", "pipeline", "more"]
    summary: str
    lambda_gan: float | None = None
    lambda_teacher: float | None = None
    lambda_target: float | None = None
    beta1: float | None = None
    min_width: int | None = None
    min_width_fraction: float | None = None

    @property
    def condenses(self) -> bool:
        """Whether the method's compression time includes condensing the teacher."""
        return self.source == "slim"

    @property
    def floors(self) -> tuple[int | None, float | None]:
        """The prune floors this method's student is made with: methods with equal floors share a student."""
        return self.min_width, self.min_width_fraction


def _alap(name: str, summary: str, **change: object) -> Method:
    """``alap`` with one field changed."""
    fields = dict(source="slim", tune="distill", teacher="condensed", features="pipeline")
    return Method(name=name, summary=summary, **{**fields, **change})  # type: ignore[arg-type]


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "uniform",
            "uniform",
            "scratch",
            None,
            "none",
            "teacher architecture, all widths scaled by one multiplier, trained from scratch for the teacher's steps",
        ),
        Method(
            "l1_norm",
            "l1",
            "objective",
            None,
            "none",
            "L1-norm filter pruning (Li et al. 2017) of the original teacher, fine-tuned on the task objective",
        ),
        Method(
            "slimming",
            "slim",
            "objective",
            None,
            "none",
            "network slimming: condense + prune, fine-tuned on the task objective (no teacher)",
        ),
        Method(
            "tp_magnitude",
            "tp",
            "objective",
            None,
            "none",
            "Torch-Pruning MagnitudePruner (MagnitudeImportance) one shot on the original teacher, fine-tuned on the "
            "task objective",
        ),
        _alap(
            "alap",
            "ALAP-AE: condense + prune + distill (outputs, features and the teacher's discriminator) from the "
            "condensed teacher",
        ),
        _alap("alap_original_teacher", "ALAP, distilled from the original (uncondensed) teacher", teacher="original"),
        _alap(
            "alap_pruned_teacher",
            "ALAP, distilled from the pruned network before fine-tuning (the patent's teacher)",
            teacher="pruned",
        ),
        _alap("alap_output_only", "ALAP without feature distillation (output-only)", features="none"),
        _alap(
            "alap_no_condense",
            "ALAP without condense: L1-norm-pruned original teacher, distilled from the original teacher",
            source="l1",
            teacher="original",
        ),
        _alap(
            "alap_gan",
            "ALAP with the adversarial term in distillation at lambda_gan 1, as GAN Compression, instead of "
            "distill.lambda_gan 0.2",
            lambda_gan=1.0,
        ),
        _alap(
            "alap_no_output_distill",
            "ALAP without matching the teacher's outputs (distill.lambda_teacher 0): outputs fitted to the ground "
            "truth only, features still distilled",
            lambda_teacher=0.0,
        ),
        _alap(
            "alap_no_floor",
            "ALAP without the relative width floor (prune.min_width_fraction 0: layers may keep only prune.min_width "
            "channels)",
            min_width_fraction=0.0,
        ),
        _alap("alap_min_width", "ALAP with every layer kept at >= 8 channels (prune.min_width 8)", min_width=8),
        _alap(
            "alap_more_features",
            "ALAP distilling features at more and deeper layers (U-Net down2-4, up2-4; ResNet down2, blocks 2/4/6)",
            features="more",
        ),
        _alap(
            "alap_beta1",
            "ALAP distilling with Adam beta1 0.9 (the optimiser of slimming's fine-tuning) instead of distill.beta1 "
            "0.5",
            beta1=0.9,
        ),
        _alap(
            "alap_no_gan",
            "ALAP without the adversarial term in distillation (lambda_gan 0: outputs and features only)",
            lambda_gan=0.0,
        ),
        _alap(
            "alap_strong_target",
            "ALAP fitting the outputs to the ground truth at weight 100 (slimming's L1 weight) instead of "
            "distill.lambda_target 10",
            lambda_target=100.0,
        ),
    ]
}
BASELINES = ("uniform", "l1_norm", "slimming", "tp_magnitude")
ABLATIONS = tuple(name for name in METHODS if name.startswith("alap_"))

if tuple(METHODS) != ALL_METHODS:  # the params' Literal and this table must name the same methods, in order
    raise RuntimeError(f"alap.bench.methods.METHODS {tuple(METHODS)} != params.ALL_METHODS {ALL_METHODS}")
