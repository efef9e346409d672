"""PatchGAN discriminator (reference ``NLayerDiscriminator``, same keys), used to train teachers.

Not pruned, so it takes the reference's plain ``ndf``/``n_layers`` arguments rather than widths.
LeakyReLUs are not in-place, like everywhere in alap, so autograd and tracing never trip over them.
"""

from __future__ import annotations

import torch
from torch import nn

from alap.models.norm import check_norm, conv_bias, init_weights, make_norm


class NLayerDiscriminator(nn.Module):
    """``n_layers`` stride-2 4x4 convs, one stride-1 conv, and a 1-channel patch score map."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if input_nc < 1 or ndf < 1 or n_layers < 1:
            raise ValueError(
                f"NLayerDiscriminator needs input_nc, ndf, n_layers >= 1, got {input_nc}, {ndf}, {n_layers}"
            )
        check_norm(norm, norm == "batch")
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            next_width = ndf * min(2**n, 8)
            layers += [
                nn.Conv2d(width, next_width, kernel_size=4, stride=stride, padding=1, bias=bias),
                make_norm(norm, next_width, affine=norm == "batch"),
                nn.LeakyReLU(0.2),
            ]
            width = next_width
        layers.append(nn.Conv2d(width, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
