"""Import a generator trained with the reference pix2pix/CycleGAN code base (``latest_net_G.pth``).

The reference saves a bare state dict. alap's generators have the reference's module tree, so the
weights load strictly into ``build_generator(default_arch(...))``; the result is saved as an alap
checkpoint that the rest of the pipeline (condense, prune, distill, evaluate) takes as a teacher.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alap.models.arch import build_generator, default_arch
from alap.models.checkpoint import save_checkpoint

_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_reference_state_dict(pth: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a reference state dict on CPU (weights_only), stripping a DataParallel ``module.`` prefix."""
    path = Path(pth)
    if not path.is_file():
        raise FileNotFoundError(f"reference generator {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ValueError(
            f"{path}: cannot be loaded with torch.load(weights_only=True): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (names -> tensors) as saved by the reference code base")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return dict(state)


def infer_reference_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Guess kind, channels, ngf, depth, norm (and ResNet dropout) from reference key names and shapes.

    Used to tell a user which options their file was trained with when the ones given do not fit.
    A conv bias before a norm means instance norm (the reference's ``use_bias`` rule).
    """
    if "model.model.0.weight" in state:
        first = state["model.model.0.weight"]
        depth = 1
        while f"model.model.1{'.model.3' * (depth - 1)}.model.1.weight" in state:
            depth += 1
        return {
            "kind": "unet",
            "input_nc": first.shape[1],
            "output_nc": state["model.model.3.weight"].shape[1] if "model.model.3.weight" in state else None,
            "ngf": first.shape[0],
            "num_downs": depth,
            "norm": "instance" if "model.model.1.model.1.bias" in state else "batch",
        }
    blocks = {int(m.group(1)) for key in state if (m := re.match(r"model\.(\d+)\.conv_block\.", key))}
    if "model.1.weight" in state and blocks:
        n_blocks = len(blocks)
        out = state.get(f"model.{17 + n_blocks}.weight")
        return {
            "kind": "resnet",
            "input_nc": state["model.1.weight"].shape[1],
            "output_nc": out.shape[0] if out is not None else None,
            "ngf": state["model.1.weight"].shape[0],
            "n_blocks": n_blocks,
            "norm": "instance" if "model.1.bias" in state else "batch",
            "dropout": f"model.{min(blocks)}.conv_block.6.weight" in state,
        }
    return {"kind": "unknown"}


def _drop_untracked_instance_stats(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Drop InstanceNorm running stats that old PyTorch versions saved; the reference loader does the same."""
    kept = {}
    for key, value in state.items():
        module_path, _, attr = key.rpartition(".")
        if attr in _RUNNING_STATS:
            try:
                module = model.get_submodule(module_path)
            except AttributeError:
                module = None
            if isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats:
                continue
        kept[key] = value
    return kept


def import_reference_generator(
    pth: str | os.PathLike,
    out: str | os.PathLike,
    *,
    kind: str,
    input_nc: int,
    output_nc: int,
    task: str,
    ngf: int = 64,
    norm: str = "batch",
    dropout: bool = False,
    num_downs: int = 8,
    n_blocks: int = 9,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load reference weights strictly into the matching alap generator and save it as a checkpoint at ``out``.

    Returns ``(model in eval mode, meta)``; ``meta`` records the task and where the weights came from.
    """
    path = Path(pth)
    state = read_reference_state_dict(path)
    arch = default_arch(
        kind, input_nc, output_nc, ngf=ngf, norm=norm, dropout=dropout, num_downs=num_downs, n_blocks=n_blocks
    )
    model = build_generator(arch)
    state = _drop_untracked_instance_stats(state, model)
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    found = {key: tuple(t.shape) for key, t in state.items()}
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    if missing or unexpected or wrong:
        depth = {"num_downs": num_downs} if kind == "unet" else {"n_blocks": n_blocks}
        given = {"kind": kind, "input_nc": input_nc, "output_nc": output_nc, "ngf": ngf, "norm": norm,
                 "dropout": dropout, **depth}
        raise ValueError(
            f"{path}: does not match a reference {kind} generator with {given}: "
            f"{len(missing)} missing keys {missing[:6]}, {len(unexpected)} unexpected keys {unexpected[:6]}, "
            f"{len(wrong)} shape mismatches {[(k, found[k], expected[k]) for k in wrong[:4]]}. "
            f"The file looks like {infer_reference_config(state)}"
        )
    model.load_state_dict(state, strict=True)
    reference = {key: arch[key] for key in ("kind", "norm", "dropout", "num_downs", "n_blocks") if key in arch}
    meta = {
        "task": task,
        "source": "reference",
        "source_file": path.name,
        "source_sha256": _sha256(path),
        "reference_config": {**reference, "ngf": ngf},
    }
    save_checkpoint(out, model, arch, meta)
    return model.eval(), meta
