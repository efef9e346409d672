"""Generate the built-in synthetic tasks into folders laid out like the real datasets they mirror.

Every sample is drawn from its own generator seeded by (seed, task, split, domain, index), so the same
seed gives byte-identical PNG files whatever the counts of other splits, and the folder is written as a
whole: it is built beside ``root`` and renamed into place, so a killed run leaves the old folder or none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from alap.data.animals import render_animal, sample_animal
from alap.data.faces import draw_face, render_cartoon, render_face
from alap.data.splits import SPLITS
from alap.data.tasks import SYNTHETIC_TASKS
from alap.io import write_json

MIN_IMAGE_SIZE = 32  # below this, eyes and legs are a pixel or less
FORMAT = "alap-synthetic/1"
Writer = Callable[[Path, str, int, int, int], list[str]]


def _rng(seed: int, task: str, split: str, domain: int, index: int) -> np.random.Generator:
    """The sample's own generator: independent of how many samples other splits or domains hold."""
    return np.random.default_rng([seed, zlib.crc32(task.encode()), SPLITS.index(split), domain, index])


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def _name(index: int) -> str:
    return f"{index:05d}.png"


def _write_seg2face(out: Path, split: str, count: int, size: int, seed: int) -> list[str]:
    for i in range(count):
        canvas = draw_face(_rng(seed, "seg2face", split, 0, i), size)
        _save(canvas.label, out / split / "mask" / _name(i))
        _save(render_face(canvas), out / split / "image" / _name(i))
    return [f"{split}/mask", f"{split}/image"]


def _write_face2cartoon(out: Path, split: str, count: int, size: int, seed: int) -> list[str]:
    for i in range(count):
        canvas = draw_face(_rng(seed, "face2cartoon", split, 0, i), size)
        _save(render_face(canvas), out / split / "A" / _name(i))
        _save(render_cartoon(canvas), out / split / "B" / _name(i))
    return [f"{split}/A", f"{split}/B"]


def _write_horse2zebra(out: Path, split: str, count: int, size: int, seed: int) -> list[str]:
    """Horses in ``{split}A``, other animals as zebras in ``{split}B``; val/test keep each horse's zebra twin
    in ``{split}A_gt`` as hidden ground truth for evaluation."""
    with_truth = split != "train"
    for i in range(count):
        horse = sample_animal(_rng(seed, "horse2zebra", split, 0, i), size)
        _save(render_animal(horse, size, striped=False), out / f"{split}A" / _name(i))
        if with_truth:
            _save(render_animal(horse, size, striped=True), out / f"{split}A_gt" / _name(i))
        zebra = sample_animal(_rng(seed, "horse2zebra", split, 1, i), size)
        _save(render_animal(zebra, size, striped=True), out / f"{split}B" / _name(i))
    return [f"{split}A", f"{split}B"] + ([f"{split}A_gt"] if with_truth else [])


WRITERS: dict[str, Writer] = {
    "seg2face": _write_seg2face,
    "face2cartoon": _write_face2cartoon,
    "horse2zebra": _write_horse2zebra,
}


def _check_args(task: str, image_size: int, counts: dict[str, int]) -> None:
    if task not in WRITERS:
        raise ValueError(f"unknown synthetic task {task!r}; expected one of {sorted(WRITERS)}")
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    for split, n in counts.items():
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n_{split} must be a positive integer, got {n!r}")


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder that is not a previous generation: it may hold someone's real data."""
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / "manifest.json").is_file())):
        raise FileExistsError(
            f"{root} exists and is not a synthetic dataset (no manifest.json); "
            "refusing to replace it: remove it or point the task's root elsewhere"
        )


def _swap_in(built: Path, root: Path) -> None:
    """Move the finished folder onto ``root``; an old folder is renamed away first, then deleted."""
    if root.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        os.replace(root, old / root.name)
        os.replace(built, root)
        shutil.rmtree(old)
    else:
        os.replace(built, root)


def generate_task(
    task: str, root: str | os.PathLike, image_size: int, n_train: int, n_val: int, n_test: int, seed: int
) -> dict:
    """Write synthetic task ``task`` into ``root`` (replacing a previous generation) and return its manifest.

    The manifest (also written as ``root/manifest.json``) records task, layout, image size, seed, samples
    per split and the image count of every folder.
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    _check_args(task, image_size, counts)
    root = Path(root)
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        built.chmod(0o755)  # mkdtemp makes it owner-only; the dataset is meant to be shared
        folders: dict[str, int] = {}
        for split, n in counts.items():
            for folder in WRITERS[task](built, split, n, image_size, seed):
                folders[folder] = n
        info = SYNTHETIC_TASKS[task]
        manifest = {
            "format": FORMAT,
            "task": task,
            "layout": info.layout,
            "num_classes": info.num_classes,
            "image_size": image_size,
            "seed": seed,
            "counts": counts,
            "folders": folders,
        }
        write_json(built / "manifest.json", manifest)
        _swap_in(built, root)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return manifest
