"""Generator architecture as a plain-JSON ``arch`` dict: the one description a checkpoint stores.

A pruned network is rebuilt from its arch (never unpickled), so the arch records every prunable
conv's output width. Layouts (all lists run from the input side to the output side):

    {"kind": "unet", "input_nc", "output_nc", "num_downs", "norm", "norm_affine", "dropout",
     "widths": {"down": [num_downs ints], "up": [num_downs - 1 ints]}, "gates": [conv names]}
    {"kind": "resnet", "input_nc", "output_nc", "n_blocks", "upsample", "norm", "norm_affine", "dropout",
     "widths": {"encoder": [stem, down1], "trunk": int, "blocks": [n_blocks ints],
                "decoder": [up1, up2]}, "gates": [conv names]}

See unet.py / resnet.py for what each width means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from alap.models.gates import add_gates, gated_convs
from alap.models.norm import NORMS, check_norm
from alap.models.resnet import UPSAMPLINGS, ResnetGenerator
from alap.models.unet import UnetGenerator

KINDS = ("unet", "resnet")
_DEPTH_KEY = {"unet": "num_downs", "resnet": "n_blocks"}
_KIND_KEYS = {"unet": ("num_downs",), "resnet": ("n_blocks", "upsample")}
_WIDTH_KEYS = {"unet": ("down", "up"), "resnet": ("encoder", "trunk", "blocks", "decoder")}
_COMMON_KEYS = ("kind", "input_nc", "output_nc", "norm", "norm_affine", "dropout", "widths", "gates")


def default_arch(
    kind: str,
    input_nc: int,
    output_nc: int,
    ngf: int = 64,
    norm: str = "batch",
    dropout: bool = False,
    num_downs: int = 8,
    n_blocks: int = 9,
    upsample: str = "transpose",
) -> dict[str, Any]:
    """The reference network's arch (``unet_256``: num_downs=8, ``resnet_9blocks``: n_blocks=9).

    U-Net level i has ``ngf * min(2**i, 8)`` channels, as in the reference; ``norm_affine`` is the
    reference's choice (BatchNorm affine, InstanceNorm not). ``upsample`` is the ResNet's (resnet.py).
    """
    if kind == "unet":
        down = [ngf * min(2**i, 8) for i in range(num_downs)]
        depth: dict[str, Any] = {"num_downs": num_downs}
        widths: dict[str, Any] = {"down": down, "up": down[:-1]}
    elif kind == "resnet":
        depth = {"n_blocks": n_blocks, "upsample": upsample}
        widths = {
            "encoder": [ngf, 2 * ngf],
            "trunk": 4 * ngf,
            "blocks": [4 * ngf] * n_blocks,
            "decoder": [2 * ngf, ngf],
        }
    else:
        raise ValueError(f"unknown generator kind {kind!r}, expected one of {KINDS}")
    arch = {
        "kind": kind,
        "input_nc": input_nc,
        "output_nc": output_nc,
        **depth,
        "norm": norm,
        "norm_affine": norm == "batch",
        "dropout": dropout,
        "widths": widths,
        "gates": [],
    }
    validate_arch(arch)
    return arch


def _positive_int(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"arch{where}: expected a positive int, got {value!r}")


def _int_list(value: Any, length: int, where: str) -> None:
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"arch{where}: expected a list of {length} positive ints, got {value!r}")
    for i, item in enumerate(value):
        _positive_int(item, f"{where}[{i}]")


def validate_arch(arch: Any) -> None:
    """Raise ValueError naming the offending field if ``arch`` is not a buildable generator arch."""
    if not isinstance(arch, dict):
        raise ValueError(f"arch: expected a dict, got {type(arch).__name__}")
    kind = arch.get("kind")
    if kind not in KINDS:
        raise ValueError(f"arch['kind']: unknown generator kind {kind!r}, expected one of {KINDS}")
    expected = {*_COMMON_KEYS, *_KIND_KEYS[kind]}
    missing, unknown = expected - arch.keys(), arch.keys() - expected
    if missing or unknown:
        raise ValueError(f"arch ({kind}): missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    for key in ("input_nc", "output_nc", _DEPTH_KEY[kind]):
        _positive_int(arch[key], f"[{key!r}]")
    if kind == "resnet" and arch["upsample"] not in UPSAMPLINGS:
        raise ValueError(f"arch['upsample']: unknown upsampling {arch['upsample']!r}, expected one of {UPSAMPLINGS}")
    if arch["norm"] not in NORMS:
        raise ValueError(f"arch['norm']: unknown norm {arch['norm']!r}, expected one of {NORMS}")
    try:
        check_norm(arch["norm"], arch["norm_affine"])
    except ValueError as err:
        raise ValueError(f"arch['norm_affine']: {err}") from err
    if not isinstance(arch["dropout"], bool):
        raise ValueError(f"arch['dropout']: expected a bool, got {arch['dropout']!r}")
    gates = arch["gates"]
    if not isinstance(gates, list) or not all(isinstance(g, str) for g in gates) or len(set(gates)) != len(gates):
        raise ValueError(f"arch['gates']: expected a list of distinct module names, got {gates!r}")

    widths = arch["widths"]
    if not isinstance(widths, dict) or set(widths) != set(_WIDTH_KEYS[kind]):
        got = sorted(widths) if isinstance(widths, dict) else widths
        raise ValueError(f"arch['widths'] ({kind}): expected keys {list(_WIDTH_KEYS[kind])}, got {got!r}")
    if kind == "unet":
        levels = arch["num_downs"]
        if levels < 2:
            raise ValueError(f"arch['num_downs']: a U-Net needs at least 2 levels, got {levels}")
        _int_list(widths["down"], levels, "['widths']['down']")
        _int_list(widths["up"], levels - 1, "['widths']['up']")
    else:
        _int_list(widths["encoder"], 2, "['widths']['encoder']")
        _positive_int(widths["trunk"], "['widths']['trunk']")
        _int_list(widths["blocks"], arch["n_blocks"], "['widths']['blocks']")
        _int_list(widths["decoder"], 2, "['widths']['decoder']")


def build_generator(arch: dict[str, Any]) -> nn.Module:
    """Build a freshly initialised generator (reference init) with the arch's widths and gates."""
    validate_arch(arch)
    common = {"norm": arch["norm"], "norm_affine": arch["norm_affine"], "dropout": arch["dropout"]}
    widths = arch["widths"]
    model: nn.Module
    if arch["kind"] == "unet":
        model = UnetGenerator(arch["input_nc"], arch["output_nc"], list(widths["down"]), list(widths["up"]), **common)
    else:
        model = ResnetGenerator(
            arch["input_nc"],
            arch["output_nc"],
            list(widths["encoder"]),
            widths["trunk"],
            list(widths["blocks"]),
            list(widths["decoder"]),
            **common,
            upsample=arch["upsample"],
        )
    add_gates(model, arch["gates"])
    return model


def arch_of(model: nn.Module, out_channels: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Read the arch back from a (possibly pruned in place) generator's live conv modules.

    ``out_channels`` ({conv name: width}) overrides what the named convs output: the arch the network would have
    after removing channels, without removing them (the latency planner times such candidates).
    """
    if not isinstance(model, (UnetGenerator, ResnetGenerator)):
        raise TypeError(f"arch_of: expected an alap UnetGenerator or ResnetGenerator, got {type(model).__name__}")
    override = dict(out_channels or {})
    names = {m: n for n, m in model.named_modules()} if override else {}

    def width(conv: nn.Module) -> int:
        return override.get(names.get(conv, ""), conv.out_channels)

    # Norm type and dropout are not touched by pruning; widths are read from the convs themselves.
    common = {"norm": model.norm, "norm_affine": model.norm_affine, "dropout": model.dropout}
    if isinstance(model, UnetGenerator):
        levels = model.levels()
        arch = {
            "kind": "unet",
            "input_nc": levels[0].downconv.in_channels,
            "output_nc": width(levels[0].upconv),
            "num_downs": len(levels),
            **common,
            "widths": {
                "down": [width(b.downconv) for b in levels],
                "up": [width(b.upconv) for b in levels[1:]],
            },
        }
    else:
        stem, down1, down2, up1, up2, out = model.outer_convs()
        blocks = model.blocks()
        arch = {
            "kind": "resnet",
            "input_nc": stem.in_channels,
            "output_nc": width(out),
            "n_blocks": len(blocks),
            "upsample": model.upsample,
            **common,
            "widths": {
                "encoder": [width(stem), width(down1)],
                "trunk": width(down2),
                "blocks": [width(b.convs()[0]) for b in blocks],
                "decoder": [width(up1), width(up2)],
            },
        }
    arch["gates"] = gated_convs(model)
    validate_arch(arch)
    return arch
