"""Named intermediate features of a generator, for feature distillation (GAN Compression's 1x1-conv adapters).

Names are the same for a teacher and its pruned student (same topology, other widths), so a student feature can
be matched to the teacher's through an adapter:
- U-Net with L levels: ``down1`` .. ``downL`` are the down path from the input side (``down1`` is the input
  layer's output, ``downL`` the bottleneck); ``up1`` .. ``up{L-1}`` are the up path in execution order, from the
  bottleneck (``up1``) to the layer just before the output conv.
- ResNet: ``stem``, ``down1``, ``down2``, ``block1`` .. ``blockN`` (output of each residual block), ``up1``, ``up2``.
A conv feature is taken after its norm when it has one (the normalised map, before the activation), else after
the conv (and its gate).
"""

from __future__ import annotations

import torch
from torch import nn

from alap.compress.scale_factors import trace_layers
from alap.models import ResnetGenerator, UnetGenerator


def feature_names(model: nn.Module) -> list[str]:
    """Every feature name ``model`` offers, input side first."""
    if isinstance(model, UnetGenerator):
        levels = len(model.levels())
        return [f"down{k}" for k in range(1, levels + 1)] + [f"up{k}" for k in range(1, levels)]
    if isinstance(model, ResnetGenerator):
        return ["stem", "down1", "down2", *[f"block{k}" for k in range(1, len(model.blocks()) + 1)], "up1", "up2"]
    raise TypeError(f"feature distillation supports alap U-Net and ResNet generators, got {type(model).__name__}")


def feature_modules(model: nn.Module, names: list[str], example_input: torch.Tensor) -> dict[str, nn.Module]:
    """The module whose output is each named feature; unknown names raise with the list of valid ones."""
    valid = feature_names(model)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown feature layer(s) {unknown} for a {type(model).__name__}; valid: {valid}")
    layers = trace_layers(model, example_input[:1])
    after = {layer.conv: layer.conv if layer.norm is None else layer.norm for layer in layers}
    if isinstance(model, UnetGenerator):
        levels = model.levels()
        convs = {f"down{k + 1}": level.downconv for k, level in enumerate(levels)}
        convs.update({f"up{k}": levels[len(levels) - k].upconv for k in range(1, len(levels))})
        return {n: after[convs[n]] for n in names}
    stem, down1, down2, up1, up2, _ = model.outer_convs()
    table: dict[str, nn.Module] = {
        "stem": after[stem],
        "down1": after[down1],
        "down2": after[down2],
        "up1": after[up1],
        "up2": after[up2],
    }
    table.update({f"block{k}": block for k, block in enumerate(model.blocks(), start=1)})
    return {n: table[n] for n in names}


class FeatureTap:
    """Forward hooks that keep the latest output of each named module in ``self.features``."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._hooks = [module.register_forward_hook(self._keep(name)) for name, module in modules.items()]

    def _keep(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.features[name] = output

        return hook

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


def make_adapters(
    student: nn.Module, teacher: nn.Module, names: list[str], example_input: torch.Tensor
) -> nn.ModuleDict:
    """One 1x1 conv per feature, student width -> teacher width (training-only: never saved with the student)."""
    widths = {}
    for role, model in (("student", student), ("teacher", teacher)):
        tap = FeatureTap(feature_modules(model, names, example_input))
        was = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(example_input[:1])
        finally:
            tap.remove()
            model.train(was)
        widths[role] = {n: tap.features[n].shape[1] for n in names}
    return nn.ModuleDict({n: nn.Conv2d(widths["student"][n], widths["teacher"][n], kernel_size=1) for n in names}).to(
        example_input.device
    )
