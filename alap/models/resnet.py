"""CycleGAN ResNet generator with an explicit output width for every conv.

Module tree and state-dict keys equal the reference ``ResnetGenerator`` (``model.N...``,
``ResnetBlock.conv_block``): ReflectionPad2d(3) + 7x7 conv, two stride-2 3x3 convs, residual blocks,
two ConvTranspose2d(stride 2, output_padding 1) upsamplings, ReflectionPad2d(3) + 7x7 conv, Tanh.

``upsample="resize"`` replaces each transposed conv with nearest-neighbour 2x resizing followed by a 3x3 conv
(Odena et al., 2016, "Deconvolution and Checkerboard Artifacts"): a stride-2 transposed conv with a 3x3 kernel
gives the even and odd output pixels different numbers of kernel taps, which leaves a texture on a fixed 2-pixel
lattice that a CycleGAN teacher trained at 64 px never unlearns (reports/horse2zebra.md). Reference checkpoints
keep ``"transpose"``; the state-dict keys then differ from the reference's after the trunk.

Widths: ``encoder = [stem, down1]`` (7x7 conv and first stride-2 conv), ``trunk`` (second stride-2
conv and the second conv of every block: the residual additions force one shared width), ``blocks``
(each block's inner width, free per block), ``decoder = [up1, up2]``.
Activations are not in-place: Torch-Pruning cannot trace InstanceNorm followed by in-place ReLU.
"""

from __future__ import annotations

import torch
from torch import nn

from alap.models.norm import conv_bias, init_weights, make_norm

UPSAMPLINGS = ("transpose", "resize")


class ResnetBlock(nn.Module):
    """Residual block ``x + conv_block(x)``; the inner width may differ from the trunk width."""

    def __init__(self, dim: int, inner: int, norm: str, norm_affine: bool, dropout: bool) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, inner, kernel_size=3, bias=bias),
            make_norm(norm, inner, norm_affine),
            nn.ReLU(),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(inner, dim, kernel_size=3, bias=bias),
            make_norm(norm, dim, norm_affine),
        ]
        self.conv_block = nn.Sequential(*layers)

    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.conv_block if isinstance(m, nn.Conv2d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet generator (input side must divide 4)."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        encoder: list[int],
        trunk: int,
        blocks: list[int],
        decoder: list[int],
        norm: str = "instance",
        norm_affine: bool = False,
        dropout: bool = False,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLINGS:
            raise ValueError(f"unknown upsampling {upsample!r}, expected one of {UPSAMPLINGS}")
        if len(encoder) != 2 or len(decoder) != 2:
            raise ValueError(f"ResNet needs 2 encoder and 2 decoder widths, got {len(encoder)} and {len(decoder)}")
        self.norm = norm
        self.norm_affine = norm_affine
        self.dropout = dropout
        self.upsample = upsample
        bias = conv_bias(norm)

        def conv_norm_relu(conv: nn.Module, width: int) -> list[nn.Module]:
            return [conv, make_norm(norm, width, norm_affine), nn.ReLU()]

        stem, down1 = encoder
        up1, up2 = decoder
        layers: list[nn.Module] = [nn.ReflectionPad2d(3)]
        layers += conv_norm_relu(nn.Conv2d(input_nc, stem, kernel_size=7, bias=bias), stem)
        layers += conv_norm_relu(nn.Conv2d(stem, down1, kernel_size=3, stride=2, padding=1, bias=bias), down1)
        layers += conv_norm_relu(nn.Conv2d(down1, trunk, kernel_size=3, stride=2, padding=1, bias=bias), trunk)
        layers += [ResnetBlock(trunk, inner, norm, norm_affine, dropout) for inner in blocks]
        for cin, cout in ((trunk, up1), (up1, up2)):
            upconv: nn.Module
            if upsample == "transpose":
                upconv = nn.ConvTranspose2d(cin, cout, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias)
            else:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                upconv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=bias)
            layers += conv_norm_relu(upconv, cout)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(up2, output_nc, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def outer_convs(self) -> list[nn.Module]:
        """Convs outside the residual blocks in order: stem, down1, down2, up1, up2, output."""
        return [m for m in self.model if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]

    def blocks(self) -> list[ResnetBlock]:
        return [m for m in self.model if isinstance(m, ResnetBlock)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
