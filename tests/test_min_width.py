"""prune.min_width_fraction: a floor per layer relative to its width, against the collapse of whole stretches of
a heavily pruned student to ``min_width`` channels (issue 15); the default 0 keeps the absolute floor alone."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from alap.compress.condense import prepare_for_condense
from alap.compress.params import PruneParams
from alap.compress.prune import min_kept, prune
from alap.models import build_generator, default_arch

SIZE = 32


def _inputs() -> torch.Tensor:
    return torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1


@torch.no_grad()
def _condensed() -> tuple[torch.nn.Module, dict]:
    """A tiny prepared U-Net whose scale factors are skewed towards the inner layers, so that a high MACs sparsity
    empties the outer (expensive) layers down to the floor."""
    torch.manual_seed(0)
    arch = default_arch("unet", 3, 3, ngf=16, norm="batch", num_downs=5)
    model, arch = prepare_for_condense(build_generator(arch), arch, _inputs())
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.uniform_(0.0, 1.0)
    return model.eval(), arch


def _hidden(arch: dict) -> list[int]:
    """Widths of every prunable layer (the input and output layers are never pruned)."""
    return (arch["widths"]["down"] + arch["widths"]["up"])[1:]


def test_min_kept_is_the_larger_floor() -> None:
    assert min_kept(64, PruneParams()) == 7  # the default floor: 10% of the width, ceil(6.4)
    assert min_kept(64, PruneParams(min_width_fraction=0.0)) == 2  # without it, min_width
    assert min_kept(64, PruneParams(min_width=8, min_width_fraction=0.0)) == 8
    assert min_kept(40, PruneParams(min_width_fraction=0.1)) == 4  # exact products are not rounded up further
    assert min_kept(64, PruneParams(min_width=8, min_width_fraction=0.1)) == 8
    assert min_kept(4, PruneParams(min_width=8)) == 4  # never more than the layer has
    with pytest.raises(ValidationError):
        PruneParams(min_width_fraction=1.0)


@pytest.mark.parametrize("floor", [{"min_width": 8}, {"min_width_fraction": 0.25}])
def test_every_layer_keeps_its_floor(floor: dict) -> None:
    model, arch = _condensed()
    unfloored = PruneParams(target="macs", sparsity=0.85, min_width_fraction=0.0)
    assert min(_hidden(prune(model, arch, unfloored, _inputs()).arch)) == 2  # some layer collapses to min_width=2
    settings = unfloored.model_copy(update=floor)
    result = prune(model, arch, settings, _inputs())
    for width, full in zip(_hidden(result.arch), _hidden(arch)):
        assert width >= min(full, max(settings.min_width, math.ceil(settings.min_width_fraction * full)))
    assert result.report["macs_removed_fraction"] >= 0.85


def test_an_unreachable_sparsity_names_the_fraction() -> None:
    model, arch = _condensed()
    with pytest.raises(ValueError, match="min_width_fraction=0.5"):
        prune(model, arch, PruneParams(target="macs", sparsity=0.9, min_width_fraction=0.5), _inputs())
