"""Importing a generator by structure (alap/models/reference.py): the imported model computes what the file's
network computes, whatever its module names; a file that does not fit fails at its first tensor that does not."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from reference_nets import RefResnet, ref_discriminator, reference
from torch import nn

from alap.cli import build_parser
from alap.models import (
    arch_of,
    build_generator,
    default_arch,
    import_generator,
    load_checkpoint,
    match_generator,
    read_generator_state,
)


def randomized(net: nn.Module) -> nn.Module:
    """Weights far from any init and random BatchNorm statistics: only a faithful import computes the same."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            nn.init.normal_(p, 0.0, 0.3)
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.3)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return net.eval()


def assert_same_function(model: nn.Module, source: nn.Module, size: int, channels: int = 3) -> None:
    assert not model.training
    x = torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x))


def save(obj, tmp_path, name="latest_net_G.pth"):
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def with_old_instance_stats(net: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as PyTorch < 0.4 saved it: running stats for every (non-tracking) InstanceNorm, in order."""
    state = {}
    for name, module in net.named_modules():
        for attr, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            state[f"{name}.{attr}"] = tensor.detach()
        if isinstance(module, nn.InstanceNorm2d):
            state[f"{name}.running_mean"] = torch.zeros(module.num_features)
            state[f"{name}.running_var"] = torch.ones(module.num_features)
    return state


class VariantBlock(nn.Module):
    """A residual block as other CycleGAN code bases write it: named layers, padding in forward."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3)
        self.norm1 = nn.InstanceNorm2d(dim, affine=True)
        self.conv2 = nn.Conv2d(dim, dim, 3)
        self.norm2 = nn.InstanceNorm2d(dim, affine=True)

    def forward(self, x):
        h = F.relu(self.norm1(self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect"))))
        return x + self.norm2(self.conv2(F.pad(h, (1, 1, 1, 1), mode="reflect")))


class VariantResnet(nn.Module):
    """The published CycleGAN ResNet generator (reflection pad 3 + 7x7 conv, two stride-2 3x3 convs, residual
    blocks, two stride-2 transposed convs, reflection pad 3 + 7x7 conv, tanh) with its own module names and
    affine InstanceNorm."""

    def __init__(self, input_nc: int, output_nc: int, ngf: int, n_blocks: int) -> None:
        super().__init__()

        def norm_relu(width):
            return [nn.InstanceNorm2d(width, affine=True), nn.ReLU()]

        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), *norm_relu(ngf))
        self.down = nn.Sequential(
            nn.Conv2d(ngf, 2 * ngf, 3, 2, 1),
            *norm_relu(2 * ngf),
            nn.Conv2d(2 * ngf, 4 * ngf, 3, 2, 1),
            *norm_relu(4 * ngf),
        )
        self.res_blocks = nn.ModuleList(VariantBlock(4 * ngf) for _ in range(n_blocks))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, 2, 1, output_padding=1),
            *norm_relu(2 * ngf),
            nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, output_padding=1),
            *norm_relu(ngf),
        )
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh())

    def forward(self, x):
        x = self.down(self.stem(x))
        for block in self.res_blocks:
            x = block(x)
        return self.head(self.up(x))


# --- imports that must compute exactly what the file's network computes


@pytest.mark.parametrize(
    "num_downs,norm,dropout", [(7, "batch", True), (7, "instance", False), (8, "batch", False), (8, "instance", True)]
)
def test_reference_unet(tmp_path, num_downs, norm, dropout):
    source = randomized(reference("unet", norm, dropout, ngf=4, num_downs=num_downs))
    pth = save(source.state_dict(), tmp_path)
    model, meta = import_generator(pth, tmp_path / "teacher.pt", task="t", dropout=dropout)
    assert arch_of(model) == default_arch("unet", 3, 3, ngf=4, norm=norm, dropout=dropout, num_downs=num_downs)
    assert_same_function(model, source, 2**num_downs)
    loaded, loaded_meta = load_checkpoint(tmp_path / "teacher.pt", expect_kind="unet", expect_task="t")
    assert loaded_meta == meta
    assert_same_function(loaded, source, 2**num_downs)
    assert meta["source_file"] == "latest_net_G.pth" and len(meta["source_sha256"]) == 64 and meta["source_key"] is None
    assert meta["reference_config"] == {
        "kind": "unet",
        "input_nc": 3,
        "output_nc": 3,
        "num_downs": num_downs,
        "norm": norm,
        "norm_affine": norm == "batch",
        "dropout": dropout,
        "ngf": 4,
    }


@pytest.mark.parametrize(
    "n_blocks,norm,dropout,size",
    [(6, "batch", False, 32), (6, "instance", True, 32), (9, "batch", True, 64), (9, "instance", False, 64)],
)
def test_reference_resnet_dropout_read_from_key_names(tmp_path, caplog, n_blocks, norm, dropout, size):
    source = randomized(reference("resnet", norm, dropout, ngf=4, n_blocks=n_blocks, input_nc=1, output_nc=2))
    model, _ = import_generator(save(source.state_dict(), tmp_path), task="t")
    assert not list(tmp_path.glob("*.pt"))  # out=None writes nothing
    assert arch_of(model) == default_arch("resnet", 1, 2, ngf=4, norm=norm, dropout=dropout, n_blocks=n_blocks)
    assert_same_function(model, source, size, channels=1)
    assert not caplog.records  # nothing assumed


def test_module_prefix_and_old_instance_norm_stats(tmp_path):
    source = randomized(reference("resnet", "instance", False, ngf=4, n_blocks=2))
    state = {f"module.{k}": v for k, v in with_old_instance_stats(source).items()}
    assert "module.model.2.running_mean" in state
    model, _ = import_generator(save(state, tmp_path), task="t")
    assert_same_function(model, source, 32)


def test_one_net_of_several_with_key(tmp_path):
    net_a = randomized(reference("unet", "instance", True, ngf=4, num_downs=6))
    net_b = randomized(reference("unet", "instance", True, ngf=2, num_downs=6))
    pth = save(
        {
            "netG_A": net_a.state_dict(),
            "netG_B": net_b.state_dict(),
            "netD_A": ref_discriminator(3, 4, 3, "batch").state_dict(),
            "epoch": 3,
        },
        tmp_path,
    )
    model, meta = import_generator(pth, task="t", key="netG_B", dropout=True)
    assert_same_function(model, net_b, 64)
    assert meta["source_key"] == "netG_B" and meta["reference_config"]["ngf"] == 2


def test_renamed_resnet_with_affine_instance_norm(tmp_path, caplog):
    source = randomized(VariantResnet(3, 2, ngf=4, n_blocks=3))
    with caplog.at_level(logging.WARNING, logger="alap.models.reference"):
        model, _ = import_generator(save(source.state_dict(), tmp_path), tmp_path / "t.pt", task="t")
    assert_same_function(model, source, 32)
    assert_same_function(load_checkpoint(tmp_path / "t.pt")[0], source, 32)
    assert arch_of(model) == {**default_arch("resnet", 3, 2, ngf=4, norm="instance", n_blocks=3), "norm_affine": True}
    assert [r.getMessage() for r in caplog.records] == [
        (
            "dropout has no weights and the key names do not show it: assumed dropout=False (the reference CycleGAN "
            "default); if it was trained otherwise, pass dropout (alap import-generator --dropout)"
        )
    ]


def test_unet_dropout_is_assumed_with_a_warning_unless_given(tmp_path, caplog):
    pth = save(reference("unet", "batch", True, ngf=2, num_downs=6).state_dict(), tmp_path)
    with caplog.at_level(logging.WARNING, logger="alap.models.reference"):
        model, _ = import_generator(pth, task="t")
        assert model.dropout is True
        assert "assumed dropout=True (the reference pix2pix default)" in caplog.text
        assert "--no-dropout" in caplog.text
        caplog.clear()
        model, _ = import_generator(pth, task="t", dropout=False)
    assert model.dropout is False and not caplog.records


def test_alap_arch_with_free_widths_round_trips():
    """Per-layer widths (a pruned alap net) are read back exactly; the renamed state is alap's own."""
    for arch in (
        {
            **default_arch("unet", 3, 2, ngf=4, norm="instance", num_downs=5),
            "norm_affine": True,
            "widths": {"down": [3, 7, 5, 11, 2], "up": [9, 1, 6, 4]},
        },
        {
            **default_arch("resnet", 3, 2, ngf=4, norm="batch", n_blocks=2, dropout=True),
            "widths": {"encoder": [5, 3], "trunk": 7, "blocks": [2, 9], "decoder": [6, 1]},
        },
    ):
        state = build_generator(arch).state_dict()
        found, renamed = match_generator(state, dropout=arch["dropout"])
        assert found == arch
        assert list(renamed) == list(state) and all(renamed[k] is state[k] for k in state)


# --- files that do not fit: one line naming the file, where matching stopped, nothing written


def _error(tmp_path, pth, **options) -> str:
    with pytest.raises(ValueError) as info:
        import_generator(pth, tmp_path / "out.pt", task="t", **options)
    assert not (tmp_path / "out.pt").exists()
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(pth))
    return message


def test_discriminator_stops_at_its_first_misfit(tmp_path):
    pth = save(ref_discriminator(3, 8, 3, "batch").state_dict(), tmp_path, "netD.pth")
    assert _error(tmp_path, pth) == (
        f"{pth}: matching stopped at model.0.bias (8,): alap expected Conv2d "
        "model.model.0 with weight (8, 3, 4, 4) there"
    )


def test_truncated_generator_stops_where_it_no_longer_fits(tmp_path):
    state = reference("resnet", "instance", False, ngf=4, n_blocks=3).state_dict()
    del state["model.20.weight"], state["model.20.bias"]  # the output conv
    assert _error(tmp_path, save(state, tmp_path)).endswith(
        ": matching stopped at model.13.weight (16, 8, 3, 3): alap expected Conv2d model.19 with "
        "weight (16, 16, 7, 7), bias (16,) there"
    )
    state = reference("unet", "batch", False, ngf=4, num_downs=5).state_dict()
    state["model.model.3.weight"] = state["model.model.3.weight"][:, :2]  # fewer output channels, bias kept
    assert _error(tmp_path, save(state, tmp_path)).endswith(
        ": matching stopped at model.model.3.bias (3,): alap expected ConvTranspose2d model.model.3 with "
        "weight (8, 2, 4, 4), bias (2,) there"
    )
    state = reference("resnet", "instance", False, ngf=4, n_blocks=2).state_dict()
    del state["model.1.bias"]
    assert _error(tmp_path, save(state, tmp_path)).endswith(
        ": matching stopped at model.1 (weight (4, 3, 7, 7)): alap expected Conv2d model.1 with weight (4, 3, 7, 7), "
        "bias (4,) there"
    )
    state["model.1.bias"], state["extra.weight"] = torch.zeros(4), torch.zeros(3, 3, 4, 4)
    assert _error(tmp_path, save(state, tmp_path)).endswith(
        ": matching stopped at extra.weight (3, 3, 4, 4): alap's generator ends before it"
    )
    state = {"model.1.weight": torch.zeros(4, 3, 5, 5)}
    assert _error(tmp_path, save(state, tmp_path)).endswith(
        ": matching stopped at model.1.weight (4, 3, 5, 5): alap expected the first conv of a ResNet (7x7) or a "
        "U-Net (4x4) generator"
    )


def test_several_nets_without_key_are_listed(tmp_path):
    net = reference("unet", "batch", False, ngf=2, num_downs=5).state_dict()
    pth = save(
        {"netG_A": net, "netG_B": net, "netD_A": ref_discriminator(3, 4, 3, "batch").state_dict(), "epoch": 3}, tmp_path
    )
    assert _error(tmp_path, pth) == (
        f"{pth}: holds several networks: netG_A, netG_B, netD_A (and other entries: epoch); choose one with key"
    )
    assert "has no entry 'netG'; it holds several networks: netG_A" in _error(tmp_path, pth, key="netG")
    assert _error(tmp_path, pth, key="epoch") == (
        f"{pth} ['epoch']: holds an object of type int; expected a generator state dict (names -> tensors)"
    )


@pytest.mark.parametrize(
    "option,message",
    [
        ({"kind": "unet"}, "kind='unet' was given, but the file has kind='resnet' (first conv model.1.weight is 7x7)"),
        ({"norm": "instance"}, "norm='instance' was given, but the file has norm='batch' (norm running statistics)"),
        ({"norm_affine": False}, "norm_affine=False was given, but the file has norm_affine=True (norm weights)"),
        (
            {"dropout": False},
            ("dropout=False was given, but the file has dropout=True (key names of the reference layout with it)"),
        ),
    ],
)
def test_contradicting_option_names_both(tmp_path, option, message):
    pth = save(RefResnet(3, 3, 4, "batch", True, 2).state_dict(), tmp_path)
    assert _error(tmp_path, pth, **option) == f"{pth}: {message}"


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.pth: no such file"):
        read_generator_state(tmp_path / "missing.pth")
    with pytest.raises(IsADirectoryError, match=r"is a directory; expected a generator state dict"):
        read_generator_state(tmp_path)
    (tmp_path / "text.pth").write_text("hello")
    assert "text.pth: is a text file, not a PyTorch file" in _error(tmp_path, tmp_path / "text.pth")
    pth = save(nn.Linear(2, 2), tmp_path)  # a pickled module is refused, never executed
    assert "holds Python objects (torch.nn.modules.linear.Linear), not only tensors" in _error(tmp_path, pth)
    assert _error(tmp_path, save({}, tmp_path)).endswith(
        ": holds an empty dict; expected a generator state dict (names -> tensors)"
    )
    assert _error(tmp_path, save([torch.zeros(1)], tmp_path)).endswith(
        ": holds an object of type list; expected a generator state dict (names -> tensors)"
    )
    assert _error(tmp_path, save({"fc.weight": torch.zeros(2, 2)}, tmp_path)).endswith(
        ": holds no conv weight (4-D tensor); expected a generator state dict"
    )


# --- the CLI verb


def test_cli_import_generator(tmp_path):
    source = randomized(reference("resnet", "instance", True, ngf=4, n_blocks=2))
    pth = save({"netG_A": source.state_dict(), "epoch": 1}, tmp_path)
    parser = build_parser()
    args = parser.parse_args(
        [
            "import-generator",
            str(pth),
            str(tmp_path / "t.pt"),
            "--task",
            "t",
            "--key",
            "netG_A",
            "--kind",
            "resnet",
            "--no-affine",
            "--dropout",
        ]
    )
    args.fn(args)
    model, meta = load_checkpoint(tmp_path / "t.pt", expect_task="t")
    assert_same_function(model, source, 32)
    assert meta["source_key"] == "netG_A"
    args = parser.parse_args(
        ["import-generator", str(pth), str(tmp_path / "u.pt"), "--task", "t", "--key", "netG_A", "--norm", "batch"]
    )
    with pytest.raises(ValueError, match="norm='batch' was given"):
        args.fn(args)
    assert not (tmp_path / "u.pt").exists()
    assert parser.parse_args(["import-generator", "a", "b", "--task", "t"]).dropout is None
