"""Prune: physically remove the condensed channels, so the student is a smaller *dense* network.

Steps (all on a private copy of the condensed network):
1. score every prunable output channel by its scale factor (alap.compress.scale_factors); channels that
   Torch-Pruning's DependencyGraph couples (the ResNet trunk: the residual adds force one shared width) form one
   *group* whose score is the mean of the coupled layers' factors (Torch-Pruning's default group reduction), so
   one global ranking compares a coupled channel with a single layer's on the same scale. The sum, used before,
   ranked the 7-layer trunk of a 6-block ResNet ~7x above every other layer (mean group score 6.3 against
   0.8-1.0, reports/horse2zebra.md): the trunk kept 45-64 of 64 channels while the encoder and decoder fell to
   their floor;
2. choose how many channels each group loses: below a global threshold, or the lowest-scored fraction of all
   channels, or the fewest lowest-scored channels that remove a fraction of the MACs (binary search on the sorted
   scores: MACs only fall as more channels go), or the fewest whose measured p50 meets a latency budget (the same
   search over timed candidate architectures: alap.compress.latency_plan); keep >= ``min_width`` and
   >= ``min_width_fraction`` of the layer's width (and optionally round kept widths up to a multiple of
   ``round_to``); the input and output layers are never pruned;
3. fold gates into their convs, fold the constant output of removed channels into the next layer (below), then
   let Torch-Pruning cut every group, which keeps skip concatenations, residual adds and transposed convs
   consistent;
4. rebuild the student from its read-back widths (``build_generator(arch_of(student))``) and measure its output
   against the condensed network.

Bias folding. A removed channel whose factor is ~0 still outputs a constant: ``act(beta)`` after its norm
(``beta`` passed through the activation; for a residual trunk, the sum of what each coupled layer adds). Every
consumer conv of the channel receives that constant on one input slice, concatenations included. We measure the
constant a consumer actually sees as the mean of that input channel over ``probe_samples`` inputs (which also
covers channels whose factor is small but not zero: the mean is the best constant stand-in) and add
``sum_k W[:, c, k] * mean_c`` to the consumer's bias. Where this is exact and where it is not:
- exact (up to float32 rounding) when the consumer pads by reflection/replication or not at all (ResNet block
  convs, 7x7 convs): a constant input maps to a constant output;
- exact in the interior only for zero-padded convs (stride-2 convs, U-Net down-convs): border pixels see padding
  zeros where the constant would have been;
- exact only on average for transposed convs: a stride-s transposed conv turns a constant into an s x s periodic
  pattern; we fold its mean (the weight sum divided by s*s);
- a consumer without a bias followed by BatchNorm absorbs the constant into the BatchNorm's running mean (exact in
  eval mode; in train mode batch statistics remove it anyway); with neither bias nor norm (the U-Net's innermost
  down-conv under BatchNorm) the constant cannot be folded and the layer is listed under ``unfolded``;
- before InstanceNorm folding changes nothing: the per-sample mean subtraction removes a constant anyway, and the
  border part of a zero-padded consumer also shifts the per-sample statistics, folded or not.
Measured on tiny random generators (tests/test_prune.py): exact cases reproduce the condensed output to < 1e-5;
a BatchNorm ResNet's zero-padded down-conv consumer gains ~10 dB PSNR from folding, a BatchNorm U-Net ~1.5 dB
(its transposed up-convs dominate the residual error).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from alap.compress.latency_plan import LatencyOf, auto_round_to, plan_for_latency
from alap.compress.params import PruneParams
from alap.compress.scale_factors import ChannelLayer, conv_macs, trace_layers
from alap.metrics.cost import count_gmacs, count_params_m
from alap.models.arch import arch_of, build_generator
from alap.models.gates import fold_gates
from alap.profile.candidates import CandidateCost, CandidateTimer

log = logging.getLogger(__name__)


@dataclass
class ChannelGroup:
    """Output channels removed together. ``out_convs`` lose the group's channels as outputs, ``in_convs`` as
    inputs; ``*_local[conv][r]`` is the conv's own channel index for the group's root channel ``r``."""

    root: str
    score: torch.Tensor
    out_local: dict[str, list[int]]
    in_local: dict[str, list[int]]

    @property
    def width(self) -> int:
        return int(self.score.numel())

    @property
    def order(self) -> list[int]:
        """Root channel indices from lowest to highest score (ties by index, so plans are deterministic)."""
        return sorted(range(self.width), key=lambda r: (float(self.score[r]), r))


@dataclass
class PruneResult:
    """The rebuilt student, its arch, a JSON-able report, and which channels of each conv of the condensed
    network the student kept (``kept_out``/``kept_in`` by conv name) -- what equivalence checks need."""

    student: nn.Module
    arch: dict[str, Any]
    report: dict[str, Any]
    kept_out: dict[str, list[int]] = field(default_factory=dict)
    kept_in: dict[str, list[int]] = field(default_factory=dict)


def prune(
    model: nn.Module,
    arch: dict[str, Any],
    params: PruneParams,
    example_input: torch.Tensor,
    timer: CandidateCost | None = None,
) -> PruneResult:
    """Prune a condensed generator (``model`` with its ``arch`` dict) as ``params`` says.

    ``example_input`` is a batch of real (or representative) inputs on the model's device, ``[N, C, H, W]``: it is
    used to trace the graph, to measure the constants of removed channels (first ``probe_samples``) and to compare
    the student's output with ``model``'s. ``model`` itself is not modified. ``timer`` gives candidate
    architectures their p50 for target 'latency' (default: a :class:`CandidateTimer` on ``params.latency`` at the
    example input's shape, with the on-disk cache).
    """
    params = PruneParams.model_validate(params.model_dump())  # re-check ranges after model_copy(update=...)
    params = params.model_copy(update={"round_to": auto_round_to(params, arch["kind"])})
    _check_inputs(model, arch, example_input)
    probe = example_input[: params.probe_samples]
    work = copy.deepcopy(model).eval()
    for (
        module
    ) in work.modules():  # Torch-Pruning cannot trace in-place activations (docs/architecture.md); same function
        if hasattr(module, "inplace"):
            module.inplace = False

    layers = trace_layers(work, probe[:1])
    by_name = {layer.name: layer for layer in layers}
    scores = {layer.name: layer.scale() for layer in layers if layer.role == "hidden" and layer.has_scale()}
    means = _input_channel_means(work, probe) if params.fold_bias else {}
    fold_gates(work)
    with torch.enable_grad():  # Torch-Pruning traces autograd; a caller's no_grad must not break it
        graph = tp.DependencyGraph().build_dependency(work, example_inputs=probe[:1], verbose=False)
    groups = _channel_groups(work, graph, layers, scores)

    timing = None
    if params.target == "latency":
        timer = timer or CandidateTimer(params.latency, tuple(example_input.shape[1:]))
        timing = LatencyOf(timer, lambda counts: candidate_arch(work, groups, counts))
    removed_counts, latency_report = _plan(groups, layers, params, timing)
    removed = {g.root: sorted(g.order[:n]) for g, n in zip(groups, removed_counts) if n}
    kept_out, kept_in = _kept_indices(layers, groups, removed)
    if not removed:
        log.warning(
            "prune: no channel removed (target %s, sparsity %s, threshold %s): the student equals the "
            "condensed network",
            params.target,
            params.sparsity,
            params.threshold,
        )
    fold_report = _fold_removed_constants(work, groups, removed, means, by_name) if params.fold_bias else {}
    for group in groups:
        if group.root in removed:
            _prune_group(work, graph, group, removed[group.root])

    student_arch = arch_of(work)
    student = build_generator(student_arch).to(example_input.device)
    student.load_state_dict(work.state_dict(), strict=True)
    student.eval()
    report = _report(model, student, groups, removed_counts, layers, kept_out, params, example_input, fold_report)
    if latency_report is not None:
        report["latency"] = latency_report
    return PruneResult(student, student_arch, report, kept_out, kept_in)


def _check_inputs(model: nn.Module, arch: dict[str, Any], example_input: torch.Tensor) -> None:
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        got = getattr(example_input, "shape", example_input)
        raise ValueError(f"example_input must be a [N, C, H, W] tensor, got {got!r}")
    if example_input.shape[1] != arch.get("input_nc"):
        raise ValueError(
            f"example_input has {example_input.shape[1]} channels but the model's arch expects "
            f"input_nc={arch.get('input_nc')}"
        )
    actual = arch_of(model)
    mismatched = sorted(k for k in set(actual) | set(arch) if actual.get(k) != arch.get(k))
    if mismatched:
        raise ValueError(
            f"the model does not match its arch dict (differs in {mismatched}); was the checkpoint "
            "of another architecture?"
        )


@torch.no_grad()
def _input_channel_means(model: nn.Module, probe: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean of every input channel of every conv over the probe batch and all positions (eval mode)."""
    names = {m: n for n, m in model.named_modules()}
    means: dict[str, torch.Tensor] = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        means[names[module]] = inputs[0].double().mean(dim=(0, 2, 3))

    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    hooks = [m.register_forward_pre_hook(record) for m in convs]
    try:
        model(probe)
    finally:
        for hook in hooks:
            hook.remove()
    return means


def _channel_groups(
    model: nn.Module, graph: tp.DependencyGraph, layers: list[ChannelLayer], scores: dict[str, torch.Tensor]
) -> list[ChannelGroup]:
    """Torch-Pruning's coupled groups rooted at hidden convs, each scored by its layers' mean factor."""
    names = {m: n for n, m in model.named_modules()}
    fixed = [model.get_submodule(layer.name) for layer in layers if layer.role != "hidden"]
    groups = []
    for tp_group in graph.get_all_groups(ignored_layers=fixed, root_module_types=(nn.Conv2d, nn.ConvTranspose2d)):
        out_local: dict[str, list[int]] = {}
        in_local: dict[str, list[int]] = {}
        for item in tp_group:
            target = item.dep.target.module
            if not isinstance(target, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            local = [0] * len(item.root_idxs)
            for idx, root in zip(item.idxs, item.root_idxs):
                local[root] = idx
            if graph.is_out_channel_pruning_fn(item.dep.handler):
                out_local[names[target]] = local
            else:
                in_local[names[target]] = local
        root = names[tp_group[0].dep.target.module]
        missing = [n for n in out_local if n not in scores]
        if missing:
            raise ValueError(
                f"conv(s) {missing} have no channel scale factor (no affine norm, no gate): prune needs "
                "a condensed network, as `alap condense` writes"
            )
        factors = torch.stack([scores[name].double().cpu()[local] for name, local in out_local.items()])
        groups.append(ChannelGroup(root, factors.mean(dim=0), out_local, in_local))
    return groups


def _plan(
    groups: list[ChannelGroup],
    layers: list[ChannelLayer],
    params: PruneParams,
    timing: LatencyOf | None = None,
) -> tuple[list[int], dict[str, Any] | None]:
    """How many (lowest-scored) channels each group loses, and the latency search's record (target 'latency')."""
    if not groups:
        raise ValueError("the model has no prunable channel group (only input/output layers?)")
    floor = [min_kept(g.width, params) for g in groups]
    if params.target == "threshold":
        counts = []
        for g, keep_min in zip(groups, floor):
            below = int((g.score < params.threshold).sum())
            if below == g.width:
                raise ValueError(
                    f"threshold {params.threshold} removes every channel of layer {g.root!r} (its largest scale "
                    f"factor is {float(g.score.max()):.3g}); lower prune.threshold or use target 'channels'/'macs'"
                )
            counts.append(_rounded(g.width, min(below, g.width - keep_min), params.round_to))
        return counts, None
    if params.target != "latency" and params.sparsity is None:
        raise ValueError(f"prune: target {params.target!r} needs a sparsity (the fraction to remove)")

    ranked = sorted(((float(g.score[r]), gi, r) for gi, g in enumerate(groups) for r in range(g.width)))
    capacity = [g.width - f for g, f in zip(groups, floor)]
    removable = [(s, gi) for s, gi, _ in ranked]

    def counts_for(k: int) -> list[int]:
        """Remove the ``k`` lowest-scored channels whose group still has room, then round kept widths."""
        counts = [0] * len(groups)
        taken = 0
        for _, gi in removable:
            if taken == k:
                break
            if counts[gi] < capacity[gi]:
                counts[gi] += 1
                taken += 1
        return [_rounded(g.width, c, params.round_to) for g, c in zip(groups, counts)]

    max_k = sum(capacity)
    if params.target == "latency":
        if timing is None:
            raise ValueError("prune: target 'latency' needs a way to time candidates (timing)")
        return plan_for_latency(counts_for, max_k, timing, params.latency, params.min_width)
    if params.target == "channels":
        total = sum(g.width for g in groups)
        wanted = round(params.sparsity * total)
        if wanted > max_k:
            raise ValueError(
                f"sparsity {params.sparsity} asks to remove {wanted} of {total} channels, but keeping "
                f"{_floor_text(params)} per layer allows at most {max_k}"
            )
        return counts_for(wanted), None

    full = _macs(groups, layers, [0] * len(groups))
    goal = (1.0 - params.sparsity) * full
    if _macs(groups, layers, counts_for(max_k)) > goal:
        best = 1.0 - _macs(groups, layers, counts_for(max_k)) / full
        raise ValueError(
            f"sparsity {params.sparsity} of the MACs is unreachable: keeping {_floor_text(params)} per layer "
            f"(and the input/output layers) removes at most {best:.3f}"
        )
    lo, hi = 0, max_k  # smallest k whose MACs meet the goal; MACs are non-increasing in k
    while lo < hi:
        mid = (lo + hi) // 2
        if _macs(groups, layers, counts_for(mid)) <= goal:
            hi = mid
        else:
            lo = mid + 1
    return counts_for(lo), None


def candidate_arch(model: nn.Module, groups: list[ChannelGroup], counts: list[int]) -> dict[str, Any]:
    """The arch ``model`` (gates folded) would have once group ``i`` lost ``counts[i]`` channels."""
    widths: dict[str, int] = {}
    for group, n in zip(groups, counts):
        for name in group.out_local:
            conv = model.get_submodule(name)
            widths[name] = widths.get(name, conv.out_channels) - n
    return arch_of(model, widths)


def min_kept(width: int, params: PruneParams) -> int:
    """The fewest channels a layer of ``width`` keeps: ``min_width``, or ``min_width_fraction`` of its width
    (rounded up) where that is more; never more than the layer has."""
    return min(width, max(params.min_width, math.ceil(params.min_width_fraction * width - 1e-9)))


def _floor_text(params: PruneParams) -> str:
    fraction = f" and min_width_fraction={params.min_width_fraction:g}" if params.min_width_fraction else ""
    return f"min_width={params.min_width}{fraction}"


def _rounded(width: int, removed: int, round_to: int) -> int:
    """Channels removed once the kept width is rounded up to a multiple of ``round_to`` (never above ``width``)."""
    if round_to == 1 or removed == 0:
        return removed
    kept = width - removed
    kept = min(width, max(round_to, math.ceil(kept / round_to) * round_to))
    return width - kept


def _macs(groups: list[ChannelGroup], layers: list[ChannelLayer], counts: list[int]) -> int:
    """Conv MACs of the network when group ``i`` loses ``counts[i]`` channels."""
    out_loss = {layer.name: 0 for layer in layers}
    in_loss = dict(out_loss)
    for group, n in zip(groups, counts):
        for name in group.out_local:
            out_loss[name] += n
        for name in group.in_local:
            in_loss[name] += n
    total = 0
    for layer in layers:
        conv = layer.conv
        total += conv_macs(
            conv,
            conv.in_channels - in_loss[layer.name],
            conv.out_channels - out_loss[layer.name],
            layer.out_hw,
        )
    return total


def _kept_indices(
    layers: list[ChannelLayer], groups: list[ChannelGroup], removed: dict[str, list[int]]
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    gone_out: dict[str, set[int]] = {layer.name: set() for layer in layers}
    gone_in: dict[str, set[int]] = {layer.name: set() for layer in layers}
    for group in groups:
        for r in removed.get(group.root, []):
            for name, local in group.out_local.items():
                gone_out[name].add(local[r])
            for name, local in group.in_local.items():
                gone_in[name].add(local[r])
    kept_out = {ly.name: [c for c in range(ly.conv.out_channels) if c not in gone_out[ly.name]] for ly in layers}
    kept_in = {ly.name: [c for c in range(ly.conv.in_channels) if c not in gone_in[ly.name]] for ly in layers}
    return kept_out, kept_in


@torch.no_grad()
def _fold_removed_constants(
    model: nn.Module,
    groups: list[ChannelGroup],
    removed: dict[str, list[int]],
    means: dict[str, torch.Tensor],
    layers: dict[str, ChannelLayer],
) -> dict[str, list[str]]:
    """Add each removed input channel's mean contribution to its consumer's bias (see the module docstring)."""
    deltas: dict[str, torch.Tensor] = {}
    for group in groups:
        for name, local in group.in_local.items():
            idx = [local[r] for r in removed.get(group.root, [])]
            if not idx:
                continue
            conv = model.get_submodule(name)
            mean = means[name][idx].to(conv.weight)
            if isinstance(conv, nn.ConvTranspose2d):  # weight [in, out, kh, kw]; fold the s*s-periodic mean
                delta = (conv.weight[idx].sum(dim=(2, 3)) * mean[:, None]).sum(0) / (conv.stride[0] * conv.stride[1])
            else:  # weight [out, in, kh, kw]
                delta = conv.weight[:, idx].sum(dim=(2, 3)) @ mean
            deltas[name] = deltas.get(name, 0) + delta
    folded: dict[str, list[str]] = {"bias": [], "batchnorm_mean": [], "instancenorm": [], "unfolded": []}
    for name, delta in sorted(deltas.items()):
        conv = model.get_submodule(name)
        norm = layers[name].norm_name
        norm_module = None if norm is None else model.get_submodule(norm)
        if conv.bias is not None:
            conv.bias.add_(delta)
            folded["bias"].append(name)
        elif isinstance(norm_module, nn.BatchNorm2d) and norm_module.running_mean is not None:
            norm_module.running_mean.sub_(delta)
            folded["batchnorm_mean"].append(name)
        elif isinstance(norm_module, nn.InstanceNorm2d):
            folded["instancenorm"].append(name)
        else:
            folded["unfolded"].append(name)
    if folded["unfolded"]:
        log.warning(
            "prune: the constant output of removed channels feeding %s cannot be folded (no bias, no norm); "
            "fine-tuning has to absorb it",
            folded["unfolded"],
        )
    return folded


def _prune_group(model: nn.Module, graph: tp.DependencyGraph, group: ChannelGroup, idxs: list[int]) -> None:
    """Let Torch-Pruning cut ``idxs`` (root channel indices) from every coupled layer of ``group``."""
    root = model.get_submodule(group.root)
    tp_group = graph.get_pruning_group(root, tp.prune_conv_out_channels, [group.out_local[group.root][r] for r in idxs])
    stale = []  # Torch-Pruning leaves InstanceNorm running statistics at the old width (docs/architecture.md)
    for item in tp_group:
        norm = item.dep.target.module
        if isinstance(norm, nn.InstanceNorm2d) and norm.running_mean is not None:
            keep = [c for c in range(norm.num_features) if c not in set(item.idxs)]
            stale.append((norm, keep))
    tp_group.prune()
    for norm, keep in stale:
        norm.running_mean = norm.running_mean[keep]
        norm.running_var = norm.running_var[keep]


@torch.no_grad()
def output_difference(reference: nn.Module, candidate: nn.Module, inputs: torch.Tensor) -> dict[str, float]:
    """Max/mean absolute difference and PSNR (images in [-1, 1], peak-to-peak 2) between two generators' outputs."""
    was = reference.training, candidate.training
    reference.eval()
    candidate.eval()
    try:
        diff = (reference(inputs) - candidate(inputs)).double()
    finally:
        reference.train(was[0])
        candidate.train(was[1])
    mse = float(diff.pow(2).mean())
    psnr = math.inf if mse == 0 else 10.0 * math.log10(4.0 / mse)
    return {"max_abs": float(diff.abs().max()), "mean_abs": float(diff.abs().mean()), "psnr": psnr}


def _report(
    model: nn.Module,
    student: nn.Module,
    groups: list[ChannelGroup],
    counts: list[int],
    layers: list[ChannelLayer],
    kept_out: dict[str, list[int]],
    params: PruneParams,
    example_input: torch.Tensor,
    fold: dict[str, list[str]],
) -> dict[str, Any]:
    shape = (1, *example_input.shape[1:])
    removed_scores = [float(g.score[r]) for g, n in zip(groups, counts) for r in g.order[:n]]
    kept_scores = [float(g.score[r]) for g, n in zip(groups, counts) for r in g.order[n:]]
    total = sum(g.width for g in groups)
    gmacs_before, gmacs_after = count_gmacs(model, shape), count_gmacs(student, shape)
    return {
        "target": params.target,
        "sparsity": params.sparsity if params.target != "threshold" else None,
        "threshold": params.threshold if params.target == "threshold" else None,
        "round_to": params.round_to,
        "channels_prunable": total,
        "channels_removed": sum(counts),
        "channels_removed_fraction": sum(counts) / total,
        "max_removed_score": max(removed_scores, default=None),
        "min_kept_score": min(kept_scores, default=None),
        "gmacs_before": gmacs_before,
        "gmacs_after": gmacs_after,
        "macs_removed_fraction": 1.0 - gmacs_after / gmacs_before,
        "params_m_before": count_params_m(model),
        "params_m_after": count_params_m(student),
        "widths": {layer.name: [layer.conv.out_channels, len(kept_out[layer.name])] for layer in layers},
        "bias_fold": fold,
        "output_diff": output_difference(model, student, example_input),
        "image_shape": list(shape),
    }
