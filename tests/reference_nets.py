"""A compact re-statement of the reference generators and discriminator (junyanz/pytorch-CycleGAN-and-pix2pix,
models/networks.py), written independently of alap: in-place activations, width rules from ngf, as the reference
builds them. Shared by the layout tests (test_models.py) and the import tests (test_import.py)."""

from __future__ import annotations

import functools

import torch
from torch import nn


def ref_norm(norm: str):
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True)
    return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)


class RefUnetBlock(nn.Module):
    def __init__(
        self, outer, inner, input_nc=None, sub=None, outermost=False, innermost=False, norm="batch", drop=False
    ):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        nl = ref_norm(norm)
        down = nn.Conv2d(input_nc or outer, inner, 4, 2, 1, bias=bias)
        if outermost:
            seq = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias)
            seq = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, nl(outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias)
            seq = [nn.LeakyReLU(0.2, True), down, nl(inner), sub, nn.ReLU(True), up, nl(outer)]
            seq += [nn.Dropout(0.5)] * drop
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf, norm, drop):
        super().__init__()
        block = RefUnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(ngf * 8, ngf * 8, sub=block, norm=norm, drop=drop)
        for mult in (4, 2, 1):
            block = RefUnetBlock(ngf * mult, ngf * mult * 2, sub=block, norm=norm)
        self.model = RefUnetBlock(output_nc, ngf, input_nc=input_nc, sub=block, outermost=True, norm=norm)

    def forward(self, x):
        return self.model(x)


class RefResnetBlock(nn.Module):
    def __init__(self, dim, norm, drop):
        super().__init__()
        bias, nl = norm == "instance", ref_norm(norm)
        seq = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), nl(dim), nn.ReLU(True)]
        seq += [nn.Dropout(0.5)] * drop
        self.conv_block = nn.Sequential(*seq, nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), nl(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnet(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, norm, drop, n_blocks):
        super().__init__()
        bias, nl = norm == "instance", ref_norm(norm)
        seq = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), nl(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            seq += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=bias), nl(ngf * mult * 2), nn.ReLU(True)]
        seq += [RefResnetBlock(ngf * 4, norm, drop) for _ in range(n_blocks)]
        for mult in (4, 2):
            up = nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=bias)
            seq += [up, nl(ngf * mult // 2), nn.ReLU(True)]
        seq += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def ref_discriminator(input_nc, ndf, n_layers, norm):
    bias, nl = norm == "instance", ref_norm(norm)
    seq, mult = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2**n, 8)
        seq += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1, bias=bias),
            nl(ndf * mult),
            nn.LeakyReLU(0.2, True),
        ]
    net = nn.Module()
    net.model = nn.Sequential(*seq, nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    return net


def reference(kind, norm, dropout, ngf=64, num_downs=8, n_blocks=9, input_nc=3, output_nc=3):
    if kind == "unet":
        return RefUnet(input_nc, output_nc, num_downs, ngf, norm, dropout)
    return RefResnet(input_nc, output_nc, ngf, norm, dropout, n_blocks)
