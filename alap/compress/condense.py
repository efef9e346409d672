"""Condense: continue training the teacher with its own task loss plus a penalty that drives whole channels to 0.

ALAP-AE's first stage (docs/architecture.md). The penalty is Network Slimming's L1 on per-channel scale factors,
so that after condensing a channel is either clearly used or has a factor near zero and can be removed with little
change to the output. Every prunable conv needs a scale factor first (:func:`prepare_for_condense`):
- InstanceNorm without affine parameters (the reference CycleGAN/pix2pix setting) is switched to affine with weight
  1 and bias 0 -- the same function, now with a trainable gamma;
- a conv with no norm after it (the U-Net's innermost down-conv) gets a channel gate initialised to 1.
The input and output layers are never penalised: their widths are fixed by the image channels on one side and
they are never pruned.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alap.compress.params import CondenseParams
from alap.compress.plots import plot_scales, scale_table, write_scale_table
from alap.compress.scale_factors import ChannelLayer, hidden_layers, trace_layers
from alap.data.batches import BatchStream
from alap.dist import current_world
from alap.loop import KeepBest, fit
from alap.models.arch import arch_of, build_generator
from alap.models.gates import add_gates
from alap.objectives import Objective
from alap.selection import ValFid, selection_record

log = logging.getLogger(__name__)


def prepare_for_condense(
    model: nn.Module, arch: dict[str, Any], example_input: torch.Tensor
) -> tuple[nn.Module, dict[str, Any]]:
    """Return a copy of ``model`` (same function) in which every hidden conv has a channel scale factor.

    The returned arch records ``norm_affine`` and ``gates``, so the condensed checkpoint rebuilds exactly.
    """
    new_arch = copy.deepcopy(arch)
    if arch["norm"] == "instance":
        new_arch["norm_affine"] = True
    new = build_generator(new_arch).to(example_input.device)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"model does not match its arch: unexpected state-dict keys {unexpected[:5]}")
    new_norm_keys = {
        f"{name}.{p}"
        for name, m in new.named_modules()
        if isinstance(m, nn.InstanceNorm2d) and m.affine
        for p in ("weight", "bias")
    }
    absent = sorted(set(missing) - new_norm_keys)
    if absent:
        raise ValueError(f"model does not match its arch: missing state-dict keys {absent[:5]}")
    with torch.no_grad():
        for name, module in new.named_modules():
            if f"{name}.weight" in missing:  # newly affine InstanceNorm: identity scale and shift
                module.weight.fill_(1.0)
                module.bias.zero_()
    layers = trace_layers(new, example_input[:1])
    add_gates(new, [layer.name for layer in hidden_layers(layers) if not layer.has_scale()])
    new.train(model.training)
    new_arch = arch_of(new)
    return new, new_arch


def scale_parameters(layers: list[ChannelLayer]) -> list[torch.Tensor]:
    """The penalised parameters: the hidden convs' norm gammas and gates."""
    return [p for layer in hidden_layers(layers) for p in (layer.norm_weight, layer.gate) if p is not None]


def _own_group_for_scales(optimizer: torch.optim.Optimizer, layers: list[ChannelLayer], lr: float) -> None:
    """Give the penalised scale factors their own, larger learning rate (before any step, so no state moves)."""
    scales = scale_parameters(layers)
    ids = {id(p) for p in scales}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    optimizer.add_param_group({"params": scales, "lr": lr})


def sparsity_penalty(layers: list[ChannelLayer]) -> torch.Tensor:
    """Sum of |scale-factor parameters| of the hidden convs (norm gammas and gates alike)."""
    return torch.stack([p.abs().sum() for p in scale_parameters(layers)]).sum()


def group_l1_penalty(layers: list[ChannelLayer]) -> torch.Tensor:
    """Group lasso: sum over hidden convs' output channels of the L2 norm of that channel's filter."""
    terms = []
    for layer in hidden_layers(layers):
        weight = layer.conv.weight
        per_out = weight.transpose(0, 1) if isinstance(layer.conv, nn.ConvTranspose2d) else weight
        terms.append(per_out.flatten(1).norm(dim=1).sum())
    return torch.stack(terms).sum()


def ramp(step: int, warmup_steps: int) -> float:
    """Linear warm-up factor of the penalty weight: (step+1)/warmup up to 1."""
    return 1.0 if warmup_steps == 0 else min(1.0, (step + 1) / warmup_steps)


@dataclass
class CondenseResult:
    model: nn.Module
    arch: dict[str, Any]
    history: list[dict[str, float]]
    table: list[dict[str, Any]]
    wall_s: float
    selected: dict[str, Any] | None  # the kept step and the validation FIDs, when a validator chose it


def condense(
    model: nn.Module,
    arch: dict[str, Any],
    build_objective: Callable[[nn.Module], Objective],
    batches: BatchStream,
    params: CondenseParams,
    threshold: float,
    example_input: torch.Tensor,
    state_path: str | os.PathLike,
    table_path: str | os.PathLike,
    plot_path: str | os.PathLike,
    validator: ValFid | None = None,
) -> CondenseResult:
    """Condense a trained generator; resumable from ``state_path``.

    ``build_objective(generator)`` builds the task objective (and its optimisers) around the *prepared* generator,
    e.g. ``lambda g: make_objective(kind, g, aux, train_params)``; its optimisers run at ``params.lr``.
    ``batches`` is the resumable stream of training batches on the model's device. ``threshold`` is the prune
    threshold the table and plot count channels against. Returns the condensed model (eval mode) with its arch, the
    loss history, the per-layer table and the wall time (of every run, when resumed); writes the table (CSV) and
    plot (PNG), from rank 0 alone in a multi-process run.

    With ``validator`` (unpaired tasks: ``validator(generator)`` returns minus the validation FID of the prepared
    generator, alap/selection.py), the result is the checkpoint that validates best among those from the end of
    the warm-up on, validated every ``params.validate_every`` steps, not the last step.
    """
    prepared, new_arch = prepare_for_condense(model, arch, example_input)
    layers = trace_layers(prepared, example_input[:1])
    objective = build_objective(prepared)
    if objective.generator is not prepared:
        raise ValueError("build_objective must build the objective around the generator it is given")
    for optimizer in objective.optimizers().values():
        for group in optimizer.param_groups:
            group["lr"] = params.lr
    _own_group_for_scales(objective.optimizers()["opt_G"], layers, params.scale_lr)
    objective.train()

    def extra_loss(_: nn.Module, step: int) -> torch.Tensor:
        weight = ramp(step, params.warmup_steps)
        loss = params.sparsity_weight * weight * sparsity_penalty(layers)
        if params.group_l1_weight > 0:
            loss = loss + params.group_l1_weight * weight * group_l1_penalty(layers)
        return loss

    def step(batch: dict[str, Any], i: int) -> dict[str, float]:
        losses = objective.step(batch, extra_generator_loss=lambda g: extra_loss(g, i))
        with torch.no_grad():
            losses["scale_l1"] = float(sparsity_penalty(layers))
        return losses

    keep_best = None if validator is None else KeepBest(prepared, validator(prepared), from_step=params.warmup_steps)
    with objective.distributed():
        fitted = fit(
            step,
            batches,
            objective.state(),
            steps=params.steps,
            checkpoint_every=params.checkpoint_every,
            state_path=Path(state_path),
            desc="condense",
            keep_best=keep_best,
            validate_every=params.validate_every,
        )
    prepared.eval()
    table = scale_table(layers, threshold)
    if current_world().is_main:  # every rank holds the same model; one writes
        write_scale_table(table, table_path)
        plot_scales(layers, threshold, plot_path)
    below = sum(r["below_threshold"] for r in table)
    total = sum(r["width"] for r in table)
    log.info("condense: %d of %d prunable channels have a scale factor below %g", below, total, threshold)
    selected = None if keep_best is None else selection_record(keep_best)
    return CondenseResult(prepared, new_arch, fitted.history, table, fitted.wall_s, selected)
