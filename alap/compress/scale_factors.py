"""Per-channel scale factors of a generator: which parameter says how much each conv output channel matters.

ALAP-AE condenses channels by driving their *scale factors* to zero and then removes the channels whose factor
is (near) zero. A conv's output channel ``c`` has the factor ``|gamma_c|`` of the affine norm right after it
(BatchNorm weight, or InstanceNorm weight once condensing made it affine), times ``|gate_c|`` when the conv also
carries a channel gate (a ``gate`` parameter multiplied onto its output; alap.models.gates). A conv with neither
(an output layer, or a non-condensed imported generator) has no scale factor.

Which norm follows which conv is found by tracing one forward pass (tensor identity between a conv's output and a
norm's input) rather than from module names, so the same code serves the U-Net, the ResNet and imported
reference-layout generators. The first conv executed reads the image (the *input layer*) and the last one writes
it (the *output layer*); neither is ever penalised or pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)
NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d)
Role = Literal["input", "hidden", "output"]


@dataclass(frozen=True)
class ChannelLayer:
    """One conv of a generator, the norm that directly follows it (if any) and its role in the network.

    ``out_hw`` is the spatial size of its output seen while tracing; with the conv's widths it gives its MACs.
    """

    name: str
    conv: nn.Module
    norm_name: str | None
    norm: nn.Module | None
    role: Role
    out_hw: tuple[int, int]

    @property
    def gate(self) -> torch.Tensor | None:
        gate = getattr(self.conv, "gate", None)
        return gate if isinstance(gate, torch.Tensor) else None

    @property
    def norm_weight(self) -> torch.Tensor | None:
        """The norm's per-channel scale ``gamma`` when the norm is affine."""
        if self.norm is None or not getattr(self.norm, "affine", False):
            return None
        return self.norm.weight

    def has_scale(self) -> bool:
        return self.norm_weight is not None or self.gate is not None

    def scale(self) -> torch.Tensor:
        """``|gamma| * |gate|`` per output channel (detached); raises if the conv has no scale factor."""
        factors = [t.detach().abs().flatten() for t in (self.norm_weight, self.gate) if t is not None]
        if not factors:
            raise ValueError(
                f"conv {self.name!r} has no channel scale factor (no affine norm after it and no gate); "
                "run condense first (alap.compress.condense.prepare_for_condense adds them)"
            )
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        return out


def trace_layers(model: nn.Module, example_input: torch.Tensor) -> list[ChannelLayer]:
    """Run one forward pass of ``example_input`` and describe every conv of ``model`` in execution order.

    Raises if a conv runs more than once (weight sharing is outside what pruning can keep consistent) or the model
    has fewer than two convs.
    """
    names = {module: name for name, module in model.named_modules()}
    order: list[nn.Module] = []
    hw_out: dict[nn.Module, tuple[int, int]] = {}
    producer: dict[int, nn.Module] = {}
    follower: dict[nn.Module, nn.Module] = {}
    keep_alive: list[torch.Tensor] = []  # ids are only unique while the tensors live

    def on_conv(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if module in hw_out:
            raise ValueError(f"conv {names[module]!r} runs more than once per forward pass; cannot prune it")
        order.append(module)
        hw_out[module] = tuple(output.shape[-2:])  # type: ignore[assignment]
        producer[id(output)] = module
        keep_alive.append(output)

    def on_norm(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        conv = producer.get(id(inputs[0]))
        if conv is not None:
            follower[conv] = module

    hooks = []
    for module in model.modules():
        if isinstance(module, CONV_TYPES):
            hooks.append(module.register_forward_hook(on_conv))
        elif isinstance(module, NORM_TYPES):
            hooks.append(module.register_forward_hook(on_norm))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if len(order) < 2:
        raise ValueError(f"expected a generator with at least two convs, found {len(order)}")
    layers = []
    for i, conv in enumerate(order):
        norm = follower.get(conv)
        role: Role = "input" if i == 0 else "output" if i == len(order) - 1 else "hidden"
        layers.append(ChannelLayer(names[conv], conv, None if norm is None else names[norm], norm, role, hw_out[conv]))
    return layers


def hidden_layers(layers: list[ChannelLayer]) -> list[ChannelLayer]:
    """The convs whose output channels may be condensed and pruned (all but the input and output layers)."""
    return [layer for layer in layers if layer.role == "hidden"]


def conv_macs(conv: nn.Module, in_channels: int, out_channels: int, out_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of one conv at the given widths, counted as :func:`alap.metrics.cost.count_gmacs` counts
    them -- a transposed conv as a dense conv over its *output* (the convention of published numbers) -- so that a
    MACs target means the ``gmacs`` the reports show."""
    kh, kw = conv.kernel_size
    per_position = in_channels * out_channels * kh * kw // conv.groups
    h, w = out_hw
    return per_position * h * w
