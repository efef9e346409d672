"""Folder datasets that real data and the synthetic tasks plug into alike.

An item is a dict: ``"A"`` the input (RGB in [-1, 1], or a one-hot mask), ``"B"`` the target (RGB in
[-1, 1]; absent where the data has none) and ``"name"`` the file stem. Every image is resized to
load_size x load_size; training items may then be cropped (the pix2pix/CycleGAN load_size/crop_size policy).
Every dataset checks all of its files when it is built (see :mod:`alap.data.images`), so bad data fails
before training with a :class:`DataError`, never mid-run. A split the data does not ship is carved from
another one (see :mod:`alap.data.splits`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from alap.data.errors import DataError
from alap.data.images import check_mask, check_rgb, list_images, load_onehot, load_rgb, match_names, rgb_tensor
from alap.data.splits import SPLITS, Share

LAYOUTS = ("mask_image", "paired", "paired_ab", "unpaired", "images")
Item = dict[str, Any]


def _check_size(load_size: int) -> int:
    if not isinstance(load_size, int) or load_size < 1:
        raise ValueError(f"load_size must be a positive integer, got {load_size!r}")
    return load_size


def _check_crop(crop_size: int | None, load_size: int) -> int | None:
    if crop_size is not None and (not isinstance(crop_size, int) or not 1 <= crop_size <= load_size):
        raise ValueError(f"crop_size must be an integer from 1 to load_size={load_size}, got {crop_size!r}")
    return crop_size


def _serve(names: Iterable[str], folder: Path, share: Share | None) -> list[str]:
    """The sorted names a dataset serves: all of ``folder``'s, or its share of a carve."""
    return sorted(names) if share is None else share.of(list(names), folder)


def _same_size(
    path_a: Path, size_a: tuple[int, int], path_b: Path, size_b: tuple[int, int], what_a: str, what_b: str
) -> None:
    """Paired images must match: resizing both to load_size would stretch one against the other."""
    if size_a != size_b:
        raise DataError(
            f"{path_a}: {what_a} is {size_a[0]}x{size_a[1]} but its {what_b} {path_b} is "
            f"{size_b[0]}x{size_b[1]}; they must be the same size"
        )


class FolderDataset(Dataset):
    """What every folder dataset shares: indexing, seeded random crops and ``real_targets()``.

    Each read of item i draws from a generator seeded by (seed, i, how many times item i was read before):
    the crop window (and an unpaired B image) change from pass to pass, yet a run with the same seed and
    access order sees the same items; a resumed BatchStream replays the order, so it sees them too.
    A dataset given a ``share`` serves only that part of its folder (a split carved from it).
    """

    names: list[str]

    def __init__(self, load_size: int, crop_size: int | None = None, seed: int = 0) -> None:
        self.size = _check_size(load_size)
        self.crop_size = _check_crop(crop_size, self.size)
        self.seed = seed
        self.reads: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Item:
        index = range(len(self))[index]  # negative indices work; past the end raises before a read is counted
        draw = np.random.default_rng([self.seed, index, self.reads[index]])
        self.reads[index] += 1
        item = self._load(index, draw)
        if self.crop_size is None:
            return item
        top, left = (int(x) for x in draw.integers(self.size - self.crop_size + 1, size=2))
        window = (slice(None), slice(top, top + self.crop_size), slice(left, left + self.crop_size))
        return {key: value[window] if torch.is_tensor(value) else value for key, value in item.items()}

    def _load(self, index: int, draw: np.random.Generator) -> Item:
        """Item ``index`` at load_size; ``draw`` is this read's generator (see the class docstring)."""
        raise NotImplementedError

    def real_targets(self) -> Dataset:
        """The images of the target domain, for FID and KID; paired data: the dataset itself (its ``"B"``)."""
        return self


class PairedFolder(FolderDataset):
    """``root/split/A/x.png`` paired with ``root/split/B/x.png`` (names and sizes must match)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        load_size: int,
        *,
        crop_size: int | None = None,
        seed: int = 0,
        share: Share | None = None,
    ) -> None:
        super().__init__(load_size, crop_size, seed)
        folder = Path(root) / split
        self.dir_a, self.dir_b = folder / "A", folder / "B"
        a = list_images(self.dir_a, f"the '{split}' input images (A) of a paired dataset")
        b = list_images(self.dir_b, f"the '{split}' target images (B), one per file in {self.dir_a}")
        self.names = _serve(match_names(a, b, self.dir_a, self.dir_b), folder, share)
        self.paths = [(a[n], b[n]) for n in self.names]
        for path_a, path_b in self.paths:
            _same_size(path_a, check_rgb(path_a), path_b, check_rgb(path_b), "input", "target")

    def _load(self, index: int, draw: np.random.Generator) -> Item:
        path_a, path_b = self.paths[index]
        return {"A": load_rgb(path_a, self.size), "B": load_rgb(path_b, self.size), "name": self.names[index]}


class PairedAB(FolderDataset):
    """pix2pix side-by-side files ``root/split/x.png``, twice as wide as high: left half A, right half B."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        load_size: int,
        *,
        crop_size: int | None = None,
        seed: int = 0,
        share: Share | None = None,
    ) -> None:
        super().__init__(load_size, crop_size, seed)
        folder = Path(root) / split
        images = list_images(folder, "side-by-side A|B images (width = 2 x height)")
        self.names = _serve(images, folder, share)
        self.paths = [images[n] for n in self.names]
        for path in self.paths:
            width, height = check_rgb(path)
            if width != 2 * height:
                raise DataError(
                    f"{path}: size {width}x{height}; a side-by-side A|B image must be twice as "
                    f"wide as it is high (expected width {2 * height})"
                )

    def _load(self, index: int, draw: np.random.Generator) -> Item:
        with Image.open(self.paths[index]) as image:
            width, height = image.size
            half = width // 2
            a = rgb_tensor(image.crop((0, 0, half, height)), self.size)
            b = rgb_tensor(image.crop((half, 0, width, height)), self.size)
        return {"A": a, "B": b, "name": self.names[index]}


class MaskImageFolder(FolderDataset):
    """``root/split/mask/x.png`` (class ids, one channel) with ``root/split/image/x.*``; A is one-hot."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        load_size: int,
        num_classes: int,
        *,
        crop_size: int | None = None,
        seed: int = 0,
        share: Share | None = None,
    ) -> None:
        super().__init__(load_size, crop_size, seed)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise DataError(f"num_classes must be an integer >= 2 for layout 'mask_image', got {num_classes!r}")
        self.num_classes = num_classes
        folder = Path(root) / split
        self.dir_mask, self.dir_image = folder / "mask", folder / "image"
        masks = list_images(self.dir_mask, f"the '{split}' class-id masks (one channel, ids < {num_classes})")
        images = list_images(self.dir_image, f"the '{split}' images, one per mask in {self.dir_mask}")
        self.names = _serve(match_names(masks, images, self.dir_mask, self.dir_image), folder, share)
        self.paths = [(masks[n], images[n]) for n in self.names]
        for mask_path, image_path in self.paths:
            _same_size(
                mask_path, check_mask(mask_path, num_classes), image_path, check_rgb(image_path), "mask", "image"
            )

    def _load(self, index: int, draw: np.random.Generator) -> Item:
        mask_path, image_path = self.paths[index]
        return {
            "A": load_onehot(mask_path, self.size, self.num_classes),
            "B": load_rgb(image_path, self.size),
            "name": self.names[index],
        }


class ImageFolder(FolderDataset):
    """One folder of images as items ``{key, "name"}``; by default ``"B"``: the real images FID compares with."""

    key = "B"

    def __init__(
        self,
        folder: str | os.PathLike,
        load_size: int,
        expected: str,
        *,
        crop_size: int | None = None,
        seed: int = 0,
        share: Share | None = None,
    ) -> None:
        super().__init__(load_size, crop_size, seed)
        self.folder = Path(folder)
        images = list_images(self.folder, expected)
        self.names = _serve(images, self.folder, share)
        self.paths = [images[n] for n in self.names]
        for path in self.paths:
            check_rgb(path)

    def _load(self, index: int, draw: np.random.Generator) -> Item:
        return {self.key: load_rgb(self.paths[index], self.size), "name": self.names[index]}


class InputImages(ImageFolder):
    """Layout ``images``: input images with no targets (``{"A", "name"}``), for distilling a generator from
    its own outputs. The folder is flat (every split carved from it) or has train/ and optional val/, test/."""

    key = "A"

    def real_targets(self) -> Dataset:
        raise DataError(
            f"{self.folder}: layout 'images' has no target images, and FID against real images "
            f"needs them; the evaluation compares with the teacher's outputs instead"
        )


class UnpairedFolder(FolderDataset):
    """CycleGAN training data: ``root/{split}A`` and ``root/{split}B``, no correspondence between them.

    ``len`` is the number of A images. Each read of item i draws a B image from a generator seeded by
    (seed, i, how many times item i was read before), so every pass pairs A with fresh B images and a
    run with the same seed and access order sees the same pairs; a crop takes the same window of both.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        load_size: int,
        *,
        crop_size: int | None = None,
        seed: int = 0,
        share: Share | None = None,
    ) -> None:
        super().__init__(load_size, crop_size, seed)
        self.dir_a, self.dir_b = Path(root) / f"{split}A", Path(root) / f"{split}B"
        a = list_images(self.dir_a, f"the '{split}' images of domain A (CycleGAN layout {split}A/{split}B)")
        self.targets = ImageFolder(
            self.dir_b, load_size, f"the '{split}' images of domain B (CycleGAN layout {split}A/{split}B)", share=share
        )
        self.names = _serve(a, self.dir_a, share)
        self.paths = [a[n] for n in self.names]
        for path in self.paths:
            check_rgb(path)

    def _load(self, index: int, draw: np.random.Generator) -> Item:
        b_index = int(draw.integers(len(self.targets)))
        return {"A": load_rgb(self.paths[index], self.size), "B": self.targets[b_index]["B"], "name": self.names[index]}

    def real_targets(self) -> Dataset:
        return self.targets


class UnpairedEval(FolderDataset):
    """Evaluation of an unpaired task: the ``{split}A`` images, with their hidden ground truth from
    ``{split}A_gt`` as ``"B"`` when that folder exists (then names and sizes must match), and the real
    domain-B images of ``{split}B`` through :meth:`real_targets`."""

    def __init__(self, root: str | os.PathLike, split: str, load_size: int, *, share: Share | None = None) -> None:
        super().__init__(load_size)
        root = Path(root)
        self.dir_a, self.dir_gt, self.dir_b = root / f"{split}A", root / f"{split}A_gt", root / f"{split}B"
        a = list_images(self.dir_a, f"the '{split}' images of domain A (CycleGAN layout {split}A/{split}B)")
        self.names = _serve(a, self.dir_a, share)
        self.paths = [a[n] for n in self.names]
        self.truth: list[Path] | None = None
        if self.dir_gt.exists():
            gt = list_images(self.dir_gt, f"the ground truth of each image in {self.dir_a}, under the same name")
            match_names(a, gt, self.dir_a, self.dir_gt)
            self.truth = [gt[n] for n in self.names]
        for index, path in enumerate(self.paths):
            size = check_rgb(path)
            if self.truth is not None:
                _same_size(path, size, self.truth[index], check_rgb(self.truth[index]), "input", "ground truth")
        self.targets = ImageFolder(self.dir_b, load_size, f"the real '{split}' images of domain B", share=share)

    @property
    def has_ground_truth(self) -> bool:
        return self.truth is not None

    def _load(self, index: int, draw: np.random.Generator) -> Item:
        item: Item = {"A": load_rgb(self.paths[index], self.size), "name": self.names[index]}
        if self.truth is not None:
            item["B"] = load_rgb(self.truth[index], self.size)
        return item

    def real_targets(self) -> Dataset:
        return self.targets


def _need_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise DataError(f"unknown dataset layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def _split_folders(layout: str, root: Path, split: str) -> list[Path]:
    """The folders that hold ``split`` in ``layout``."""
    return [root / f"{split}A", root / f"{split}B"] if layout == "unpaired" else [root / split]


def _source(layout: str, root: Path, split: str, seed: int) -> tuple[str, Share | None]:
    """The split folder that ``split`` is read from and, when that is not its own, the share of it to serve.

    A missing val split (and, for layout ``images``, a missing test split) is carved from train; a flat
    ``images`` folder (no train/) has every split carved from the root itself, read as split ``""``. A split
    counts as present when any of its folders exists, so a half-present one fails naming the missing folder.
    """
    if layout == "images" and not (root / "train").is_dir():
        return "", Share(split, ("val", "test"), seed)
    carvable = ("val", "test") if layout == "images" else ("val",)
    missing = tuple(s for s in SPLITS if not any(f.is_dir() for f in _split_folders(layout, root, s)))
    if split == "test" and "test" in missing and "test" not in carvable:
        folder = _split_folders(layout, root, "test")[0]
        raise DataError(
            f"{folder}: folder missing; a test split is required (the evaluation runs on it); "
            f"only a missing val split is carved from train"
        )
    carved = tuple(s for s in missing if s in carvable)
    if split in carved or (split == "train" and carved):
        return "train", Share(split, carved, seed)
    return split, None


def open_dataset(
    layout: str,
    root: str | os.PathLike,
    split: str,
    load_size: int,
    num_classes: int | None = None,
    seed: int = 0,
    for_eval: bool = False,
    crop_size: int | None = None,
) -> FolderDataset:
    """The ``split`` of the dataset at ``root`` in ``layout``, every image resized to load_size x load_size.

    ``crop_size`` crops the train split only (a seeded random window, the same for A and B), as the pix2pix
    and CycleGAN references do; validation and evaluation compare full images. ``for_eval`` only changes
    unpaired data (ground truth and real B images instead of random B images) and turns cropping off.
    """
    _need_layout(layout)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    source, share = _source(layout, root, split, seed)
    crop = crop_size if split == "train" and not for_eval else None
    if layout == "unpaired" and for_eval:
        return UnpairedEval(root, source, load_size, share=share)
    common: dict[str, Any] = {"crop_size": crop, "seed": seed, "share": share}
    if layout == "mask_image":
        if num_classes is None:
            raise DataError("layout 'mask_image' needs num_classes (the number of class ids in the masks)")
        return MaskImageFolder(root, source, load_size, num_classes, **common)
    if layout == "paired":
        return PairedFolder(root, source, load_size, **common)
    if layout == "paired_ab":
        return PairedAB(root, source, load_size, **common)
    if layout == "unpaired":
        return UnpairedFolder(root, source, load_size, **common)
    return InputImages(
        root / source,
        load_size,
        "input images (layout 'images': a flat folder of images, or train/ with optional val/ and test/)",
        **common,
    )


def channels(layout: str, num_classes: int | None = None) -> tuple[int, int]:
    """(input_nc, output_nc) of a generator for ``layout``: one-hot masks have one channel per class."""
    _need_layout(layout)
    if layout == "mask_image":
        if num_classes is None:
            raise DataError("layout 'mask_image' needs num_classes to know the input channel count")
        return num_classes, 3
    return 3, 3
