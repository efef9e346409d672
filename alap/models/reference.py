"""Import a generator trained elsewhere (a reference pix2pix/CycleGAN ``latest_net_G.pth`` or a look-alike).

Matching goes by structure, not by key names, because other code bases name the same layers differently.
The file's tensors are grouped into modules by key prefix, in the file's order; the conv weights' order and
shapes give the kind (first conv 7x7: ResNet, 4x4: U-Net), the channels and every width, and the norm
tensors give the norm (running statistics: batch). alap's generator built from that arch must then hold the
same modules in the same order, with the same tensor names (weight, bias, running stats) and shapes; the
file's tensors take alap's keys module by module. A file that does not fit fails at its first tensor that
does not, naming it and what alap expected there.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alap.io import load_weights
from alap.models.arch import build_generator
from alap.models.checkpoint import FORMAT, save_checkpoint

log = logging.getLogger(__name__)

_STATS = ("running_mean", "running_var", "num_batches_tracked")
_NORM_ATTRS = {"weight", "bias", *_STATS}
# Dropout has no tensors; unless key names show it, the reference defaults hold: pix2pix on, CycleGAN off.
_DEFAULT_DROPOUT = {"unet": True, "resnet": False}
_Groups = dict[str, dict[str, torch.Tensor]]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _names(items: list[str], limit: int = 8) -> str:
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _describe(obj: Any) -> str:
    """What a loaded object holds instead of one generator state dict, and what to do about it."""
    if not isinstance(obj, dict):
        return f"holds an object of type {type(obj).__name__}; expected a generator state dict (names -> tensors)"
    if not obj:
        return "holds an empty dict; expected a generator state dict (names -> tensors)"
    if _is_state_dict(obj):
        return f"holds a single state dict ({len(obj)} tensors); leave out key"
    nets = [str(k) for k, v in obj.items() if _is_state_dict(v)]
    others = [str(k) for k, v in obj.items() if not _is_state_dict(v)]
    if not nets:
        return f"holds no state dict (entries: {_names(others)}); expected a generator state dict (names -> tensors)"
    rest = f" (and other entries: {_names(others)})" if others else ""
    return f"holds {'several networks' if len(nets) > 1 else 'one network'}: {_names(nets)}{rest}; choose one with key"


def read_generator_state(pth: str | os.PathLike, key: str | None = None) -> dict[str, torch.Tensor]:
    """Load a generator state dict on CPU without unpickling code (``weights_only``).

    ``key`` picks one network from a file holding several (``{'netG_A': ..., 'netG_B': ..., 'epoch': 3}``);
    without it such a file is refused rather than guessed from, since its networks may share one layout.
    A DataParallel ``module.`` prefix is removed.
    """
    path = Path(pth)
    obj = load_weights(path, "a generator state dict saved with torch.save (e.g. latest_net_G.pth)")
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raise ValueError(f"{path}: is an alap checkpoint already (format {FORMAT}); it needs no import")
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise ValueError(f"{path}: has no entry {key!r}; it {_describe(obj)}")
        obj = obj[key]
    if not _is_state_dict(obj):
        raise ValueError(f"{path}{f' [{key!r}]' if key is not None else ''}: {_describe(obj)}")
    if all(name.startswith("module.") for name in obj):
        obj = {name[len("module.") :]: value for name, value in obj.items()}
    return dict(obj)


def _group(state: dict[str, torch.Tensor]) -> _Groups:
    """Tensors by module prefix, modules in order of first appearance (a state dict lists module by module)."""
    groups: _Groups = {}
    for name, tensor in state.items():
        prefix, _, attr = name.rpartition(".")
        groups.setdefault(prefix, {})[attr] = tensor
    return groups


def _key(prefix: str, attr: str) -> str:
    return f"{prefix}.{attr}" if prefix else attr


def _shapes(tensors: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{attr} {tuple(t.shape)}" for attr, t in tensors.items())


def _norm_of(groups: _Groups) -> tuple[str, bool]:
    """``(norm, affine)`` from the norm modules: running stats next to a weight mean BatchNorm (always affine)."""
    norms = [g for g in groups.values() if set(g) <= _NORM_ATTRS and all(t.dim() <= 1 for t in g.values())]
    if any("weight" in g and "running_mean" in g for g in norms):
        return "batch", True
    return "instance", any("weight" in g for g in norms)


def _arch(kind: str, convs: list[torch.Tensor], norm: str, affine: bool) -> dict[str, Any]:
    """The arch read off the conv weights in file order (a ConvTranspose2d weight is ``(in, out, k, k)``)."""
    n = len(convs)
    common = {"norm": norm, "norm_affine": affine, "dropout": False, "gates": []}
    if kind == "unet":  # down-convs outermost to innermost, then up-convs innermost to outermost
        levels = n // 2
        if levels < 2:
            raise ValueError(f"holds {n} convs after a 4x4 first conv; a U-Net generator has 2 * num_downs >= 4")
        up_out = [convs[2 * levels - 1 - i].shape[1] for i in range(levels)]
        return {
            "kind": "unet",
            "input_nc": convs[0].shape[1],
            "output_nc": up_out[0],
            "num_downs": levels,
            **common,
            "widths": {"down": [convs[i].shape[0] for i in range(levels)], "up": up_out[1:]},
        }
    blocks = (n - 6) // 2  # stem, 2 down-convs, 2 per residual block, 2 up-convs, output conv
    if blocks < 1:
        raise ValueError(f"holds {n} convs after a 7x7 first conv; a ResNet generator has 6 + 2 * n_blocks >= 8")
    up1, up2, out = convs[3 + 2 * blocks : 6 + 2 * blocks]
    return {
        "kind": "resnet",
        "input_nc": convs[0].shape[1],
        "output_nc": out.shape[0],
        "n_blocks": blocks,
        "upsample": "transpose",
        **common,
        "widths": {
            "encoder": [convs[0].shape[0], convs[1].shape[0]],
            "trunk": convs[2].shape[0],
            "blocks": [convs[3 + 2 * i].shape[0] for i in range(blocks)],
            "decoder": [up1.shape[1], up2.shape[1]],
        },
    }


def _skeleton(arch: dict[str, Any]) -> nn.Module:
    """alap's generator on the meta device: its keys and shapes, without memory."""
    with torch.device("meta"):
        return build_generator(arch)


def _wanted(model: nn.Module, prefix: str, expected: dict[str, torch.Tensor]) -> str:
    return f"{type(model.get_submodule(prefix)).__name__} {prefix} with {_shapes(expected)}"


def _dropout_in_keys(groups: _Groups, arch: dict[str, Any]) -> bool | None:
    """Dropout as the reference's key names show it (ResNet: a block's second conv moves from index 5 to 6)."""
    shown = [d for d in (False, True) if list(_group(_skeleton({**arch, "dropout": d}).state_dict())) == list(groups)]
    return shown[0] if len(shown) == 1 else None


def _check(name: str, given: Any, found: Any, why: str) -> None:
    if given is not None and given != found:
        raise ValueError(f"{name}={given!r} was given, but the file has {name}={found!r} ({why})")


def _align(groups: _Groups, model: nn.Module) -> dict[str, torch.Tensor]:
    """Give the file's tensors alap's keys, module by module in order; stop at the first that does not fit."""
    ours, theirs = list(_group(model.state_dict()).items()), list(groups.items())
    state = {}
    for (prefix, expected), (source, tensors) in zip(ours, theirs, strict=False):
        bad = next((a for a, t in tensors.items() if a not in expected or expected[a].shape != t.shape), None)
        missing = [a for a in expected if a not in tensors and a != "num_batches_tracked"]
        if bad is not None or missing:
            at = f"{_key(source, bad)} {tuple(tensors[bad].shape)}" if bad else f"{source} ({_shapes(tensors)})"
            raise ValueError(f"matching stopped at {at}: alap expected {_wanted(model, prefix, expected)} there")
        for attr in expected:  # num_batches_tracked is absent from files saved before PyTorch 0.4.1
            state[f"{prefix}.{attr}"] = tensors.get(attr, torch.tensor(0))
    if len(theirs) > len(ours):  # _arch never reads more convs than the file has, so only the file can be longer
        source, tensors = theirs[len(ours)]
        attr, tensor = next(iter(tensors.items()))
        raise ValueError(
            f"matching stopped at {_key(source, attr)} {tuple(tensor.shape)}: alap's generator ends before it"
        )
    return state


def match_generator(
    state: dict[str, torch.Tensor],
    *,
    kind: str | None = None,
    norm: str | None = None,
    norm_affine: bool | None = None,
    dropout: bool | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Infer alap's arch from a state dict's structure; return ``(arch, state with alap's keys)``.

    The returned state loads strictly into ``build_generator(arch)``. Given options are checked against the
    tensors (a contradiction is an error naming both). Dropout has no tensors: it is read from reference key
    names where they show it (ResNet), else taken from ``dropout``, else assumed with a logged warning.
    Raises one single-line ValueError saying where matching stopped.
    """
    groups = _group(state)
    found_norm, found_affine = _norm_of(groups)
    if found_norm == "instance":  # stats PyTorch < 0.4 saved for InstanceNorm; the reference loader drops them too
        groups = {p: kept for p, g in groups.items() if (kept := {a: t for a, t in g.items() if a not in _STATS})}
    convs = [(p, g["weight"]) for p, g in groups.items() if "weight" in g and g["weight"].dim() == 4]
    if not convs:
        raise ValueError("holds no conv weight (4-D tensor); expected a generator state dict")
    first_key, first = _key(convs[0][0], "weight"), convs[0][1]
    found_kind = {(7, 7): "resnet", (4, 4): "unet"}.get(tuple(first.shape[2:]))
    if found_kind is None:
        raise ValueError(
            f"matching stopped at {first_key} {tuple(first.shape)}: "
            "alap expected the first conv of a ResNet (7x7) or a U-Net (4x4) generator"
        )
    _check("kind", kind, found_kind, f"first conv {first_key} is {first.shape[2]}x{first.shape[3]}")
    _check("norm", norm, found_norm, f"{'' if found_norm == 'batch' else 'no '}norm running statistics")
    _check("norm_affine", norm_affine, found_affine, f"{'' if found_affine else 'no '}norm weights")
    arch = _arch(found_kind, [w for _, w in convs], found_norm, found_affine)
    shown = _dropout_in_keys(groups, arch)
    if shown is not None:
        _check("dropout", dropout, shown, f"key names of the reference layout {'with' if shown else 'without'} it")
    arch["dropout"] = next(d for d in (shown, dropout, _DEFAULT_DROPOUT[found_kind]) if d is not None)
    aligned = _align(groups, _skeleton(arch))
    if shown is None and dropout is None:
        log.warning(
            "dropout has no weights and the key names do not show it: assumed dropout=%s (the reference "
            "%s default); if it was trained otherwise, pass dropout (alap import-generator --%sdropout)",
            arch["dropout"],
            {"unet": "pix2pix", "resnet": "CycleGAN"}[found_kind],
            "no-" if arch["dropout"] else "",
        )
    return arch, aligned


def import_generator(
    pth: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    task: str,
    key: str | None = None,
    kind: str | None = None,
    norm: str | None = None,
    norm_affine: bool | None = None,
    dropout: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build alap's generator from a foreign state dict file (see the module doc); return ``(model, meta)``.

    The model is in eval mode; ``meta`` records the task, the file, its sha256, the ``key`` and the inferred
    config. With ``out`` the result is also saved as an alap checkpoint (atomically, after the whole file
    matched); with ``out=None`` nothing is written, for callers that import in memory.
    """
    path = Path(pth)
    state = read_generator_state(path, key)
    try:
        arch, state = match_generator(state, kind=kind, norm=norm, norm_affine=norm_affine, dropout=dropout)
    except ValueError as err:
        raise ValueError(f"{path}{f' [{key!r}]' if key is not None else ''}: {err}") from None
    model = _skeleton(arch).to_empty(device="cpu")
    model.load_state_dict(state, strict=True)  # every tensor is overwritten: no init needed
    depth = "num_downs" if arch["kind"] == "unet" else "n_blocks"
    config = {name: arch[name] for name in ("kind", "input_nc", "output_nc", depth, "norm", "norm_affine", "dropout")}
    meta = {
        "task": task,
        "source": "imported",
        "source_file": path.name,
        "source_sha256": _sha256(path),
        "source_key": key,
        "reference_config": {**config, "ngf": arch["widths"]["down" if depth == "num_downs" else "encoder"][0]},
    }
    if out is not None:
        save_checkpoint(out, model, arch, meta)
    return model.eval(), meta
