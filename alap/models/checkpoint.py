"""alap checkpoints: ``{"format": "alap/1", "arch", "state_dict", "meta"}`` (docs/architecture.md contract).

Saving records the generator's arch next to its weights; loading rebuilds the network from the arch
and loads the weights strictly with ``torch.load(weights_only=True)``, so a pruned network comes
back with its own widths and nothing is ever unpickled as code. Every failure names the file.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alap.io import load_weights, torch_save
from alap.models.arch import build_generator, validate_arch

FORMAT = "alap/1"
_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Meta must hold only what ``weights_only=True`` can load back: plain scalars, lists, str-keyed dicts."""
    if type(value) in _PLAIN_SCALARS:
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"{where}: keys must be str, got {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
    else:
        raise ValueError(f"{where}: expected plain JSON-like data, got {type(value).__name__} {value!r}")


def _arch_shapes(arch: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """State-dict shapes the arch implies, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = build_generator(arch)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, arch: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``model``'s weights with its ``arch`` and ``meta`` atomically (CPU tensors).

    Refuses an arch that would not rebuild this model exactly, so every saved checkpoint loads.
    """
    validate_arch(arch)
    if type(meta) is not dict:
        raise ValueError(f"meta: expected a dict, got {type(meta).__name__}")
    _check_plain(meta, "meta")
    state = model.state_dict()
    actual = {key: tuple(t.shape) for key, t in state.items()}
    expected = _arch_shapes(arch)
    if actual != expected:
        diff = sorted(k for k in actual.keys() | expected.keys() if actual.get(k) != expected.get(k))
        details = ", ".join(f"{k}: model {actual.get(k)} vs arch {expected.get(k)}" for k in diff[:5])
        raise ValueError(
            f"cannot save {path}: the arch does not describe this model ({len(diff)} keys differ: {details})"
        )
    torch_save(
        {
            "format": FORMAT,
            "arch": copy.deepcopy(arch),
            "state_dict": {key: t.detach().cpu() for key, t in state.items()},
            "meta": copy.deepcopy(meta),
        },
        path,
    )


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    obj = load_weights(path, f"an alap checkpoint (format {FORMAT})", map_location)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        hint = ""
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            hint = (
                "; it looks like a bare state dict (e.g. a reference latest_net_G.pth): import it first "
                "(alap import-generator)"
            )
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: not an alap checkpoint (expected format {FORMAT!r}, found {found!r}){hint}")
    for key, kind in (("arch", dict), ("state_dict", dict), ("meta", dict)):
        if not isinstance(obj.get(key), kind):
            raise ValueError(f"{path}: alap checkpoint field {key!r} is missing or not a {kind.__name__}")
    return obj


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    expect_kind: str | None = None,
    expect_task: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the generator from ``path`` on ``map_location``; return ``(model in eval mode, meta)``.

    ``expect_kind`` (``unet``/``resnet``) and ``expect_task`` (``meta["task"]``) guard against
    loading a checkpoint from another pipeline branch.
    """
    path = Path(path)
    obj = _read(path, map_location)
    arch, meta = obj["arch"], obj["meta"]
    try:
        validate_arch(arch)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    if expect_kind is not None and arch["kind"] != expect_kind:
        raise ValueError(f"{path}: holds a {arch['kind']!r} generator, expected {expect_kind!r}")
    if expect_task is not None and meta.get("task") != expect_task:
        raise ValueError(f"{path}: was made for task {meta.get('task')!r}, expected {expect_task!r}")
    # Build on the meta device and adopt the loaded tensors: no random init, no second copy.
    with torch.device("meta"):
        model = build_generator(arch)
    try:
        model.load_state_dict(obj["state_dict"], strict=True, assign=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the recorded arch: {' '.join(str(err).split())}") from err
    return model.eval(), meta
