"""The metric weight files: their names, where torch hub looks for them, how an official file is recognised, and
the provenance record (``weights.json``) that vouches for a converted one.

Shared by provide.py (which writes files and record), the metrics (which load only files the record or the
official name vouches for) and verify.py (which adds its results to the record); it imports none of them.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from alap import io
from alap.metrics.errors import WeightsError

PROVENANCE_FILE = "weights.json"
RECORD_FORMAT = "alap-weights/1"

FID_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
LPIPS_TRUNK_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def checkpoints_dir(torch_home: Path) -> Path:
    """Where torch hub (and so pytorch-fid and torchvision) looks for cached weights."""
    return Path(torch_home) / "hub" / "checkpoints"


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def official_hash_prefix(filename: str) -> str:
    """The sha256 prefix torch hub embeds in official file names (``name-<prefix>.pth``)."""
    match = re.search(r"-([a-f0-9]{8,})\.pth$", filename)
    if match is None:
        raise ValueError(f"'{filename}' does not carry a torch hub hash prefix")
    return match.group(1)


def is_official(path: Path, sha256: str) -> bool:
    return sha256.startswith(official_hash_prefix(path.name))


def official_entry(path: Path, sha256: str) -> dict[str, Any]:
    """The provenance of an official file: its hash and where it was found."""
    return {"sha256": sha256, "method": "official cache", "source": {"path": str(path)}}


def record_path(torch_home: Path) -> Path:
    return Path(torch_home) / PROVENANCE_FILE


def load_record(torch_home: Path) -> dict[str, Any]:
    """Read weights.json (empty record when absent)."""
    path = record_path(torch_home)
    if not path.exists():
        return {"format": RECORD_FORMAT, "files": {}}
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise WeightsError(f"{path}: not valid JSON ({error}); delete it and run `alap weights`") from error
    if record.get("format") != RECORD_FORMAT or not isinstance(record.get("files"), dict):
        raise WeightsError(f"{path}: expected format '{RECORD_FORMAT}' with a 'files' mapping")
    return record


def write_record(torch_home: Path, record: dict[str, Any]) -> None:
    """Write weights.json atomically, so a killed run never leaves a half record that vouches for nothing."""
    io.write_json(record_path(torch_home), record)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a weights file as plain tensors (weights_only), refusing anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(f"{path}: not a plain tensor state dict ({error})") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a dict of tensors")
    return state
