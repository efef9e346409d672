"""Normalisation layers and weight initialisation: the two rules every network here shares.

They follow the reference pix2pix/CycleGAN code base (junyanz/pytorch-CycleGAN-and-pix2pix,
models/networks.py) so that its checkpoints load key for key:
- ``batch``: ``BatchNorm2d(affine=True)`` with running statistics;
- ``instance``: ``InstanceNorm2d(affine=False, track_running_stats=False)`` -- no state-dict keys at all.
  ``affine=True`` is offered because condensing needs a per-channel scale factor after every conv;
  it adds ``weight``/``bias`` keys at the same module path.
- A conv followed by a norm has a bias only for instance norm (the reference's ``use_bias`` rule:
  BatchNorm's own shift makes a conv bias redundant).
"""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "instance")
NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d)
CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


def check_norm(norm: str, affine: bool) -> None:
    """Reject a norm name or affine setting the reference layout has no place for."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not isinstance(affine, bool):
        raise ValueError(f"norm_affine must be a bool, got {affine!r}")
    if norm == "batch" and not affine:
        raise ValueError("norm_affine=False is only supported for norm='instance' (BatchNorm2d is always affine)")


def make_norm(norm: str, channels: int, affine: bool) -> nn.Module:
    """Build the normalisation layer for ``channels`` feature maps."""
    check_norm(norm, affine)
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    return nn.InstanceNorm2d(channels, affine=affine, track_running_stats=False)


def conv_bias(norm: str) -> bool:
    """Whether a conv that feeds a norm layer gets a bias (the reference's ``use_bias`` rule)."""
    return norm == "instance"


def init_weights(model: nn.Module, gain: float = 0.02) -> None:
    """Reference ``normal`` init: conv weights ~ N(0, gain), biases 0, BatchNorm weights ~ N(1, gain).

    InstanceNorm affine parameters keep their ones/zeros start, which is what a channel scale factor
    should begin at. Channel gates (``gate`` parameters) are left untouched.
    """
    for module in model.modules():
        if isinstance(module, (*CONV_TYPES, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
