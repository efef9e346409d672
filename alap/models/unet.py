"""pix2pix U-Net generator with an explicit output width for every conv.

The module tree and state-dict keys equal the reference ``UnetGenerator`` built from nested
``UnetSkipConnectionBlock``s (``model.model.1.model.3...``), so a reference ``latest_net_G.pth``
loads with ``strict=True``. Unlike the reference, each level's widths are free, because channel
pruning narrows every conv independently and the pruned net must be rebuilt from its widths.

Level ``i`` (0 = outermost) has a down-conv ``x -> down[i]`` and an up-conv producing ``up_out[i]``
(``up_out[0] = output_nc``). The up-conv of a non-innermost level reads the inner level's output,
which is the skip concatenation ``cat([inner input, inner up output])``, i.e.
``down[i] + up_out[i + 1]`` channels; the innermost up-conv reads ``down[-1]`` channels.
Activations are not in-place: Torch-Pruning cannot trace InstanceNorm followed by in-place ReLU.
"""

from __future__ import annotations

import torch
from torch import nn

from alap.models.norm import conv_bias, init_weights, make_norm


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down-conv, the inner levels, up-conv; prepends its input to its output (skip)."""

    def __init__(
        self,
        in_nc: int,
        down_nc: int,
        up_in_nc: int,
        up_nc: int,
        submodule: UnetSkipConnectionBlock | None,
        *,
        outermost: bool,
        innermost: bool,
        norm: str,
        norm_affine: bool,
        dropout: bool,
    ) -> None:
        super().__init__()
        if outermost and innermost:
            raise ValueError("a U-Net level cannot be both outermost and innermost (a U-Net needs >= 2 levels)")
        if (submodule is None) != innermost:
            raise ValueError("exactly the innermost U-Net level has no submodule")
        self.outermost = outermost
        self.innermost = innermost
        bias = conv_bias(norm)
        downconv = nn.Conv2d(in_nc, down_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        if outermost:
            upconv = nn.ConvTranspose2d(up_in_nc, up_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(up_in_nc, up_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), downconv, nn.ReLU(), upconv, make_norm(norm, up_nc, norm_affine)]
        else:
            upconv = nn.ConvTranspose2d(up_in_nc, up_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2),
                downconv,
                make_norm(norm, down_nc, norm_affine),
                submodule,
                nn.ReLU(),
                upconv,
                make_norm(norm, up_nc, norm_affine),
            ]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    @property
    def downconv(self) -> nn.Conv2d:
        return self.model[0 if self.outermost else 1]

    @property
    def upconv(self) -> nn.ConvTranspose2d:
        return self.model[3 if self.outermost or self.innermost else 5]

    @property
    def submodule(self) -> UnetSkipConnectionBlock | None:
        if self.innermost:
            return None
        return self.model[1 if self.outermost else 3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net whose ``len(down)`` levels each halve the resolution (input side must divide 2**levels).

    ``down[i]``: output width of level i's down-conv; ``up[i]``: output width of level ``i + 1``'s
    up-conv (the outermost up-conv always produces ``output_nc``). Dropout(0.5) sits where the
    reference puts it: after the up-path of levels 4 .. len(down)-2 (the extra ``ngf*8`` levels).
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        down: list[int],
        up: list[int],
        norm: str = "batch",
        norm_affine: bool = True,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        if len(down) < 2 or len(up) != len(down) - 1:
            raise ValueError(f"U-Net needs >= 2 down widths and one fewer up widths, got {len(down)} and {len(up)}")
        self.norm = norm
        self.norm_affine = norm_affine
        self.dropout = dropout
        levels = len(down)
        up_out = [output_nc, *up]
        block: UnetSkipConnectionBlock | None = None
        for i in reversed(range(levels)):
            innermost = i == levels - 1
            block = UnetSkipConnectionBlock(
                in_nc=input_nc if i == 0 else down[i - 1],
                down_nc=down[i],
                up_in_nc=down[i] if innermost else down[i] + up_out[i + 1],
                up_nc=up_out[i],
                submodule=block,
                outermost=i == 0,
                innermost=innermost,
                norm=norm,
                norm_affine=norm_affine,
                dropout=dropout and 4 <= i <= levels - 2,
            )
        self.model = block
        init_weights(self)

    def levels(self) -> list[UnetSkipConnectionBlock]:
        """The skip blocks from outermost to innermost (reads the live modules, so sees pruning)."""
        blocks = []
        block: UnetSkipConnectionBlock | None = self.model
        while block is not None:
            blocks.append(block)
            block = block.submodule
        return blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
