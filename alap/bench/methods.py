"""The compared methods as data: where each student comes from, how it is trained, and from which teacher.

Reading the table answers what differs between two rows; each ablation changes one thing of ``alap``:
- ``alap_original_teacher`` / ``alap_pruned_teacher``: the teacher (the patent distils from the pruned network);
- ``alap_output_only``: no feature distillation;
- ``alap_no_condense``: no condense step. Without condensing there are no trained scale factors (a reference
  CycleGAN's InstanceNorm has none at all), so channels are chosen by the L1 norm of their filters -- the same
  student as the ``l1_norm`` baseline -- and the teacher is the original network (no condensed one exists).
  ``l1_norm`` vs ``alap_no_condense`` isolates distillation; ``alap_no_condense`` vs ``alap_original_teacher``
  isolates condensing (with its channel choice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alap.bench.params import ALL_METHODS


@dataclass(frozen=True)
class Method:
    name: str
    source: Literal["uniform", "l1", "tp", "slim"]
    tune: Literal["scratch", "objective", "distill"]
    teacher: Literal["condensed", "original", "pruned"] | None
    features: bool
    summary: str

    @property
    def condenses(self) -> bool:
        """Whether the method's compression time includes condensing the teacher."""
        return self.source == "slim"


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "uniform",
            "uniform",
            "scratch",
            None,
            False,
            "teacher architecture, all widths scaled by one multiplier, trained from scratch for the teacher's steps",
        ),
        Method(
            "l1_norm",
            "l1",
            "objective",
            None,
            False,
            "L1-norm filter pruning (Li et al. 2017) of the original teacher, fine-tuned on the task objective",
        ),
        Method(
            "slimming",
            "slim",
            "objective",
            None,
            False,
            "network slimming: condense + prune, fine-tuned on the task objective (no teacher)",
        ),
        Method(
            "tp_magnitude",
            "tp",
            "objective",
            None,
            False,
            "Torch-Pruning MagnitudePruner (MagnitudeImportance) one shot on the original teacher, fine-tuned on the "
            "task objective",
        ),
        Method(
            "alap",
            "slim",
            "distill",
            "condensed",
            True,
            "ALAP-AE: condense + prune + distill (outputs and features) from the condensed teacher",
        ),
        Method(
            "alap_original_teacher",
            "slim",
            "distill",
            "original",
            True,
            "ALAP, distilled from the original (uncondensed) teacher",
        ),
        Method(
            "alap_pruned_teacher",
            "slim",
            "distill",
            "pruned",
            True,
            "ALAP, distilled from the pruned network before fine-tuning (the patent's teacher)",
        ),
        Method(
            "alap_output_only", "slim", "distill", "condensed", False, "ALAP without feature distillation (output-only)"
        ),
        Method(
            "alap_no_condense",
            "l1",
            "distill",
            "original",
            True,
            "ALAP without condense: L1-norm-pruned original teacher, distilled from the original teacher",
        ),
    ]
}
BASELINES = ("uniform", "l1_norm", "slimming", "tp_magnitude")
ABLATIONS = ("alap_original_teacher", "alap_pruned_teacher", "alap_output_only", "alap_no_condense")

if tuple(METHODS) != ALL_METHODS:  # the params' Literal and this table must name the same methods, in order
    raise RuntimeError(f"alap.bench.methods.METHODS {tuple(METHODS)} != params.ALL_METHODS {ALL_METHODS}")
