"""Reading image folders: listing, checking every file once, and turning images into tensors.

Checks happen when a dataset is built, before training: a truncated file found at step 10 000 wastes
the run, so every file is verified and decoded once up front and each problem is a :class:`DataError`
naming the file and what was expected.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alap.data.errors import DataError

# What a dataset folder may hold besides its images, never read: notes and metadata (hidden files too). Any other
# file is refused, so that no image in a format alap does not read is dropped without a word.
IGNORED_SUFFIXES = (".txt", ".md", ".json", ".csv", ".yaml", ".yml")
IGNORED_NAMES = ("Thumbs.db", "desktop.ini")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
MASK_MODES = ("L", "P", "I", "I;16")
# 16-bit grey: Pillow's own conversion to RGB clips every value above 255 (most of such an image turns white), so
# alap scales it to 8 bits by its high byte, as Pillow itself reads 16-bit RGB(A) PNG and TIFF files.
SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N")
# 32-bit integer or float pixels: no fixed range to scale from, so no faithful 8-bit image; refused.
UNSCALED_MODES = ("I", "F")
SHOWN_NAMES = 5

log = logging.getLogger("alap.data")


def list_images(folder: Path, expected: str) -> dict[str, Path]:
    """Image files of ``folder`` by file stem, sorted; ``expected`` says what the layout wants there."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder missing; expected {expected}")
    images: dict[str, Path] = {}
    skipped: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            if path.suffix.lower() not in IGNORED_SUFFIXES and path.name not in IGNORED_NAMES:
                raise DataError(
                    f"{path}: not an image alap reads ({', '.join(IMAGE_EXTENSIONS)}) nor a notes or metadata file "
                    f"it leaves alone ({', '.join(IGNORED_SUFFIXES + IGNORED_NAMES)}, hidden files); convert it or "
                    f"move it out of {folder}"
                )
            skipped.append(path.name)
            continue
        if path.stem in images:
            raise DataError(
                f"{folder}: two images share the name {path.stem!r} "
                f"({images[path.stem].name}, {path.name}); names must be unique"
            )
        images[path.stem] = path
    if skipped:
        log.info("%s: skipped %d non-image file(s) (%s)", folder, len(skipped), ", ".join(skipped[:SHOWN_NAMES]))
    if not images:
        raise DataError(f"{folder}: no images (looked for {', '.join(IMAGE_EXTENSIONS)}); expected {expected}")
    return images


def match_names(a: dict[str, Path], b: dict[str, Path], folder_a: Path, folder_b: Path) -> list[str]:
    """The shared, sorted names of two folders that must hold the same names; otherwise a DataError."""
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} missing from {folder_b} (e.g. {', '.join(only_a[:SHOWN_NAMES])})")
        if only_b:
            parts.append(f"{len(only_b)} missing from {folder_a} (e.g. {', '.join(only_b[:SHOWN_NAMES])})")
        raise DataError(f"image names of {folder_a} and {folder_b} differ: {'; '.join(parts)}")
    return sorted(a)


def read_checked(path: Path) -> Image.Image:
    """Open, verify (checksums) and fully decode ``path``; a corrupt or truncated file is a DataError."""
    try:
        with Image.open(path) as probe:
            probe.verify()
        with Image.open(path) as image:  # closes the file (left open for multi-frame formats such as GIF)
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: corrupt or truncated image ({exc})") from exc
    return image


def check_rgb(path: Path) -> tuple[int, int]:
    """Check an input or target image (any colour mode of 8 or 16 bits a channel); return its (width, height)."""
    image = read_checked(path)
    if image.mode in UNSCALED_MODES:
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        raise DataError(
            f"{path}: mode {image.mode} ({kind} pixels) has no fixed range to scale to 8 bits, so alap cannot "
            f"read it faithfully; save inputs and targets as 8- or 16-bit images (masks may keep such modes)"
        )
    return image.size


def as_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: palette, grey, alpha and CMYK images through Pillow, 16-bit grey scaled by its high byte (the
    value // 256, as Pillow reads 16-bit colour), never clipped."""
    if image.mode in SIXTEEN_BIT_GREY:
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    return image.convert("RGB")


def check_mask(path: Path, num_classes: int) -> tuple[int, int]:
    """Check a class-id mask file (single channel, every id < ``num_classes``); return its (width, height)."""
    mask = read_checked(path)
    if mask.mode not in MASK_MODES:
        raise DataError(
            f"{path}: mask has mode {mask.mode}; expected one channel of class ids (mode {' or '.join(MASK_MODES)})"
        )
    highest = int(np.asarray(mask).max())
    if highest >= num_classes:
        raise DataError(
            f"{path}: class id {highest} found, but num_classes is {num_classes} (ids must be 0..{num_classes - 1})"
        )
    return mask.size


def rgb_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """3 x size x size float tensor in [-1, 1]; bicubic resize (as pix2pix does) only when needed."""
    image = as_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0).contiguous()


def onehot_tensor(mask: Image.Image, size: int, num_classes: int) -> torch.Tensor:
    """num_classes x size x size one-hot float tensor; nearest-neighbour resize keeps ids intact."""
    if mask.size != (size, size):
        mask = mask.resize((size, size), Image.Resampling.NEAREST)
    ids = torch.from_numpy(np.asarray(mask).astype(np.int64))
    return torch.nn.functional.one_hot(ids, num_classes).permute(2, 0, 1).float().contiguous()


def load_rgb(path: Path, size: int) -> torch.Tensor:
    with Image.open(path) as image:
        return rgb_tensor(image, size)


def load_onehot(path: Path, size: int, num_classes: int) -> torch.Tensor:
    with Image.open(path) as mask:
        return onehot_tensor(mask, size, num_classes)
