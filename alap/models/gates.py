"""Channel gates: a per-output-channel scale factor for convs that have no norm layer after them.

Condensing penalises per-channel scale factors (norm weights, as in Network Slimming). A conv whose
output goes straight into an activation or a skip concatenation (the U-Net's outermost and innermost
down-convs) has no such factor, so we give it one: a ``gate`` parameter (ones) on the conv and a
forward hook ``out * gate``. Before pruning, :func:`fold_gates` multiplies the gate into the conv's
weight and bias and removes parameter and hook: the function is unchanged and Torch-Pruning sees a
plain conv. The hook is a module-level function, so gated models deep-copy and pickle cleanly.
"""

from __future__ import annotations

import torch
from torch import nn

from alap.models.norm import CONV_TYPES, NORM_TYPES

GATE = "gate"


def _apply_gate(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return output * getattr(module, GATE).view(1, -1, 1, 1)


def _out_channels(conv: nn.Module) -> int:
    if conv.groups != 1:
        raise ValueError(f"channel gates support groups=1 convs only, got groups={conv.groups}")
    return conv.out_channels


def gated_convs(model: nn.Module) -> list[str]:
    """Names of the modules that carry a gate, in module order."""
    return [name for name, m in model.named_modules() if GATE in m._parameters]


def gateable_convs(model: nn.Module) -> list[str]:
    """Names of the convs whose output is not followed by a norm layer, except the output layer.

    "Followed by" means the next module in the same ``nn.Sequential``; the output layer is the last
    conv in module order (its width is fixed by the image channels, so it is never pruned).
    """
    convs = [name for name, m in model.named_modules() if isinstance(m, CONV_TYPES)]
    gateable = []
    for name in convs[:-1]:
        parent_name, _, index = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        followed_by_norm = (
            isinstance(parent, nn.Sequential)
            and index.isdigit()
            and int(index) + 1 < len(parent)
            and isinstance(parent[int(index) + 1], NORM_TYPES)
        )
        if not followed_by_norm:
            gateable.append(name)
    return gateable


def add_gates(model: nn.Module, conv_names: list[str]) -> None:
    """Register a ``gate`` parameter (ones, shape [C_out]) and the gating hook on each named conv."""
    for name in conv_names:
        try:
            conv = model.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f"cannot gate {name!r}: no such module in {type(model).__name__}") from err
        if not isinstance(conv, CONV_TYPES):
            raise ValueError(f"cannot gate {name!r}: it is a {type(conv).__name__}, expected Conv2d/ConvTranspose2d")
        if GATE in conv._parameters:
            raise ValueError(f"cannot gate {name!r}: it already has a gate")
        ones = torch.ones(_out_channels(conv), device=conv.weight.device, dtype=conv.weight.dtype)
        conv.register_parameter(GATE, nn.Parameter(ones))
        conv.register_forward_hook(_apply_gate)


def _remove_gate_hooks(module: nn.Module) -> None:
    for hook_id, hook in list(module._forward_hooks.items()):
        if hook is _apply_gate:
            del module._forward_hooks[hook_id]
            module._forward_hooks_with_kwargs.pop(hook_id, None)
            module._forward_hooks_always_called.pop(hook_id, None)


@torch.no_grad()
def fold_gates(model: nn.Module) -> list[str]:
    """Multiply every gate into its conv's weight (and bias), drop gate and hook; return their names."""
    names = gated_convs(model)
    for name in names:
        conv = model.get_submodule(name)
        gate = getattr(conv, GATE).detach()
        # Conv2d weight is [out, in, kh, kw]; ConvTranspose2d weight is [in, out, kh, kw].
        shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
        conv.weight.mul_(gate.view(shape))
        if conv.bias is not None:
            conv.bias.mul_(gate)
        delattr(conv, GATE)
        _remove_gate_hooks(conv)
    return names
