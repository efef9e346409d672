"""Magnitude-pruning baselines on the *original* teacher, through Torch-Pruning's one-shot pruner.

Two criteria, one mechanism (``tp.pruner.MagnitudePruner``, the dependency graph keeps skip concatenations,
residual adds and transposed convs consistent):
- ``l1_importance``: Li et al. 2017, "Pruning Filters for Efficient ConvNets": a filter's score is the L1 norm of
  its own weights; Torch-Pruning's documented "standard L1-norm of the first layer in a group"
  (``p=1, group_reduction="first", normalizer=None``);
- ``magnitude_importance``: Torch-Pruning's default ``MagnitudeImportance`` (group L2 norm over every coupled
  layer, mean-normalised).
Pitfalls handled here (docs/architecture.md): activations are made non-in-place before tracing (Torch-Pruning cannot
follow InstanceNorm into an in-place ReLU), and the student is rebuilt from its read-back widths and loaded strictly, so
a layer the pruner left inconsistent fails loudly instead of producing a wrong network. The input and output convs are
never pruned (their widths are fixed by the images; alap's own prune keeps them too).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from alap.compress.scale_factors import hidden_layers, trace_layers
from alap.models.arch import arch_of, build_generator


def l1_importance() -> tp.importance.Importance:
    """Li et al. 2017: L1 norm of each conv filter (the group's root conv) -- no norm layers, no consumers."""
    return tp.importance.MagnitudeImportance(
        p=1, group_reduction="first", normalizer=None, target_types=[nn.modules.conv._ConvNd]
    )


def magnitude_importance() -> tp.importance.Importance:
    """Torch-Pruning's default magnitude criterion."""
    return tp.importance.MagnitudeImportance()


def max_ratio(model: nn.Module, example_input: torch.Tensor) -> float:
    """The largest pruning ratio that leaves every prunable conv at least one channel.

    Torch-Pruning keeps ``int(width * (1 - ratio))`` channels and silently skips a whole group that would reach 0,
    which makes MACs jump back up; searching only below this bound keeps MACs monotone in the ratio.
    """
    return _ratio_bound(trace_layers(model, example_input[:1]))


def _ratio_bound(layers: list) -> float:
    narrowest = min(layer.conv.out_channels for layer in hidden_layers(layers))
    return 1.0 - 1.0 / narrowest - 1e-9


def magnitude_prune(
    model: nn.Module,
    importance: tp.importance.Importance,
    ratio: float,
    global_pruning: bool,
    example_input: torch.Tensor,
) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned copy of ``model`` (an alap generator) and its arch; ``model`` is not modified.

    ``ratio`` is the fraction of channels removed per layer (``global_pruning=False``) or overall; with global
    pruning no layer loses more than :func:`max_ratio` of its channels.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    work = copy.deepcopy(model).eval()
    for module in work.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    layers = trace_layers(work, example_input[:1])
    ignored = [layers[0].conv, layers[-1].conv]
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # MagnitudePruner is BasePruner's old name
        pruner = tp.pruner.MagnitudePruner(
            work,
            example_input[:1],
            importance=importance,
            pruning_ratio=ratio,
            global_pruning=global_pruning,
            max_pruning_ratio=_ratio_bound(layers),
            ignored_layers=ignored,
        )
        pruner.step()
    arch = arch_of(work)
    student = build_generator(arch).to(example_input.device)
    student.load_state_dict(work.state_dict(), strict=True)
    return student.eval(), arch
