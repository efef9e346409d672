"""Tiny pipeline params for tests: the demo profile shrunk to seconds (32x32, a handful of images and steps)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_params(root: Path, tasks: list[str] | None = None, sparsities: list[float] | None = None) -> dict:
    """The demo profile with every size cut down; task data roots point under ``root``."""
    params = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    params["profile_name"] = "tiny"
    params["device"] = "cpu"
    params["run_tasks"] = tasks or ["seg2face"]
    params["dvc"] = {"generate": params["run_tasks"], "train": params["run_tasks"], "import": {}}
    params["data"] = {"image_size": 32, "n_train": 16, "n_val": 8, "n_test": 8}
    for name, task in params["tasks"].items():
        task["root"] = str(root / "data" / name)
        task.pop("train", None)  # the profile's per-task steps would dwarf the tiny shared ones
    params["model"] = {
        "unet": {"ngf": 8, "num_downs": 5, "norm": "batch", "dropout": False},
        "resnet": {"ngf": 8, "n_blocks": 2, "norm": "instance", "dropout": False},
        "discriminator": {"ndf": 8, "n_layers": 2},
    }
    params["train"].update(steps=6, batch_size=4, checkpoint_every=2)
    params["tasks"]["horse2zebra"]["train"] = {"steps": 4, "batch_size": 2}
    params["condense"].update(steps=4, warmup_steps=2, checkpoint_every=2, sparsity_weight=0.01)
    params["distill"].update(
        steps=4, checkpoint_every=2, validate_every=2, feature_layers={"unet": ["down2"], "resnet": ["block1"]}
    )
    params["sweep"] = {**params["sweep"], "sparsities": sparsities or [0.5]}
    params["evaluate"].update(batch_size=8, kid_subset_size=4, grid_rows=2)
    params["profile"] = {
        "devices": ["cpu-t1"],
        "backends": ["torch", "onnxruntime"],
        "batch_sizes": [1],
        "warmup": 1,
        "min_repeats": 2,
        "min_seconds": 0.0,
    }
    return params


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path
