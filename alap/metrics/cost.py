"""Model cost: multiply-accumulates (GMACs) and parameter count (millions).

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2), which counts the ops that
actually run, so pruned, gated or foreign models need no per-layer bookkeeping here.

One rule is replaced: for a transposed conv torch counts ``N * H_in * W_in * C_in * C_out * k*k`` (the
scatter form, the arithmetic minimum), while the numbers this field publishes and compares
(thop, torchprofile, Torch-Pruning, GAN Compression's 56.8 G ResNet, the U-Net's 18.15 G) count it as
a dense conv over its *output*: ``N * H_out * W_out * C_out * (C_in / groups) * k*k``, i.e. ``stride**2``
times more for the stride-2 up-convs. alap reports the conventional count so its ``gmacs`` are
comparable with published ones; tests/test_cost.py checks both forms against analytic counts.
Only convs and matrix products count; norms, activations and gates are elementwise and ignored.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_aten = torch.ops.aten
_CONV_OPS = (_aten.convolution, _aten._convolution, _aten.convolution_overrideable)


def _conv_flops_over_output(
    x_shape, w_shape, _bias, _stride, _padding, _dilation, _transposed, *args, out_shape=None, **kwargs
) -> int:
    """FLOPs (2 per MAC) of a conv counted per output element, plain and transposed alike.

    Receives the shapes of ``aten.convolution(input, weight, bias, stride, padding, dilation,
    transposed, output_padding, groups)``; each output element reads ``C_in / groups`` channels
    through the whole kernel.
    """
    groups = args[1] if len(args) > 1 else kwargs.get("groups", 1)
    return 2 * math.prod(out_shape) * (x_shape[1] // groups) * math.prod(w_shape[2:])


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def count_gmacs(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 256, 256)) -> float:
    """GMACs of one forward pass on an input of ``input_shape`` (eval mode, no grad, model's device)."""
    if len(input_shape) != 4 or any(not isinstance(s, int) or s < 1 for s in input_shape):
        raise ValueError(f"input_shape must be 4 positive ints (N, C, H, W), got {input_shape!r}")
    was_training = model.training
    model.eval()  # BatchNorm in train mode rejects a 1x1 map at batch 1 (the U-Net-256 bottleneck)
    try:
        counter = FlopCounterMode(display=False, custom_mapping={op: _conv_flops_over_output for op in _CONV_OPS})
        with torch.no_grad(), counter:
            model(torch.zeros(input_shape, device=_device_of(model)))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def count_params_m(model: nn.Module) -> float:
    """Trainable and frozen parameters, in millions (buffers such as running stats excluded)."""
    return sum(p.numel() for p in model.parameters()) / 1e6
