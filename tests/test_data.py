"""Synthetic tasks (determinism, layout, learnability) and folder datasets (items, validation errors)."""

from __future__ import annotations

import filecmp
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alap.data import synthetic
from alap.data.batches import BatchStream
from alap.data.datasets import (
    ImageFolder,
    InputImages,
    MaskImageFolder,
    PairedAB,
    PairedFolder,
    UnpairedEval,
    UnpairedFolder,
    channels,
    open_dataset,
)
from alap.data.errors import DataError
from alap.data.faces import draw_face, render_face
from alap.data.splits import carve
from alap.data.synthetic import generate_task
from alap.data.tasks import SYNTHETIC_TASKS

SIZE = 32
COUNTS = dict(n_train=6, n_val=2, n_test=4)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every synthetic task generated once (seed 0) at 32 x 32; tests copy before breaking anything."""
    base = tmp_path_factory.mktemp("tasks")
    return {name: _generate(name, base / name) for name in SYNTHETIC_TASKS}


def _generate(task: str, root: Path, seed: int = 0, size: int = SIZE, **counts: int) -> Path:
    generate_task(task, root, size, seed=seed, **{**COUNTS, **counts})
    return root


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / root.name))


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    """Mean per-image PSNR of uint8-range float images (N x H x W x 3)."""
    mse = ((x - y) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0**2 / mse)))


def _stack(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in sorted(folder.iterdir())])


# --- generation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(SYNTHETIC_TASKS))
def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    task: str, tasks: dict[str, Path], tmp_path: Path
) -> None:
    again = _generate(task, tmp_path / "again")
    other = _generate(task, tmp_path / "other", seed=1)
    files = _files(tasks[task])
    assert files == _files(again) == _files(other)
    pngs = [f for f in files if f.suffix == ".png"]
    assert all(filecmp.cmp(tasks[task] / f, again / f, shallow=False) for f in files)
    assert sum(not filecmp.cmp(tasks[task] / f, other / f, shallow=False) for f in pngs) == len(pngs)


def test_a_sample_does_not_depend_on_the_counts_of_its_split(tasks: dict[str, Path], tmp_path: Path) -> None:
    fewer = _generate("seg2face", tmp_path / "fewer", n_train=3, n_test=1)
    for rel in _files(fewer):
        if rel.suffix == ".png":
            assert filecmp.cmp(fewer / rel, tasks["seg2face"] / rel, shallow=False), rel


def test_layouts_counts_and_manifest(tasks: dict[str, Path]) -> None:
    n = {"train": 6, "val": 2, "test": 4}
    seg = tasks["seg2face"]
    for split, count in n.items():
        assert len(list((seg / split / "mask").glob("*.png"))) == count
        assert len(list((seg / split / "image").glob("*.png"))) == count
    with (
        Image.open(seg / "train" / "mask" / "00000.png") as mask,
        Image.open(seg / "train" / "image" / "00000.png") as image,
    ):
        assert (mask.mode, mask.size, image.mode, image.size) == ("L", (SIZE, SIZE), "RGB", (SIZE, SIZE))
    ids = np.unique(np.concatenate([np.asarray(Image.open(p)).ravel() for p in (seg / "train" / "mask").iterdir()]))
    assert set(ids) <= set(range(8)) and {0, 1, 2, 3} <= set(ids)

    cartoon = tasks["face2cartoon"]
    for split, count in n.items():
        assert sorted(p.name for p in (cartoon / split / "A").iterdir()) == sorted(
            p.name for p in (cartoon / split / "B").iterdir()
        )
        assert len(list((cartoon / split / "A").iterdir())) == count

    zebra = tasks["horse2zebra"]
    for split, count in n.items():
        for folder in (f"{split}A", f"{split}B"):
            assert len(list((zebra / folder).iterdir())) == count
    assert sorted(p.name for p in (zebra / "testA_gt").iterdir()) == sorted(p.name for p in (zebra / "testA").iterdir())
    assert not (zebra / "trainA_gt").exists()

    manifest = json.loads((seg / "manifest.json").read_text())
    assert manifest["task"] == "seg2face" and manifest["layout"] == "mask_image" and manifest["num_classes"] == 8
    assert manifest["image_size"] == SIZE and manifest["seed"] == 0 and manifest["counts"] == n
    assert json.loads((zebra / "manifest.json").read_text())["folders"]["testA_gt"] == 4


def test_256_pixels_work() -> None:
    canvas = draw_face(np.random.default_rng(0), 256)
    assert render_face(canvas).shape == (256, 256, 3)
    assert len(np.unique(canvas.label)) == 8


def test_regeneration_replaces_the_folder_and_leaves_no_temporaries(tmp_path: Path) -> None:
    root = _generate("face2cartoon", tmp_path / "data" / "face2cartoon")
    (root / "train" / "A" / "stale.png").write_bytes(b"old")
    _generate("face2cartoon", root, n_train=2)
    assert len(list((root / "train" / "A").iterdir())) == 2
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["face2cartoon"]


def test_a_failed_generation_keeps_the_old_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _generate("seg2face", tmp_path / "seg2face")
    before = {f: (root / f).read_bytes() for f in _files(root)}
    calls = {"n": 0}
    real_save = synthetic._save

    def failing_save(array: np.ndarray, path: Path) -> None:  # fault injection: disk full after 5 files
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("No space left on device")
        real_save(array, path)

    monkeypatch.setattr(synthetic, "_save", failing_save)
    with pytest.raises(OSError, match="No space"):
        _generate("seg2face", root, seed=7)
    assert {f: (root / f).read_bytes() for f in _files(root)} == before
    assert [p.name for p in tmp_path.iterdir()] == ["seg2face"]


def test_refuses_to_overwrite_a_folder_that_is_not_a_generation(tmp_path: Path) -> None:
    real = tmp_path / "my_faces"
    (real / "train").mkdir(parents=True)
    (real / "train" / "photo.png").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="my_faces"):
        _generate("seg2face", real)
    assert (real / "train" / "photo.png").read_bytes() == b"precious"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(task="edges2shoes"), "unknown synthetic task"),
        (dict(image_size=16), "image_size"),
        (dict(n_val=0), "n_val"),
    ],
)
def test_bad_generation_arguments(kwargs: dict, message: str, tmp_path: Path) -> None:
    args = dict(task="seg2face", root=tmp_path / "x", image_size=SIZE, seed=0, **COUNTS) | kwargs
    with pytest.raises(ValueError, match=message):
        generate_task(**args)


# --- learnability ----------------------------------------------------------------------------------------


def test_faces_follow_their_masks_far_better_than_the_mean_image(tasks: dict[str, Path]) -> None:
    """Predicting each pixel as the mean training colour of its mask class beats the mean image by > 6 dB,
    so the face is (almost) a function of the mask; the rest is shading and texture a generator learns."""
    seg = tasks["seg2face"]

    def masks(split: str) -> np.ndarray:
        return np.stack([np.asarray(Image.open(p)) for p in sorted((seg / split / "mask").iterdir())])

    train, test = _stack(seg / "train" / "image"), _stack(seg / "test" / "image")
    train_masks = masks("train")
    class_colour = np.stack([train[train_masks == c].mean(axis=0) for c in range(8)])
    mean_psnr = _psnr(test, train.mean(axis=0, keepdims=True))
    class_psnr = _psnr(test, class_colour[masks("test")])
    assert mean_psnr < 17.0
    assert class_psnr > mean_psnr + 6.0


def test_cartoons_are_a_local_function_of_the_face(tasks: dict[str, Path]) -> None:
    """1-nearest-neighbour on 3x3 input patches (fit on train, scored on test) beats the mean image by
    > 6 dB: the cartoon pixel is determined by the face around it."""
    root = tasks["face2cartoon"]

    def patches(split: str) -> tuple[np.ndarray, np.ndarray]:
        a = torch.from_numpy(_stack(root / split / "A")).permute(0, 3, 1, 2).float()
        cols = torch.nn.functional.unfold(a, 3, padding=1).permute(0, 2, 1).reshape(-1, 27)
        return cols.numpy(), _stack(root / split / "B").reshape(-1, 3)

    x_train, y_train = patches("train")
    x_test, y_test = patches("test")
    nearest = torch.cdist(torch.from_numpy(x_test), torch.from_numpy(x_train)).argmin(dim=1).numpy()
    shape = (-1, SIZE, SIZE, 3)
    predicted, truth = y_train[nearest].reshape(shape), y_test.reshape(shape)
    mean_psnr = _psnr(truth, _stack(root / "train" / "B").mean(axis=0, keepdims=True))
    assert mean_psnr < 17.0
    assert _psnr(truth, predicted) > mean_psnr + 6.0


def test_zebra_ground_truth_keeps_the_horse_scene_and_silhouette(tasks: dict[str, Path]) -> None:
    root = tasks["horse2zebra"]
    horses, zebras = _stack(root / "testA"), _stack(root / "testA_gt")
    changed = np.abs(horses - zebras).max(axis=-1) > 0
    assert 0.05 < changed.mean() < 0.6  # only the animal changes, and it is a good part of the picture
    assert _psnr(zebras, _stack(root / "trainB").mean(axis=0, keepdims=True)) < 20.0


def test_generating_a_sample_twice_gives_the_same_pair() -> None:
    first, second = draw_face(np.random.default_rng(5), SIZE), draw_face(np.random.default_rng(5), SIZE)
    assert np.array_equal(first.label, second.label)
    assert np.array_equal(render_face(first), render_face(second))


# --- datasets: items -------------------------------------------------------------------------------------


def _check_rgb(t: torch.Tensor, size: int) -> None:
    assert t.shape == (3, size, size) and t.dtype == torch.float32
    assert -1.0 <= float(t.min()) and float(t.max()) <= 1.0 and float(t.max() - t.min()) > 0.5


@pytest.mark.parametrize("size", [SIZE, 16])
def test_mask_image_items(tasks: dict[str, Path], size: int) -> None:
    ds = open_dataset("mask_image", tasks["seg2face"], "train", size, num_classes=8)
    assert isinstance(ds, MaskImageFolder) and len(ds) == 6
    item = ds[1]
    assert item["name"] == "00001" and item["A"].shape == (8, size, size)
    assert set(item["A"].unique().tolist()) == {0.0, 1.0} and torch.all(item["A"].sum(0) == 1)
    _check_rgb(item["B"], size)
    assert ds.real_targets() is ds


def test_paired_folder_items(tasks: dict[str, Path]) -> None:
    ds = open_dataset("paired", tasks["face2cartoon"], "val", SIZE)
    assert isinstance(ds, PairedFolder) and len(ds) == 2 and ds[0]["name"] == "00000"
    _check_rgb(ds[0]["A"], SIZE)
    _check_rgb(ds[0]["B"], SIZE)


def _side_by_side(paired: Path, out: Path) -> Path:
    for split in ("train", "val"):
        (out / split).mkdir(parents=True)
        for a_path in sorted((paired / split / "A").iterdir()):
            a, b = Image.open(a_path), Image.open(paired / split / "B" / a_path.name)
            both = Image.new("RGB", (2 * SIZE, SIZE))
            both.paste(a, (0, 0))
            both.paste(b, (SIZE, 0))
            both.save(out / split / a_path.name)
    return out


def test_paired_ab_items_split_the_halves(tasks: dict[str, Path], tmp_path: Path) -> None:
    root = _side_by_side(tasks["face2cartoon"], tmp_path / "ab")
    ab = open_dataset("paired_ab", root, "train", SIZE)
    folder = PairedFolder(tasks["face2cartoon"], "train", SIZE)
    assert isinstance(ab, PairedAB) and len(ab) == len(folder) == 6
    assert torch.equal(ab[3]["A"], folder[3]["A"]) and torch.equal(ab[3]["B"], folder[3]["B"])
    assert ab[3]["name"] == "00003"


def test_unpaired_training_items_draw_reproducible_b_images(tasks: dict[str, Path]) -> None:
    root = tasks["horse2zebra"]
    first, again = UnpairedFolder(root, "train", SIZE, seed=3), UnpairedFolder(root, "train", SIZE, seed=3)
    other = UnpairedFolder(root, "train", SIZE, seed=4)
    assert len(first) == 6 and len(first.real_targets()) == 6
    reads = [[ds[i % 6]["B"] for i in range(24)] for ds in (first, again, other)]
    assert all(torch.equal(x, y) for x, y in zip(reads[0], reads[1]))
    assert not all(torch.equal(x, y) for x, y in zip(reads[0], reads[2]))
    assert len({tuple(b.flatten()[:64].tolist()) for b in reads[0]}) > 2  # B varies between reads
    item = first[0]
    _check_rgb(item["A"], SIZE)
    _check_rgb(item["B"], SIZE)
    assert item["name"] == "00000"


def test_unpaired_eval_items_carry_the_hidden_ground_truth(tasks: dict[str, Path], tmp_path: Path) -> None:
    ds = open_dataset("unpaired", tasks["horse2zebra"], "test", SIZE, for_eval=True)
    assert isinstance(ds, UnpairedEval) and ds.has_ground_truth and len(ds) == 4
    item = ds[2]
    _check_rgb(item["A"], SIZE)
    _check_rgb(item["B"], SIZE)
    assert not torch.equal(item["A"], item["B"])
    assert len(ds.real_targets()) == 4 and set(ds.real_targets()[0]) == {"B", "name"}
    root = _copy(tasks["horse2zebra"], tmp_path)
    shutil.rmtree(root / "testA_gt")
    blind = UnpairedEval(root, "test", SIZE)
    assert not blind.has_ground_truth and "B" not in blind[0]


def test_channels_per_layout() -> None:
    assert channels("mask_image", 8) == (8, 3)
    assert channels("paired") == channels("paired_ab") == channels("unpaired") == channels("images") == (3, 3)
    for name, info in SYNTHETIC_TASKS.items():
        assert channels(info.layout, info.num_classes) == (info.input_nc, info.output_nc), name


# --- datasets: bad input ---------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _open_seg(root: Path, split: str = "train", num_classes: int = 8) -> None:
    open_dataset("mask_image", root, split, SIZE, num_classes=num_classes)


def test_truncated_image_is_named(tasks: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(tasks["face2cartoon"], tmp_path)
    _truncate(root / "train" / "B" / "00004.png")
    with pytest.raises(DataError, match=r"B/00004\.png: corrupt or truncated"):
        open_dataset("paired", root, "train", SIZE)


def test_missing_b_file_lists_the_missing_name(tasks: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(tasks["face2cartoon"], tmp_path)
    (root / "train" / "B" / "00002.png").unlink()
    with pytest.raises(DataError, match=r"1 missing from .*train/B \(e\.g\. 00002\)"):
        open_dataset("paired", root, "train", SIZE)


def test_mask_of_the_wrong_size(tasks: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(tasks["seg2face"], tmp_path)
    mask = root / "train" / "mask" / "00001.png"
    Image.open(mask).resize((SIZE // 2, SIZE // 2), Image.Resampling.NEAREST).save(mask)
    with pytest.raises(DataError, match=r"00001\.png: mask is 16x16 but its image .* is 32x32"):
        _open_seg(root)


@pytest.mark.parametrize("bad_id", [9, 8])
def test_class_id_beyond_num_classes(tasks: dict[str, Path], tmp_path: Path, bad_id: int) -> None:
    root = _copy(tasks["seg2face"], tmp_path)
    mask = root / "val" / "mask" / "00001.png"
    ids = np.asarray(Image.open(mask)).copy()
    ids[0, 0] = bad_id
    Image.fromarray(ids).save(mask)
    with pytest.raises(DataError, match=rf"00001\.png: class id {bad_id} found, but num_classes is 8"):
        _open_seg(root, "val")
    _open_seg(root, "val", num_classes=10)  # the same data is fine with enough classes


def test_rgb_mask_is_rejected(tasks: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(tasks["seg2face"], tmp_path)
    mask = root / "test" / "mask" / "00000.png"
    Image.open(mask).convert("RGB").save(mask)
    with pytest.raises(DataError, match="mode RGB"):
        _open_seg(root, "test")


def test_empty_split(tasks: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(tasks["seg2face"], tmp_path)
    for p in (root / "val" / "mask").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"val/mask: no images"):
        _open_seg(root, "val")


def test_missing_folder(tasks: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere/train/A: folder missing"):
        open_dataset("paired", tmp_path / "nowhere", "train", SIZE)
    root = _copy(tasks["horse2zebra"], tmp_path)
    shutil.rmtree(root / "valB")
    with pytest.raises(DataError, match=r"valB: folder missing; expected the 'val' images of domain B"):
        open_dataset("unpaired", root, "val", SIZE)


def test_side_by_side_image_of_the_wrong_width(tasks: dict[str, Path], tmp_path: Path) -> None:
    root = _side_by_side(tasks["face2cartoon"], tmp_path / "ab")
    Image.new("RGB", (3 * SIZE, SIZE)).save(root / "val" / "00001.png")
    with pytest.raises(DataError, match=r"00001\.png: size 96x32; .* twice as wide"):
        open_dataset("paired_ab", root, "val", SIZE)


def test_ground_truth_names_must_match(tasks: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(tasks["horse2zebra"], tmp_path)
    (root / "testA_gt" / "00003.png").rename(root / "testA_gt" / "zebra.png")
    with pytest.raises(DataError, match=r"00003.*zebra|zebra.*00003"):
        open_dataset("unpaired", root, "test", SIZE, for_eval=True)


def test_unknown_layout_and_missing_num_classes(tasks: dict[str, Path]) -> None:
    with pytest.raises(DataError, match="mask_image, paired, paired_ab, unpaired"):
        open_dataset("pairs", tasks["face2cartoon"], "train", SIZE)
    with pytest.raises(DataError, match="num_classes"):
        open_dataset("mask_image", tasks["seg2face"], "train", SIZE)
    with pytest.raises(DataError, match="unknown dataset layout"):
        channels("cityscapes")


# --- datasets: data as users have it ---------------------------------------------------------------------


def _noise(path: Path, size: tuple[int, int] = (SIZE, SIZE), seed: int = 0, mode: str = "RGB") -> Path:
    """A random image at ``path`` (width, height = ``size``); every window of it differs from every other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def _paired(root: Path, counts: dict[str, int], suffix: str = ".png") -> Path:
    """A paired A/B folder of noise images whose B is a copy of A (so equal crops mean the same window)."""
    for split, count in counts.items():
        for i in range(count):
            a = _noise(root / split / "A" / f"{i:03d}{suffix}", seed=i)
            (root / split / "B").mkdir(parents=True, exist_ok=True)
            shutil.copy(a, root / split / "B" / a.name)
    return root


def _without_val(task: str, tasks: dict[str, Path], tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of ``task`` with its val folder(s) removed, and the names of its train items."""
    if task == "paired_ab":
        root = _side_by_side(tasks["face2cartoon"], tmp_path / "ab")
        return _rmtree(root, "val"), [p.stem for p in sorted((root / "train").iterdir())]
    root = _copy(tasks[task], tmp_path)
    val, train = {
        "seg2face": (["val"], "train/mask"),
        "face2cartoon": (["val"], "train/A"),
        "horse2zebra": (["valA", "valB"], "trainA"),
    }[task]
    return _rmtree(root, *val), [p.stem for p in sorted((root / train).iterdir())]


def _rmtree(root: Path, *folders: str) -> Path:
    for folder in folders:
        shutil.rmtree(root / folder)
    return root


LAYOUT_OF = {"seg2face": "mask_image", "face2cartoon": "paired", "paired_ab": "paired_ab", "horse2zebra": "unpaired"}


@pytest.mark.parametrize("task", sorted(LAYOUT_OF))
def test_a_missing_val_split_is_carved_from_train(
    task: str, tasks: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, names = _without_val(task, tasks, tmp_path)

    def names_of(split: str, seed: int = 0) -> list[str]:
        return open_dataset(LAYOUT_OF[task], root, split, SIZE, num_classes=8, seed=seed).names

    with caplog.at_level("INFO", logger="alap.data"):
        val, train = names_of("val"), names_of("train")
    assert (names_of("train"), names_of("val")) == (train, val)  # the other order, and again
    assert len(val) == 1 and len(train) == 5 and sorted(val + train) == names
    assert "no val split; carved 1 as val from its 6 items (seed 0); 5 left for train" in caplog.text
    assert any(names_of("val", seed) != val for seed in range(1, 6))
    ds = open_dataset(LAYOUT_OF[task], root, "val", SIZE, num_classes=8)
    assert [ds[i]["name"] for i in range(len(ds))] == ds.names == val


def test_carve_deals_about_a_tenth_to_each_carved_split(tmp_path: Path) -> None:
    names = [f"{i:02d}" for i in range(70)]
    parts = carve(names, 0, ("val", "test"), tmp_path)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [56, 7, 7]
    assert sorted(name for part in parts.values() for name in part) == names
    assert carve(names[::-1], 0, ("val", "test"), tmp_path) == parts
    assert [len(v) for v in carve(names[:3], 0, ("val", "test"), tmp_path).values()] == [1, 1, 1]
    with pytest.raises(DataError, match=r"x: 2 item\(s\), too few to carve a val and a test split"):
        carve(names[:2], 0, ("val", "test"), tmp_path / "x")


def test_a_single_train_item_cannot_be_carved(tmp_path: Path) -> None:
    root = _paired(tmp_path / "one", {"train": 1, "test": 1})
    with pytest.raises(DataError, match=r"one/train: 1 item\(s\), too few to carve a val split"):
        open_dataset("paired", root, "val", SIZE)


def test_cyclegan_folders_as_published(tasks: dict[str, Path], tmp_path: Path) -> None:
    """trainA/trainB/testA/testB, no val and no ground truth: val is carved from trainA and trainB alike."""
    root = _rmtree(_copy(tasks["horse2zebra"], tmp_path), "valA", "valB", "testA_gt")
    train, val = (open_dataset("unpaired", root, split, SIZE) for split in ("train", "val"))
    test, test_eval = (
        open_dataset("unpaired", root, "test", SIZE),
        open_dataset("unpaired", root, "test", SIZE, for_eval=True),
    )
    assert [len(ds) for ds in (train, val, test, test_eval)] == [5, 1, 4, 4]
    assert [len(ds.real_targets()) for ds in (train, val, test_eval)] == [5, 1, 4]
    assert not set(train.real_targets().names) & set(val.real_targets().names)
    assert set(val[0]) == {"A", "B", "name"} and set(test_eval[0]) == {"A", "name"}


@pytest.mark.parametrize("task, folder", [("face2cartoon", "test"), ("horse2zebra", "testA")])
def test_a_missing_test_split_is_an_error(task: str, folder: str, tasks: dict[str, Path], tmp_path: Path) -> None:
    root = _rmtree(_copy(tasks[task], tmp_path), *({"test": ["test"], "testA": ["testA", "testB", "testA_gt"]}[folder]))
    with pytest.raises(DataError, match=rf"/{folder}: folder missing; a test split is required"):
        open_dataset(LAYOUT_OF[task], root, "test", SIZE, for_eval=True)


def test_a_flat_folder_of_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "mine"
    for i in range(30):
        _noise(root / f"photo {i}.jpg", seed=i)
    (root / "notes.txt").write_text("not an image")
    with caplog.at_level("INFO", logger="alap.data"):
        splits = {split: open_dataset("images", root, split, SIZE) for split in ("train", "val", "test")}
    assert isinstance(splits["train"], InputImages)
    names = {split: set(ds.names) for split, ds in splits.items()}
    assert [len(names[s]) for s in ("train", "val", "test")] == [24, 3, 3]
    assert set.union(*names.values()) == {f"photo {i}" for i in range(30)} and sum(map(len, names.values())) == 30
    assert "carved 3 as val and 3 as test from its 30 items" in caplog.text
    assert "skipped 1 non-image file(s) (notes.txt)" in caplog.text
    item = splits["test"][0]
    assert set(item) == {"A", "name"}
    _check_rgb(item["A"], SIZE)
    with pytest.raises(DataError, match="FID against real images needs them"):
        splits["test"].real_targets()
    for path in sorted(root.glob("*.jpg"))[:28]:
        path.unlink()
    with pytest.raises(DataError, match=r"mine: 2 item\(s\), too few to carve a val and a test split"):
        open_dataset("images", root, "train", SIZE)


def test_a_folder_of_images_with_train_and_test(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    for i in range(10):
        _noise(root / "train" / f"{i}.png", seed=i)
    for i in range(2):
        _noise(root / "test" / f"t{i}.png", seed=i)
    train, val, test = (open_dataset("images", root, split, SIZE) for split in ("train", "val", "test"))
    assert [len(train), len(val), len(test)] == [9, 1, 2] and test.names == ["t0", "t1"]
    assert sorted(train.names + val.names) == [str(i) for i in range(10)]


# --- datasets: load_size and crop_size -------------------------------------------------------------------


def test_train_items_are_cropped_with_one_window_for_a_and_b(tmp_path: Path) -> None:
    root = _paired(tmp_path / "same", {"train": 4, "val": 2, "test": 2})
    first, again = (open_dataset("paired", root, "train", SIZE, seed=5, crop_size=12) for _ in range(2))
    order = [0, 1, 0, 3, 0, 2]
    crops = [first[i] for i in order]
    for item in crops:
        assert item["A"].shape == (3, 12, 12) and torch.equal(item["A"], item["B"])
    assert all(torch.equal(x["A"], again[i]["A"]) for x, i in zip(crops, order, strict=True))
    assert len({tuple(crops[i]["A"].flatten().tolist()) for i in (0, 2, 4)}) == 3  # a new window each pass
    for split, for_eval in [("val", False), ("test", False), ("test", True), ("train", True)]:
        item = open_dataset("paired", root, split, SIZE, crop_size=12, for_eval=for_eval)[0]
        assert item["A"].shape == item["B"].shape == (3, SIZE, SIZE), (split, for_eval)


def test_a_resumed_batch_stream_sees_the_same_crops(tmp_path: Path) -> None:
    root = _paired(tmp_path / "same", {"train": 4, "val": 1, "test": 1})

    def stream() -> BatchStream:
        return BatchStream(open_dataset("paired", root, "train", SIZE, crop_size=12), 2, 0, torch.device("cpu"))

    first = stream()
    straight = [next(first)["A"] for _ in range(6)]  # 4 items, 2 a batch: three passes, three crops of each
    resumed = stream()
    resumed.load_state_dict({"consumed": 3})
    assert all(torch.equal(next(resumed)["A"], batch) for batch in straight[3:])


def test_a_mask_and_its_image_are_cropped_alike(tasks: dict[str, Path]) -> None:
    full = open_dataset("mask_image", tasks["seg2face"], "train", SIZE, num_classes=8)[3]
    crop = open_dataset("mask_image", tasks["seg2face"], "train", SIZE, num_classes=8, crop_size=20)[3]
    windows = [
        (t, x)
        for t in range(SIZE - 19)
        for x in range(SIZE - 19)
        if torch.equal(full["B"][:, t : t + 20, x : x + 20], crop["B"])
    ]
    assert len(windows) == 1
    top, left = windows[0]
    assert torch.equal(full["A"][:, top : top + 20, left : left + 20], crop["A"])


def test_images_of_another_size_are_resized_to_load_size(tmp_path: Path) -> None:
    root = tmp_path / "wide"
    for split in ("train", "test"):
        for i in range(3):
            _noise(root / split / "A" / f"{i}.png", (48, 40), seed=i)
            _noise(root / split / "B" / f"{i}.png", (48, 40), seed=i + 9)
    item = open_dataset("paired", root, "train", SIZE, crop_size=16)[0]
    assert item["A"].shape == item["B"].shape == (3, 16, 16)
    assert open_dataset("paired", root, "test", SIZE)[0]["A"].shape == (3, SIZE, SIZE)
    with pytest.raises(ValueError, match="crop_size must be an integer from 1 to load_size=32"):
        open_dataset("paired", root, "train", SIZE, crop_size=64)


# --- datasets: files that would be mangled ---------------------------------------------------------------


def test_a_pair_of_different_sizes_is_refused(tmp_path: Path) -> None:
    root = _paired(tmp_path / "p", {"train": 3, "test": 1})
    _noise(root / "train" / "B" / "001.png", (SIZE, 2 * SIZE))
    with pytest.raises(DataError, match=r"A/001\.png: input is 32x32 but its target .*B/001\.png is 32x64"):
        open_dataset("paired", root, "train", SIZE)


def _png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG of ``pixels`` (H x W grey, or H x W x 3 / 4 colour), written by hand: Pillow writes no 16-bit
    colour."""
    height, width = pixels.shape[:2]
    colour_type = {2: 0, 3: 2, 4: 6}[pixels.ndim if pixels.ndim == 2 else pixels.shape[2]]
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def _tiff16(path: Path, pixels: np.ndarray) -> Path:
    """An uncompressed 16-bit TIFF of ``pixels`` (as :func:`_png16`), written by hand for the same reason."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    data = pixels.astype("<u2").tobytes()
    bits_at, data_at = 8, 8 + 2 * channels
    ifd_at = data_at + len(data)
    short, long = 3, 4
    tags = [
        (256, short, 1, width),
        (257, short, 1, height),
        (258, short, channels, 16 if channels == 1 else bits_at),
        (259, short, 1, 1),  # no compression
        (262, short, 1, 1 if channels == 1 else 2),  # black is zero / RGB
        (273, long, 1, data_at),
        (277, short, 1, channels),
        (278, short, 1, height),
        (279, long, 1, len(data)),
        (284, short, 1, 1),  # channels interleaved
    ] + ([(338, short, 1, 2)] if channels == 4 else [])  # the fourth channel is (unassociated) alpha
    entries = b"".join(
        struct.pack("<HHIHH", tag, kind, count, value, 0)
        if kind == short and count <= 2
        else struct.pack("<HHII", tag, kind, count, value)
        for tag, kind, count, value in tags
    )
    bits = struct.pack(f"<{channels}H", *[16] * channels)
    ifd = struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"II*\0" + struct.pack("<I", ifd_at) + bits + data + ifd)
    return path


@pytest.mark.parametrize("write", [_png16, _tiff16], ids=["png", "tiff"])
@pytest.mark.parametrize("channels", [1, 3, 4], ids=["grey", "rgb", "rgba"])
def test_16_bit_images_are_scaled_to_8_bits_not_clipped(tmp_path: Path, write, channels: int) -> None:
    """Every value v becomes v // 256: the whole range kept (Pillow's own RGB conversion of 16-bit grey clips
    everything above 255 to white)."""
    pixels = np.random.default_rng(channels).integers(0, 65536, (SIZE, SIZE, channels), dtype=np.uint16)
    if channels == 4:
        pixels[..., 3] = 65535
    name = "x.png" if write is _png16 else "x.tif"
    write(tmp_path / "frames" / name, pixels.squeeze(2) if channels == 1 else pixels)
    expected = np.repeat(pixels, 3, axis=2) if channels == 1 else pixels[..., :3]
    expected = torch.from_numpy((expected >> 8).astype(np.float32)).permute(2, 0, 1).div(127.5).sub(1.0)
    got = ImageFolder(tmp_path / "frames", SIZE, "images")[0]["B"]
    assert torch.equal(got, expected)
    assert got.max() > 0.9 and got.min() < -0.9  # the whole range, not clipped


@pytest.mark.parametrize("mode, kind", [("I", "32-bit integer"), ("F", "floating-point")])
def test_images_without_a_fixed_range_are_refused_with_the_reason(tmp_path: Path, mode: str, kind: str) -> None:
    path = tmp_path / "frames" / "x.tif"
    path.parent.mkdir()
    Image.fromarray(np.full((SIZE, SIZE), 70000, dtype=np.int32 if mode == "I" else np.float32)).save(path)
    assert Image.open(path).mode == mode
    with pytest.raises(DataError, match=rf"x\.tif: mode {mode} \({kind} pixels\) has no fixed range to scale"):
        ImageFolder(tmp_path / "frames", SIZE, "images")


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_images_are_converted_to_their_colours(tmp_path: Path, suffix: str) -> None:
    source = Image.open(_noise(tmp_path / "noise.png")).quantize(colors=16)
    path = tmp_path / "frames" / f"x{suffix}"
    path.parent.mkdir()
    source.save(path)
    assert Image.open(path).mode == "P"
    colours = np.asarray(source.convert("RGB"), dtype=np.float32)
    expected = torch.from_numpy(colours).permute(2, 0, 1).div(127.5).sub(1.0)
    assert torch.equal(ImageFolder(tmp_path / "frames", SIZE, "images")[0]["B"], expected)


def test_16_bit_masks_keep_their_class_ids(tasks: dict[str, Path], tmp_path: Path) -> None:
    seg = _copy(tasks["seg2face"], tmp_path)
    mask = seg / "test" / "mask" / "00000.png"
    ids = np.asarray(Image.open(mask))
    Image.fromarray(ids.astype(np.uint16)).save(mask)
    assert Image.open(mask).mode in ("I", "I;16")
    item = open_dataset("mask_image", seg, "test", SIZE, num_classes=8)[0]
    assert torch.equal(item["A"].argmax(0), torch.from_numpy(ids.astype(np.int64)))


def test_a_gif_pair_is_loaded(tmp_path: Path) -> None:
    root = _paired(tmp_path / "g", {"train": 2, "val": 1, "test": 1}, suffix=".gif")
    ds = open_dataset("paired", root, "train", SIZE)
    assert ds.names == ["000", "001"]
    _check_rgb(ds[1]["A"], SIZE)
    assert torch.equal(ds[1]["A"], ds[1]["B"])


def test_a_file_in_a_format_alap_does_not_read_is_refused_not_dropped(tmp_path):
    """Notes and metadata are left alone; a file in any other format would be a silently dropped sample."""
    root = tmp_path / "frames"
    for i in range(4):
        _noise(root / f"f{i}.png", seed=i)
    (root / "README.md").write_text("notes")
    (root / ".DS_Store").write_bytes(b"\0")
    assert len(open_dataset("images", root, "train", SIZE)) > 0
    (root / "f4.heic").write_bytes(b"\0" * 16)
    with pytest.raises(DataError, match=r"f4\.heic: not an image alap reads .* move it out of"):
        open_dataset("images", root, "train", SIZE)
