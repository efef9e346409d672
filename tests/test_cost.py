"""GMACs and parameter counts (alap/metrics/cost.py) against analytic counts and published numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from alap.metrics.cost import count_gmacs, count_params_m
from alap.models import build_generator, default_arch


def _raw_torch_gmacs(model: nn.Module, shape: tuple[int, ...]) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(shape))
    return counter.get_total_flops() / 2 / 1e9


def test_conv_matches_analytic_count():
    conv = nn.Conv2d(6, 10, kernel_size=4, stride=2, padding=1)
    # 2 x 16 x 16 outputs x 10 channels, each a dot product over 6 x 4 x 4 inputs
    assert count_gmacs(conv, (2, 6, 32, 32)) * 1e9 == pytest.approx(2 * 16 * 16 * 10 * 6 * 4 * 4)


def test_grouped_conv_counts_inputs_per_group():
    conv = nn.Conv2d(8, 12, kernel_size=3, padding=1, groups=4)
    assert count_gmacs(conv, (1, 8, 10, 10)) * 1e9 == pytest.approx(10 * 10 * 12 * 2 * 3 * 3)


def test_transposed_conv_is_counted_over_its_output():
    up = nn.ConvTranspose2d(6, 10, kernel_size=3, stride=2, padding=1, output_padding=1)
    shape = (2, 6, 16, 16)
    per_output = 2 * 32 * 32 * 10 * 6 * 3 * 3  # the convention of thop/torchprofile/GAN Compression
    per_input = 2 * 16 * 16 * 6 * 10 * 3 * 3  # torch's own rule (scatter form)
    assert count_gmacs(up, shape) * 1e9 == pytest.approx(per_output)
    assert _raw_torch_gmacs(up, shape) * 1e9 == pytest.approx(per_input)  # why alap replaces the rule


@pytest.mark.parametrize(
    "kind,norm,gmacs,params_m",
    [
        ("unet", "batch", 18.15, 54.414),  # pix2pix unet_256, ngf 64 (docs/architecture.md: 18.15 G incl. norm ops)
        ("resnet", "instance", 56.89, 11.378),  # CycleGAN resnet_9blocks, ngf 64 (published 56.8 G)
    ],
)
def test_reference_generators(kind, norm, gmacs, params_m):
    with torch.device("meta"):  # count on the meta device: exact shapes, no memory or compute
        model = build_generator(default_arch(kind, 3, 3, ngf=64, norm=norm))
    measured = count_gmacs(model, (1, 3, 256, 256))
    assert measured == pytest.approx(gmacs, rel=0.003)  # ours counts convs only: 18.140 and 56.799
    assert count_params_m(model) == pytest.approx(params_m, abs=0.001)
    assert count_gmacs(model, (2, 3, 256, 256)) == pytest.approx(2 * measured)


def test_count_gmacs_keeps_mode_and_runs_on_model_device():
    model = build_generator(default_arch("unet", 3, 3, ngf=2, num_downs=5)).train()
    assert count_gmacs(model, (1, 3, 32, 32)) > 0
    assert model.training  # restored after the eval-mode count
    assert count_params_m(nn.Sequential()) == 0.0
    assert count_gmacs(nn.Sequential(), (1, 3, 8, 8)) == 0.0


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 3, 0, 32), (1, 3, 32.0, 32)])
def test_count_gmacs_rejects_bad_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        count_gmacs(nn.Conv2d(3, 3, 1), shape)
