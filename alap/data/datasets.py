"""Folder datasets that real data and the synthetic tasks plug into alike.

An item is a dict: ``"A"`` the input (RGB in [-1, 1], or a one-hot mask), ``"B"`` the target (RGB in
[-1, 1]) and ``"name"`` the file stem. Every dataset checks all of its files when it is built (see
:mod:`alap.data.images`), so bad data fails before training with a :class:`DataError`, never mid-run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from alap.data.errors import DataError
from alap.data.images import (check_mask, list_images, load_onehot, load_rgb, match_names, read_checked,
                              rgb_tensor)

LAYOUTS = ("mask_image", "paired", "paired_ab", "unpaired")
Item = dict[str, Any]


def _check_size(image_size: int) -> int:
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    return image_size


def _check_all(paths: list[Path]) -> None:
    for path in paths:
        read_checked(path)


class FolderDataset(Dataset):
    """Shared behaviour: ``real_targets()`` gives the images of the target domain, for FID and KID."""

    def real_targets(self) -> Dataset:
        """Paired data: the dataset itself, whose ``"B"`` are the real targets."""
        return self


class PairedFolder(FolderDataset):
    """``root/split/A/x.png`` paired with ``root/split/B/x.png`` (names must match)."""

    def __init__(self, root: str | os.PathLike, split: str, image_size: int) -> None:
        self.size = _check_size(image_size)
        folder = Path(root) / split
        self.dir_a, self.dir_b = folder / "A", folder / "B"
        a = list_images(self.dir_a, f"the '{split}' input images (A) of a paired dataset")
        b = list_images(self.dir_b, f"the '{split}' target images (B), one per file in {self.dir_a}")
        self.names = match_names(a, b, self.dir_a, self.dir_b)
        self.paths = [(a[n], b[n]) for n in self.names]
        _check_all([p for pair in self.paths for p in pair])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Item:
        path_a, path_b = self.paths[index]
        return {"A": load_rgb(path_a, self.size), "B": load_rgb(path_b, self.size), "name": self.names[index]}


class PairedAB(FolderDataset):
    """pix2pix side-by-side files ``root/split/x.png``, twice as wide as high: left half A, right half B."""

    def __init__(self, root: str | os.PathLike, split: str, image_size: int) -> None:
        self.size = _check_size(image_size)
        folder = Path(root) / split
        images = list_images(folder, "side-by-side A|B images (width = 2 x height)")
        self.names = sorted(images)
        self.paths = [images[n] for n in self.names]
        for path in self.paths:
            width, height = read_checked(path).size
            if width != 2 * height:
                raise DataError(f"{path}: size {width}x{height}; a side-by-side A|B image must be twice as "
                                f"wide as it is high (expected width {2 * height})")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Item:
        with Image.open(self.paths[index]) as image:
            width, height = image.size
            half = width // 2
            a = rgb_tensor(image.crop((0, 0, half, height)), self.size)
            b = rgb_tensor(image.crop((half, 0, width, height)), self.size)
        return {"A": a, "B": b, "name": self.names[index]}


class MaskImageFolder(FolderDataset):
    """``root/split/mask/x.png`` (class ids, one channel) with ``root/split/image/x.*``; A is one-hot."""

    def __init__(self, root: str | os.PathLike, split: str, image_size: int, num_classes: int) -> None:
        self.size = _check_size(image_size)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise DataError(f"num_classes must be an integer >= 2 for layout 'mask_image', got {num_classes!r}")
        self.num_classes = num_classes
        folder = Path(root) / split
        self.dir_mask, self.dir_image = folder / "mask", folder / "image"
        masks = list_images(self.dir_mask, f"the '{split}' class-id masks (one channel, ids < {num_classes})")
        images = list_images(self.dir_image, f"the '{split}' images, one per mask in {self.dir_mask}")
        self.names = match_names(masks, images, self.dir_mask, self.dir_image)
        self.paths = [(masks[n], images[n]) for n in self.names]
        for mask_path, image_path in self.paths:
            mask_size = check_mask(mask_path, num_classes)
            image_size_found = read_checked(image_path).size
            if mask_size != image_size_found:
                raise DataError(f"{mask_path}: mask is {mask_size[0]}x{mask_size[1]} but its image {image_path} "
                                f"is {image_size_found[0]}x{image_size_found[1]}; they must be the same size")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Item:
        mask_path, image_path = self.paths[index]
        return {"A": load_onehot(mask_path, self.size, self.num_classes), "B": load_rgb(image_path, self.size),
                "name": self.names[index]}


class ImageFolder(FolderDataset):
    """One folder of target-domain images as items ``{"B", "name"}``: the real images FID compares with."""

    def __init__(self, folder: str | os.PathLike, image_size: int, expected: str) -> None:
        self.size = _check_size(image_size)
        self.folder = Path(folder)
        images = list_images(self.folder, expected)
        self.names = sorted(images)
        self.paths = [images[n] for n in self.names]
        _check_all(self.paths)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Item:
        return {"B": load_rgb(self.paths[index], self.size), "name": self.names[index]}


class UnpairedFolder(FolderDataset):
    """CycleGAN training data: ``root/{split}A`` and ``root/{split}B``, no correspondence between them.

    ``len`` is the number of A images. Each read of item i draws a B image from a generator seeded by
    (seed, i, how many times item i was read before), so every pass pairs A with fresh B images and a
    run with the same seed and access order sees the same pairs.
    """

    def __init__(self, root: str | os.PathLike, split: str, image_size: int, seed: int = 0) -> None:
        self.size = _check_size(image_size)
        self.seed = seed
        self.dir_a, self.dir_b = Path(root) / f"{split}A", Path(root) / f"{split}B"
        a = list_images(self.dir_a, f"the '{split}' images of domain A (CycleGAN layout {split}A/{split}B)")
        self.targets = ImageFolder(self.dir_b, image_size,
                                   f"the '{split}' images of domain B (CycleGAN layout {split}A/{split}B)")
        self.names = sorted(a)
        self.paths = [a[n] for n in self.names]
        _check_all(self.paths)
        self.reads = np.zeros(len(self.names), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Item:
        draw = np.random.default_rng([self.seed, index, int(self.reads[index])])
        self.reads[index] += 1
        b_index = int(draw.integers(len(self.targets)))
        return {"A": load_rgb(self.paths[index], self.size), "B": self.targets[b_index]["B"],
                "name": self.names[index]}

    def real_targets(self) -> Dataset:
        return self.targets


class UnpairedEval(FolderDataset):
    """Evaluation of an unpaired task: the ``{split}A`` images, with their hidden ground truth from
    ``{split}A_gt`` as ``"B"`` when that folder exists (then names must match), and the real domain-B
    images of ``{split}B`` through :meth:`real_targets`."""

    def __init__(self, root: str | os.PathLike, split: str, image_size: int) -> None:
        self.size = _check_size(image_size)
        root = Path(root)
        self.dir_a, self.dir_gt, self.dir_b = root / f"{split}A", root / f"{split}A_gt", root / f"{split}B"
        a = list_images(self.dir_a, f"the '{split}' images of domain A (CycleGAN layout {split}A/{split}B)")
        self.names = sorted(a)
        self.paths = [a[n] for n in self.names]
        self.truth: list[Path] | None = None
        if self.dir_gt.exists():
            gt = list_images(self.dir_gt, f"the ground truth of each image in {self.dir_a}, under the same name")
            match_names(a, gt, self.dir_a, self.dir_gt)
            self.truth = [gt[n] for n in self.names]
        _check_all(self.paths + (self.truth or []))
        self.targets = ImageFolder(self.dir_b, image_size, f"the real '{split}' images of domain B")

    @property
    def has_ground_truth(self) -> bool:
        return self.truth is not None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Item:
        item: Item = {"A": load_rgb(self.paths[index], self.size), "name": self.names[index]}
        if self.truth is not None:
            item["B"] = load_rgb(self.truth[index], self.size)
        return item

    def real_targets(self) -> Dataset:
        return self.targets


def _need_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise DataError(f"unknown dataset layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def open_dataset(layout: str, root: str | os.PathLike, split: str, image_size: int,
                 num_classes: int | None = None, seed: int = 0, for_eval: bool = False) -> FolderDataset:
    """The dataset for ``layout``; ``for_eval`` only matters for unpaired data (ground truth, real B)."""
    _need_layout(layout)
    if layout == "mask_image":
        if num_classes is None:
            raise DataError("layout 'mask_image' needs num_classes (the number of class ids in the masks)")
        return MaskImageFolder(root, split, image_size, num_classes)
    if layout == "paired":
        return PairedFolder(root, split, image_size)
    if layout == "paired_ab":
        return PairedAB(root, split, image_size)
    if for_eval:
        return UnpairedEval(root, split, image_size)
    return UnpairedFolder(root, split, image_size, seed)


def channels(layout: str, num_classes: int | None = None) -> tuple[int, int]:
    """(input_nc, output_nc) of a generator for ``layout``: one-hot masks have one channel per class."""
    _need_layout(layout)
    if layout == "mask_image":
        if num_classes is None:
            raise DataError("layout 'mask_image' needs num_classes to know the input channel count")
        return num_classes, 3
    return 3, 3

