"""Image grids people look at instead of numbers: one row per test image, labelled columns input | teacher | model |
target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from alap import io
from alap.metrics.pixel import to_uint8

_LABEL_PX = 11  # label height in pixels: readable above 64-pixel tiles

# A fixed, high-contrast palette for label maps (class id -> RGB); enough for CelebAMask-HQ's 19 classes.
_PALETTE = (
    torch.tensor(
        [
            [0, 0, 0],
            [204, 153, 119],
            [90, 56, 37],
            [30, 120, 220],
            [120, 60, 40],
            [240, 200, 80],
            [200, 40, 60],
            [230, 140, 150],
            [60, 180, 75],
            [145, 30, 180],
            [70, 240, 240],
            [240, 50, 230],
            [210, 245, 60],
            [250, 190, 190],
            [0, 128, 128],
            [230, 190, 255],
            [170, 110, 40],
            [255, 250, 200],
            [128, 0, 0],
        ],
        dtype=torch.float32,
    )
    / 127.5
    - 1.0
)


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Map a batch to 3-channel images in [-1, 1]: RGB passes through, one-hot label maps get the palette."""
    if images.shape[1] == 3:
        return images.clamp(-1, 1)
    if images.shape[1] > len(_PALETTE):
        raise ValueError(f"cannot colour {images.shape[1]} classes; the palette has {len(_PALETTE)}")
    ids = images.argmax(1)
    return _PALETTE.to(images.device)[ids].permute(0, 3, 1, 2)


def save_grid(columns: list[torch.Tensor], labels: list[str], path: Path, pad: int = 2) -> None:
    """Write a PNG whose rows are samples and whose columns are the given (N,C,H,W) batches, side by side, each
    under its label (a header row in Pillow's built-in font, cut to the column's width)."""
    if len(labels) != len(columns):
        raise ValueError(f"{len(columns)} grid columns need as many labels, got {labels}")
    tiles = [to_rgb(c.detach().float().cpu()) for c in columns]
    n, _, h, w = tiles[0].shape
    font = ImageFont.load_default(size=_LABEL_PX)
    header = _LABEL_PX + 2 * pad
    canvas = torch.ones(3, header + n * (h + pad) + pad, len(tiles) * (w + pad) + pad)
    for col, batch in enumerate(tiles):
        for row in range(n):
            y, x = header + row * (h + pad), pad + col * (w + pad)
            canvas[:, y : y + h, x : x + w] = batch[row]
    pixels = to_uint8(canvas).permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(pixels))
    draw = ImageDraw.Draw(image)
    for col, label in enumerate(labels):
        x = pad + col * (w + pad)
        while label and draw.textlength(label, font=font) > w:
            label = label[:-1]
        draw.text((x + (w - draw.textlength(label, font=font)) / 2, pad), label, fill=(0, 0, 0), font=font)
    with io.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
