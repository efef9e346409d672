"""Generators, gates, discriminator and checkpoints (alap/models); importing foreign files: test_import.py."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp
from reference_nets import ref_discriminator, reference
from torch import nn

from alap.models import (
    NLayerDiscriminator,
    add_gates,
    arch_of,
    build_generator,
    default_arch,
    fold_gates,
    gateable_convs,
    gated_convs,
    load_checkpoint,
    save_checkpoint,
    validate_arch,
)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def tiny(kind="unet", norm="batch", **kw):
    depth = {"num_downs": 5} if kind == "unet" else {"n_blocks": 2}
    return default_arch(kind, 3, 2, ngf=4, norm=norm, **{**depth, **kw})


# --- Layout: alap's state dicts equal the reference's, key by key (meta device: full size, no memory).


@pytest.mark.parametrize("kind", ["unet", "resnet"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("dropout", [False, True])
def test_state_dict_layout_equals_reference(kind, norm, dropout):
    with torch.device("meta"):
        ours = build_generator(default_arch(kind, 3, 3, ngf=64, norm=norm, dropout=dropout))
        ref = reference(kind, norm, dropout)
    assert list(shapes(ours).items()) == list(shapes(ref).items())  # same keys, same order, same shapes
    if kind == "resnet":  # dropout shifts the second conv of each block, so it must show in the keys
        assert len(shapes(ours)[f"model.10.conv_block.{6 if dropout else 5}.weight"]) == 4


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_discriminator_layout_equals_reference(norm):
    ours = NLayerDiscriminator(6, ndf=8, n_layers=3, norm=norm)
    assert list(shapes(ours).items()) == list(shapes(ref_discriminator(6, 8, 3, norm)).items())
    assert ours(torch.randn(2, 6, 64, 64)).shape == (2, 1, 6, 6)


@pytest.mark.parametrize(
    "kind,norm,dropout",
    [("unet", "batch", True), ("unet", "instance", False), ("resnet", "instance", True), ("resnet", "batch", False)],
)
def test_reference_weights_load_strict_and_compute_the_same(kind, norm, dropout):
    torch.manual_seed(0)
    depth = {"num_downs": 6} if kind == "unet" else {"n_blocks": 2}
    ref = reference(kind, norm, dropout, ngf=4, **depth).eval()
    for p in ref.parameters():  # non-trivial weights everywhere, including norms
        nn.init.normal_(p, 0.0, 0.3)
    ours = build_generator(default_arch(kind, 3, 3, ngf=4, norm=norm, dropout=dropout, **depth))
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("kind,size,depth", [("unet", 64, 6), ("unet", 256, 8), ("resnet", 64, 1), ("resnet", 256, 1)])
def test_output_shape(kind, size, depth):
    arch = default_arch(kind, 3, 2, ngf=2, num_downs=depth, n_blocks=depth)
    model = build_generator(arch).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, size, size))
    assert y.shape == (1, 2, size, size)
    assert y.abs().max() <= 1.0  # Tanh output


@pytest.mark.parametrize("kind", ["unet", "resnet"])
def test_non_uniform_widths_build_run_and_read_back(kind):
    arch = tiny(kind)
    if kind == "unet":
        arch["widths"] = {"down": [3, 7, 5, 11, 2], "up": [9, 1, 6, 4]}
    else:
        arch["widths"] = {"encoder": [5, 3], "trunk": 7, "blocks": [2, 9], "decoder": [6, 1]}
    model = build_generator(arch)
    y = model(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 2, 32, 32)
    y.mean().backward()
    assert arch_of(model) == arch
    if kind == "unet":  # skip concat: level-1 up-conv reads down[1] + up[1], the outermost down[0] + up[0]
        levels = model.levels()
        assert levels[1].upconv.in_channels == 7 + 1 and levels[0].upconv.in_channels == 3 + 9
        assert levels[-1].upconv.in_channels == 2


def _narrow(model: nn.Module, picks: list[tuple[nn.Module, list[int]]]) -> None:
    """Remove output channels of some convs with Torch-Pruning (the tool the prune stage uses)."""
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    for conv, idxs in picks:
        graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=idxs).prune()


@pytest.mark.parametrize(
    "kind,norm,extra",
    [("unet", "batch", {}), ("resnet", "instance", {}), ("resnet", "instance", {"upsample": "resize"})],
)
def test_arch_of_round_trip_after_narrowing(kind, norm, extra):
    torch.manual_seed(0)
    model = build_generator(tiny(kind, norm, **extra)).eval()
    if kind == "unet":
        lv = model.levels()
        picks = [(lv[0].downconv, [0, 2]), (lv[2].downconv, [1, 5, 7]), (lv[2].upconv, [0]), (lv[4].downconv, [3])]
    else:
        out, blocks = model.outer_convs(), model.blocks()
        picks = [(out[0], [1]), (out[2], [0, 3]), (blocks[1].convs()[0], [2, 4]), (out[3], [1])]
    before = arch_of(model)
    _narrow(model, picks)
    arch = arch_of(model)
    assert arch != before
    rebuilt = build_generator(arch)
    assert shapes(rebuilt) == shapes(model)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt.eval()(x), model(x))


# --- validate_arch


def _set(arch, path, value):
    target = arch
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return arch


@pytest.mark.parametrize(
    "path,value,message",
    [
        (("kind",), "vgg", "unknown generator kind"),
        (("norm",), "group", "unknown norm"),
        (("norm_affine",), False, "only supported for norm='instance'"),
        (("input_nc",), 0, "input_nc"),
        (("num_downs",), 1, "at least 2 levels"),
        (("widths", "down"), [4, 8, 16, 32], r"\['down'\]: expected a list of 5"),
        (("widths", "up"), [4, 8, 0, 32], r"\['up'\]\[2\]: expected a positive int"),
        (("widths", "down"), [4, 8, 16, 32, 2.5], r"\['down'\]\[4\]"),
        (("widths", "up"), [4, 8, True, 32], r"\['up'\]\[2\]"),
        (("widths",), {"down": [1] * 5}, "expected keys"),
        (("gates",), ["a", "a"], "distinct"),
        (("dropout",), "yes", "dropout"),
        (("extra",), 1, "unknown keys"),
    ],
)
def test_validate_arch_rejects(path, value, message):
    with pytest.raises(ValueError, match=message):
        validate_arch(_set(tiny("unet"), path, value))


def test_validate_arch_rejects_resnet_widths_and_missing_keys():
    with pytest.raises(ValueError, match=r"\['blocks'\]: expected a list of 2"):
        validate_arch(_set(tiny("resnet"), ("widths", "blocks"), [4]))
    with pytest.raises(ValueError, match=r"\['trunk'\]"):
        validate_arch(_set(tiny("resnet"), ("widths", "trunk"), -1))
    arch = tiny("resnet")
    del arch["n_blocks"]
    with pytest.raises(ValueError, match="missing keys"):
        validate_arch(arch)
    with pytest.raises(ValueError, match=r"arch\['upsample'\]: unknown upsampling 'bilinear'"):
        validate_arch(_set(tiny("resnet"), ("upsample",), "bilinear"))
    with pytest.raises(ValueError, match="expected a dict"):
        validate_arch([1, 2])
    with pytest.raises(TypeError, match="UnetGenerator or ResnetGenerator"):
        arch_of(NLayerDiscriminator(3, ndf=4))


# --- gates


def test_gateable_convs():
    unet = build_generator(tiny("unet"))
    levels = unet.levels()
    names = {m: n for n, m in unet.named_modules()}
    assert gateable_convs(unet) == [names[levels[0].downconv], names[levels[-1].downconv]]
    assert gateable_convs(unet) == ["model.model.0", "model.model.1.model.3.model.3.model.3.model.1"]
    assert gateable_convs(build_generator(tiny("resnet"))) == []


@pytest.mark.parametrize("kind", ["unet", "resnet"])
def test_gates_identity_at_init_and_fold_keeps_function(kind):
    torch.manual_seed(0)
    model = build_generator(tiny(kind)).eval()
    names = gateable_convs(model) or ["model.1", "model.12"]  # ResNet: gate a conv and a ConvTranspose2d anyway
    x = torch.randn(2, 3, 32, 32)
    plain = model(x)
    add_gates(model, names)
    assert gated_convs(model) == names
    assert all(f"{n}.gate" in model.state_dict() for n in names)
    torch.testing.assert_close(model(x), plain)
    with torch.no_grad():
        for name in names:
            model.get_submodule(name).gate.uniform_(0.0, 2.0)
    gated = model(x)
    assert not torch.allclose(gated, plain)
    copied = copy.deepcopy(model)  # the hook must survive a copy (training code deep-copies teachers)
    torch.testing.assert_close(copied(x), gated)
    assert fold_gates(model) == names
    assert gated_convs(model) == [] and arch_of(model)["gates"] == []
    assert all(not model.get_submodule(n)._forward_hooks for n in names)
    torch.testing.assert_close(model(x), gated, atol=1e-5, rtol=0)


def test_arch_gates_are_rebuilt():
    arch = tiny("unet")
    arch["gates"] = gateable_convs(build_generator(arch))
    model = build_generator(arch)
    assert arch_of(model) == arch
    assert {k for k in model.state_dict() if k.endswith(".gate")} == {f"{n}.gate" for n in arch["gates"]}


def test_add_gates_rejects_bad_names():
    model = build_generator(tiny("unet"))
    with pytest.raises(ValueError, match="no such module"):
        add_gates(model, ["model.model.99"])
    with pytest.raises(ValueError, match="BatchNorm2d"):
        add_gates(model, ["model.model.1.model.2"])
    add_gates(model, ["model.model.0"])
    with pytest.raises(ValueError, match="already has a gate"):
        add_gates(model, ["model.model.0"])


# --- checkpoints


def _trained_bits(model: nn.Module) -> None:
    """Make running stats and gates differ from their defaults so a round trip really has to carry them."""
    model.train()
    model(torch.randn(4, 3, 32, 32))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.eval()


@pytest.mark.parametrize("kind,norm", [("unet", "batch"), ("resnet", "instance")])
def test_checkpoint_round_trip(tmp_path, kind, norm):
    torch.manual_seed(0)
    arch = tiny(kind, norm)
    if kind == "unet":
        arch["widths"]["down"][2] = 3
        arch["gates"] = ["model.model.0"]
    else:
        arch["norm_affine"] = True
        arch["widths"]["blocks"] = [5, 1]
    model = build_generator(arch)
    _trained_bits(model)
    meta = {"task": "seg2face", "role": "teacher", "history": [1.5, {"a": None}], "ok": True}
    save_checkpoint(tmp_path / "m.pt", model, arch, meta)
    loaded, loaded_meta = load_checkpoint(tmp_path / "m.pt", expect_kind=kind, expect_task="seg2face")
    assert loaded_meta == meta and not loaded.training and arch_of(loaded) == arch
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["format"] == "alap/1" and raw["arch"] == arch and set(raw) == {"format", "arch", "state_dict", "meta"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # atomic write left no temp file


def test_same_weights_save_to_same_bytes(tmp_path):
    """DVC hashes checkpoints: a rerun that reproduces the weights must reproduce the file, or every downstream
    stage would rerun (torch names the zip records after the file it writes, a random temp name here)."""
    arch = tiny("unet", "batch")
    model = build_generator(arch)
    for name in ("a.pt", "b.pt"):
        save_checkpoint(tmp_path / name, model, arch, {"task": "seg2face"})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_save_checkpoint_refuses_wrong_arch_and_meta(tmp_path):
    model = build_generator(tiny("unet"))
    wrong = tiny("unet")
    wrong["widths"]["up"][1] = 3
    with pytest.raises(ValueError, match="arch does not describe this model"):
        save_checkpoint(tmp_path / "m.pt", model, wrong, {"task": "t"})
    with pytest.raises(ValueError, match=r"meta\['when'\]"):
        save_checkpoint(tmp_path / "m.pt", model, tiny("unet"), {"task": "t", "when": tmp_path})
    with pytest.raises(ValueError, match="expected a dict"):
        save_checkpoint(tmp_path / "m.pt", model, tiny("unet"), ["t"])
    assert not any(tmp_path.iterdir())


@pytest.fixture
def saved(tmp_path):
    model = build_generator(tiny("unet"))
    save_checkpoint(tmp_path / "good.pt", model, tiny("unet"), {"task": "t"})
    return tmp_path / "good.pt"


def _rewrite(src, dst, edit):
    obj = torch.load(src, weights_only=True)
    edit(obj)
    torch.save(obj, dst)
    return dst


def test_load_checkpoint_errors(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.pt: is a text file, not a PyTorch file; expected an alap checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module is refused, never executed
    with pytest.raises(ValueError, match=r"module\.pt: holds Python objects .*refused"):
        load_checkpoint(tmp_path / "module.pt")
    torch.save(build_generator(tiny("unet")).state_dict(), tmp_path / "bare.pth")
    with pytest.raises(ValueError, match=r"bare\.pth: not an alap checkpoint.*bare state dict"):
        load_checkpoint(tmp_path / "bare.pth")
    _rewrite(saved, tmp_path / "fmt.pt", lambda o: o.update(format="alap/0"))
    with pytest.raises(ValueError, match=r"fmt\.pt: not an alap checkpoint \(expected format 'alap/1', found 'alap/0'"):
        load_checkpoint(tmp_path / "fmt.pt")
    _rewrite(saved, tmp_path / "nometa.pt", lambda o: o.pop("meta"))
    with pytest.raises(ValueError, match=r"nometa\.pt: .*'meta' is missing"):
        load_checkpoint(tmp_path / "nometa.pt")
    _rewrite(saved, tmp_path / "badarch.pt", lambda o: o["arch"].update(norm="group"))
    with pytest.raises(ValueError, match=r"badarch\.pt: .*unknown norm"):
        load_checkpoint(tmp_path / "badarch.pt")
    with pytest.raises(ValueError, match=r"good\.pt: holds a 'unet' generator, expected 'resnet'"):
        load_checkpoint(saved, expect_kind="resnet")
    with pytest.raises(ValueError, match=r"good\.pt: was made for task 't', expected 'other'"):
        load_checkpoint(saved, expect_task="other")
    _rewrite(saved, tmp_path / "shape.pt", lambda o: o["arch"]["widths"]["down"].__setitem__(1, 5))
    with pytest.raises(ValueError, match=r"(?s)shape\.pt: weights do not fit the recorded arch.*size mismatch"):
        load_checkpoint(tmp_path / "shape.pt")
    _rewrite(saved, tmp_path / "keys.pt", lambda o: o["state_dict"].pop("model.model.0.weight"))
    with pytest.raises(ValueError, match=r"(?s)keys\.pt: weights do not fit.*Missing key"):
        load_checkpoint(tmp_path / "keys.pt")
