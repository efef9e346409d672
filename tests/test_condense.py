"""Condense: scale factors everywhere without changing the function, penalty scope, and a tiny real run."""

from __future__ import annotations

import csv

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from alap.compress.condense import condense, group_l1_penalty, prepare_for_condense, ramp, sparsity_penalty
from alap.compress.params import CondenseParams
from alap.compress.prune import output_difference
from alap.compress.scale_factors import hidden_layers, trace_layers
from alap.config import TrainParams
from alap.data.batches import BatchStream
from alap.models import NLayerDiscriminator, build_generator, default_arch, load_checkpoint, save_checkpoint
from alap.objectives import make_objective

SIZE = 32


def _inputs(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _paired_batches(n: int = 16, batch: int = 4) -> BatchStream:
    """A fixed paired toy task: B is A mirrored and negated (a U-Net can learn it; every pixel matters)."""
    return BatchStream([{"A": a, "B": -a.flip(-1)} for a in _inputs(n, seed=3)], batch, 0, torch.device("cpu"))


def test_prepare_keeps_the_function_and_records_factors(tmp_path) -> None:
    torch.manual_seed(0)
    arch = default_arch("unet", 3, 3, ngf=8, norm="batch", num_downs=5)
    model = build_generator(arch).eval()
    prepared, new_arch = prepare_for_condense(model, arch, _inputs())
    assert output_difference(model, prepared, _inputs())["max_abs"] == 0.0
    layers = trace_layers(prepared, _inputs(1))
    assert all(layer.has_scale() for layer in hidden_layers(layers))
    assert new_arch["gates"] == ["model.model.1.model.3.model.3.model.3.model.1"]  # innermost down-conv only
    assert layers[0].name not in new_arch["gates"]  # the input layer is never condensed
    save_checkpoint(tmp_path / "c.pt", prepared, new_arch, {"task": "t"})
    loaded, _ = load_checkpoint(tmp_path / "c.pt")
    assert output_difference(prepared, loaded, _inputs())["max_abs"] == 0.0

    reference = default_arch("resnet", 3, 3, ngf=8, norm="instance", n_blocks=2)
    assert reference["norm_affine"] is False
    model = build_generator(reference).eval()
    prepared, new_arch = prepare_for_condense(model, reference, _inputs())
    assert new_arch["norm_affine"] is True and new_arch["gates"] == []
    assert output_difference(model, prepared, _inputs())["max_abs"] == 0.0


def test_penalties_skip_input_and_output_layers() -> None:
    arch = default_arch("resnet", 3, 3, ngf=8, norm="instance", n_blocks=2)
    model, _ = prepare_for_condense(build_generator(arch), arch, _inputs())
    layers = trace_layers(model, _inputs(1))
    (sparsity_penalty(layers) + group_l1_penalty(layers)).backward()
    stem, output = layers[0], layers[-1]
    assert stem.norm.weight.grad is None and stem.conv.weight.grad is None and output.conv.weight.grad is None
    assert all(layer.norm.weight.grad is not None for layer in hidden_layers(layers))
    assert float(sparsity_penalty(layers).detach()) == sum(layer.conv.out_channels for layer in hidden_layers(layers))


def test_ramp_and_params() -> None:
    assert ramp(0, 10) == pytest.approx(0.1) and ramp(9, 10) == 1.0 and ramp(50, 10) == 1.0 and ramp(0, 0) == 1.0
    with pytest.raises(ValidationError, match="warmup_steps"):
        CondenseParams(steps=10, warmup_steps=20)
    with pytest.raises(ValidationError):
        CondenseParams(sparsity_weight=-1.0)
    with pytest.raises(ValidationError):
        CondenseParams(unknown=1)


def test_tiny_condense_run_drives_factors_to_zero(tmp_path) -> None:
    torch.manual_seed(0)
    arch = default_arch("unet", 3, 3, ngf=8, norm="batch", num_downs=5)
    teacher = build_generator(arch)
    disc = NLayerDiscriminator(6, ndf=8, n_layers=2, norm="batch")
    train = TrainParams(lambda_l1=100.0)
    params = CondenseParams(steps=120, lr=1e-2, sparsity_weight=0.5, warmup_steps=20, checkpoint_every=60)
    threshold = 0.05
    result = condense(
        teacher,
        arch,
        lambda g: make_objective("pix2pix", g, {"D": disc}, train),
        _paired_batches(),
        params,
        threshold,
        _inputs(),
        tmp_path / "state.pt",
        tmp_path / "scales.csv",
        tmp_path / "scales.png",
    )
    history = result.history
    assert len(history) == 120 and "penalty" in history[0]
    assert history[-1]["scale_l1"] < 0.3 * history[0]["scale_l1"], (history[0]["scale_l1"], history[-1]["scale_l1"])
    below = sum(row["below_threshold"] for row in result.table)
    total = sum(row["width"] for row in result.table)
    assert below / total > 0.3, (below, total)
    assert result.arch["gates"] and result.arch["norm_affine"]
    rows = list(csv.DictReader((tmp_path / "scales.csv").open()))
    assert len(rows) == len(result.table) and int(rows[0]["width"]) > 0
    assert (tmp_path / "scales.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not result.model.training
    rebuilt = build_generator(result.arch)
    rebuilt.load_state_dict(result.model.state_dict(), strict=True)

    again = condense(
        teacher,
        arch,
        lambda g: make_objective("pix2pix", g, {"D": disc}, train),
        _paired_batches(),
        params,
        threshold,
        _inputs(),
        tmp_path / "state.pt",
        tmp_path / "scales.csv",
        tmp_path / "scales.png",
    )
    assert len(again.history) == 120  # resumed from the final state: no step was repeated
    assert output_difference(result.model, again.model, _inputs())["max_abs"] == 0.0


def test_objective_must_wrap_the_prepared_generator(tmp_path) -> None:
    arch = default_arch("unet", 3, 3, ngf=8, norm="batch", num_downs=5)
    other = build_generator(arch)
    disc: nn.Module = NLayerDiscriminator(6, ndf=8, n_layers=2, norm="batch")
    with pytest.raises(ValueError, match="build_objective"):
        condense(
            build_generator(arch),
            arch,
            lambda g: make_objective("pix2pix", other, {"D": disc}, TrainParams()),
            _paired_batches(),
            CondenseParams(steps=2, warmup_steps=1),
            0.01,
            _inputs(),
            tmp_path / "s.pt",
            tmp_path / "t.csv",
            tmp_path / "p.png",
        )
