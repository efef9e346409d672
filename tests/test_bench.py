"""Benchmark: budget search, the magnitude baselines, students landing on budgets, teacher-free fine-tuning, the
report's mean ± std, winners and ties, and the whole tiny benchmark end to end (both tasks, every method).
Seeds and resumable units: tests/test_bench_units.py."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from faults import killed_at_batch
from pydantic import ValidationError
from tiny import ROOT, tiny_params, write_params
from torch import nn

from alap.bench.budget import BudgetMissed, Infeasible, land_on_budget, scale_arch
from alap.bench.entry import bench, dvc_metrics
from alap.bench.finetune import TuneResult, finetune_on_objective
from alap.bench.magnitude import l1_importance, magnitude_importance, magnitude_prune, max_ratio
from alap.bench.methods import METHODS
from alap.bench.params import ALL_METHODS, BenchParams, BenchParamsError, load_bench_params
from alap.bench.plots import pareto_figure
from alap.bench.report import QUALITY, render
from alap.bench.run import Unit, _unit_key, distill_settings
from alap.bench.stats import clearly_beats, decide, describe, spread
from alap.bench.students import Originals, land_student
from alap.compress.condense import prepare_for_condense
from alap.compress.params import PruneParams
from alap.config import TrainParams, load_params
from alap.data.batches import BatchStream
from alap.metrics.cost import count_gmacs
from alap.metrics.names import METRICS
from alap.models import NLayerDiscriminator, build_generator, default_arch
from alap.selection import ValFid

SIZE = 32


def _images(n: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----- params -------------------------------------------------------------------------------------------------


def test_repo_bench_params_load_and_name_demo_tasks() -> None:
    bench_params = load_bench_params(ROOT / "bench" / "params.yaml")
    demo = load_params(ROOT / "configs" / "demo.yaml")
    assert set(bench_params.tasks) <= set(demo.tasks)
    assert bench_params.budgets == [8.0, 16.0] and bench_params.tolerance == 0.05
    assert bench_params.seeds == [0, 1, 2] and bench_params.test_images == 1000
    assert ALL_METHODS == tuple(METHODS)
    for task in bench_params.tasks:  # ALAP and the baseline that beat it everywhere
        methods = bench_params.plan(task)[1]
        assert {"alap", "slimming"} <= set(methods)
        # an unpaired task has no ground truth: none of the ablations that fit the outputs to it
        # (alap_strong_target, alap_no_output_distill), nor alap_pruned_teacher (no signal beyond its own outputs)
        unpaired_ok = {"alap", "slimming", "alap_no_floor", "l1_norm", "alap_gan", "alap_no_gan"}
        assert demo.tasks[task].paired or set(methods) <= unpaired_ok


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"budgets": [1.0]}, "reduction factor"),
        ({"budgets": [4, 4]}, "distinct"),
        ({"methods": ["magic"]}, "methods"),
        ({"latency": "cpu-t1"}, "latency"),
        ({"tolerance": 0.0}, "tolerance"),
        ({"typo": 1}, "typo"),
    ],
)
def test_bench_params_reject_bad_values(bad: dict, where: str) -> None:
    with pytest.raises(ValidationError, match=where):
        BenchParams.model_validate({"tasks": ["seg2face"], **bad})


def test_bench_params_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(BenchParamsError, match="not found"):
        load_bench_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bench.yaml"
    bad.write_text("tasks: [seg2face]\nbudgets: [0.5]\n")
    with pytest.raises(BenchParamsError, match=f"(?s){bad}.*budgets: .*> 1"):
        load_bench_params(bad)


# ----- budget search ------------------------------------------------------------------------------------------


def _fake_build(gmacs_of, infeasible_above: float = 2.0):
    def build(knob: float):
        if knob > infeasible_above:
            raise Infeasible(f"knob {knob}")
        return nn.Identity(), {"knob": knob}, gmacs_of(knob), {}

    return build


def test_land_on_budget_bisects_both_directions_and_through_infeasible_knobs() -> None:
    up = land_on_budget(
        _fake_build(lambda m: 10 * m * m), 2.5, 0.0, 1.0, increasing=True, tolerance=0.05, max_tries=40, what="up"
    )
    assert abs(up.deviation) <= 0.005 and abs(up.knob - 0.5) < 0.01
    # decreasing in the knob, infeasible past 0.8: the search must back off from infeasible knobs
    down = land_on_budget(
        _fake_build(lambda r: 10 * (1 - r), infeasible_above=0.8),
        3.0,
        0.0,
        0.999,
        increasing=False,
        tolerance=0.05,
        max_tries=40,
        what="down",
        first=0.95,
    )
    assert abs(down.gmacs - 3.0) <= 0.015 and down.knob <= 0.8


def test_land_on_budget_reports_an_unreachable_budget() -> None:
    with pytest.raises(BudgetMissed, match=r"steps: the closest student has 4\.0\d* GMACs, \+100\.\d%"):
        land_on_budget(
            _fake_build(lambda r: 8.0 - 4.0 * r),
            2.0,
            0.0,
            1.0,
            increasing=False,
            tolerance=0.05,
            max_tries=30,
            what="steps",
        )


def test_scale_arch_scales_every_width_and_keeps_at_least_one() -> None:
    arch = default_arch("resnet", 3, 3, ngf=16, n_blocks=2, norm="instance")
    half = scale_arch(arch, 0.5)
    assert half["widths"] == {"encoder": [8, 16], "trunk": 32, "blocks": [32, 32], "decoder": [16, 8]}
    assert scale_arch(arch, 0.001)["widths"]["encoder"] == [1, 1]
    assert count_gmacs(build_generator(half), (1, 3, SIZE, SIZE)) < count_gmacs(
        build_generator(arch), (1, 3, SIZE, SIZE)
    )
    with pytest.raises(ValueError, match="multiplier"):
        scale_arch(arch, 0.0)


# ----- magnitude baselines ------------------------------------------------------------------------------------


@torch.no_grad()
def _unet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_generator(default_arch("unet", 3, 3, ngf=8, num_downs=4, norm="batch")).eval()
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.weight.mul_(10.0)
    return model


@torch.no_grad()
def test_l1_norm_keeps_the_filters_with_the_largest_l1_norm() -> None:
    model = _unet()
    level = model.levels()[1]  # a hidden down conv followed by BatchNorm
    conv, norm = level.downconv, level.model[2]
    norm.weight.copy_(torch.arange(norm.num_features, dtype=torch.float) + 1)  # tags: which channels survive
    expected = sorted(conv.weight.abs().flatten(1).sum(1).argsort(descending=True)[: conv.out_channels // 2].tolist())
    student, arch = magnitude_prune(model, l1_importance(), 0.5, False, _images(2))
    kept = student.levels()[1].model[2].weight
    assert sorted((kept - 1).round().long().tolist()) == expected
    assert arch["widths"]["down"][0] == 8  # the input layer is never pruned


def test_magnitude_pruning_macs_fall_monotonically_up_to_the_ratio_bound() -> None:
    model, x = _unet(), _images(2)
    bound = max_ratio(model, x)
    assert bound == pytest.approx(1 - 1 / 8, abs=1e-6)  # narrowest hidden conv has 8 channels
    macs = [
        count_gmacs(magnitude_prune(model, magnitude_importance(), r, False, x)[0], (1, 3, SIZE, SIZE))
        for r in (0.0, 0.3, 0.6, bound)
    ]
    assert macs[0] == pytest.approx(count_gmacs(model, (1, 3, SIZE, SIZE)))
    assert all(a > b for a, b in zip(macs, macs[1:])), macs
    same, _ = magnitude_prune(model, magnitude_importance(), 0.0, False, x)
    assert torch.allclose(same(x), model(x), atol=1e-5)
    with pytest.raises(ValueError, match="ratio"):
        magnitude_prune(model, l1_importance(), 1.0, False, x)


# ----- students on budgets -------------------------------------------------------------------------------------


@torch.no_grad()
def _originals(kind: str) -> Originals:
    torch.manual_seed(0)
    arch = default_arch(kind, 3, 3, ngf=8, num_downs=4, n_blocks=2, norm="batch" if kind == "unet" else "instance")
    teacher = build_generator(arch).eval()
    x = _images(2, seed=1)
    condensed, condensed_arch = prepare_for_condense(teacher, arch, x)
    for module in condensed.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.weight is not None:
            module.weight.uniform_(0.0, 1.0)  # condensed-like: spread scale factors
    return Originals(teacher, arch, condensed.eval(), condensed_arch, x, PruneParams(min_width=1))


@pytest.mark.parametrize("kind", ["unet", "resnet"])
def test_every_source_lands_within_tolerance(kind: str) -> None:
    originals = _originals(kind)
    settings = BenchParams(tasks=["t"], search_steps=10)
    full = originals.count(originals.teacher)
    for source in ("uniform", "l1", "tp", "slim"):
        student = land_student(source, 3.0, originals, settings)
        assert abs(student.landing.gmacs / (full / 3.0) - 1) <= 0.05, (source, student.describe())
        assert count_gmacs(student.landing.student, (1, 3, SIZE, SIZE)) == pytest.approx(student.landing.gmacs)
        assert student.describe()["source"] == source


# ----- teacher-free fine-tuning ----------------------------------------------------------------------------------


def _paired_batches(target: nn.Module) -> BatchStream:
    a = _images(16, seed=100)
    with torch.no_grad():
        b = target(a).clamp(-1, 1)
    return BatchStream([{"A": x, "B": y} for x, y in zip(a, b, strict=True)], 4, 0, torch.device("cpu"))


def _finetune(target: nn.Module, disc: nn.Module, state_path: Path, val_fid: ValFid | None = None) -> TuneResult:
    """Fine-tune a pruned copy of ``target`` towards it for 6 steps, training ``disc`` alongside."""
    student, _ = magnitude_prune(_unet(seed=3), l1_importance(), 0.5, False, _images(2))
    a = _images(8, seed=999)
    with torch.no_grad():
        val = [{"A": a, "B": target(a).clamp(-1, 1)}]
    return finetune_on_objective(
        student,
        "pix2pix",
        {"D": disc},
        TrainParams(),
        2e-3,
        6,
        _paired_batches(target),
        val,
        val_fid=val_fid,
        state_path=state_path,
        checkpoint_every=3,
        validate_every=3,
    )


def _disc() -> nn.Module:
    torch.manual_seed(0)
    return NLayerDiscriminator(6, ndf=8, n_layers=2, norm="batch")


def test_objective_finetuning_keeps_the_best_validated_student_and_trains_the_aux_copy(tmp_path: Path) -> None:
    disc = _disc()
    before = copy.deepcopy(disc.state_dict())
    result = _finetune(_unet(seed=3), disc, tmp_path / "state.pt")
    assert result.best_step in (0, 3, 6) and result.best_psnr >= result.start_psnr
    assert not result.student.training
    assert any(not torch.equal(before[k], v) for k, v in disc.state_dict().items())  # D trained alongside


def test_objective_finetuning_with_a_val_fid_keeps_its_best_step(tmp_path: Path) -> None:
    """Unpaired tasks keep the best validation FID (the validator returns minus the FID), not the PSNR's step."""
    fids = iter([300.0, 120.0, 250.0])  # at steps 0, 3 and 6
    result = _finetune(_unet(seed=3), _disc(), tmp_path / "state.pt", val_fid=lambda _: lambda: -next(fids))
    assert (result.best_step, result.best_psnr, result.start_psnr) == (3, None, None)


def test_objective_finetuning_resumed_after_a_kill_trains_on_the_same_batches(tmp_path: Path) -> None:
    target = _unet(seed=3)
    reference_disc = _disc()
    reference = _finetune(target, reference_disc, tmp_path / "ref.pt")
    with killed_at_batch(4):
        _finetune(target, _disc(), tmp_path / "run.pt")
    resumed_disc = _disc()  # a fresh process: nothing survives but the resume file
    resumed = _finetune(target, resumed_disc, tmp_path / "run.pt")  # resumes at step 3, on batches 3 to 5
    assert (resumed.best_step, resumed.best_psnr, resumed.start_psnr) == (
        reference.best_step,
        reference.best_psnr,
        reference.start_psnr,
    )
    for trained, expected in [(resumed.student, reference.student), (resumed_disc, reference_disc)]:
        for key, value in expected.state_dict().items():  # D trains to the end whichever student is best
            assert torch.equal(trained.state_dict()[key], value), key


# ----- report -----------------------------------------------------------------------------------------------------


def _row(method: str, budget: float = 4.0, seed: int = 0, **values: float) -> dict[str, Any]:
    base = {
        "fid": 50.0,
        "fid_ci_low": 45.0,
        "fid_ci_high": 55.0,
        "kid": 0.05,
        "kid_std": 0.01,
        "lpips": 0.3,
        "lpips_teacher": 0.1,
        "psnr": 20.0,
        "ssim": 0.6,
        "latency.cpu-t1.torch.bs1.p50_ms": 10.0,
        "gmacs": 1.0,
        "gmacs_deviation": 0.01,
        "params_m": 0.1,
    }
    return {
        "task": "seg2face",
        "method": method,
        "budget": budget,
        "seed": seed,
        "model": f"{method}-b{budget:g}-seed{seed}",
        "target_gmacs": 1.0,
        "wall_ratio": 0.5,
        "steps": 10,
        "best_step": 10,
        "student": {"arch": {"widths": {"down": [8, 8]}}},
        **base,
        **values,
    }


def _seeds(method: str, key: str, values: list[float], **same: float) -> list[dict[str, Any]]:
    """One row per seed with ``key`` taking ``values`` in turn."""
    return [_row(method, seed=s, **{key: v, **same}) for s, v in enumerate(values)]


def _results(rows: list[dict[str, Any]], teacher: dict[str, float], condensed: dict[str, float]) -> dict[str, Any]:
    refs = [{**_row("teacher", 1.0), "gmacs": 4.0, **teacher}, {**_row("condensed", 1.0), "gmacs": 4.0, **condensed}]
    return {
        "task": "seg2face",
        "budgets": [4.0],
        "methods": list(dict.fromkeys(r["method"] for r in rows)),
        "seeds": sorted({r["seed"] for r in rows}),
        "paired": True,
        "image_size": 32,
        "test_images": 8,
        "identity_baseline": None,
        "teacher_train_wall_s": 100.0,
        "condense_wall_s": 30.0,
        "teacher_steps": 20,
        "finetune_steps": 10,
        "distill_lambda_gan": 0.0,
        "feature_layers": ["down2"],
        "references": refs,
        "rows": rows,
    }


def test_spread_is_mean_and_sample_std_with_the_mean_interval() -> None:
    rows = [_row("alap", fid=10.0, fid_ci_low=8.0, fid_ci_high=13.0), _row("alap", seed=1, fid=14.0)]
    s = spread(rows, "fid")
    assert (s.mean, s.n, s.interval) == (12.0, 2, (26.5, 34.0))  # intervals: (8+45)/2, (13+55)/2
    assert s.std == pytest.approx(2.8284271, abs=1e-6)  # sample std (n - 1)
    assert spread([_row("alap")], "fid").std == 0.0 and spread([_row("alap")], "nothing") is None
    assert spread([_row("alap", fid_ci_low=None)], "fid").interval is None  # half an interval is none


def test_a_clear_win_needs_a_lead_beyond_the_sum_of_the_stds() -> None:
    psnr = METRICS["psnr"]
    clear = {
        "alap": spread(_seeds("alap", "psnr", [25.0, 25.4, 24.6]), "psnr"),  # 25.0 ± 0.4
        "slimming": spread(_seeds("slimming", "psnr", [23.0, 23.5, 22.5]), "psnr"),  # 23.0 ± 0.5: lead 2 > 0.9
        "uniform": spread(_seeds("uniform", "psnr", [20.0, 20.0, 20.0]), "psnr"),
    }
    verdict = decide(psnr, clear)
    assert verdict.winner == "alap" and verdict.tied == ("alap",)
    assert describe(verdict, psnr, clear) == "`alap` 25.00 ± 0.40"


def test_a_lead_within_the_spread_is_a_tie_of_every_method_not_clearly_beaten() -> None:
    psnr = METRICS["psnr"]
    close = {
        "uniform": spread(_seeds("uniform", "psnr", [20.0, 20.0, 20.0]), "psnr"),
        "slimming": spread(_seeds("slimming", "psnr", [24.0, 25.0, 23.0]), "psnr"),  # 24.0 ± 1.0
        "alap": spread(_seeds("alap", "psnr", [25.0, 25.4, 24.6]), "psnr"),  # 25.0 ± 0.4: lead 1.0 < 1.4
    }
    verdict = decide(psnr, close)
    assert verdict.winner is None and verdict.tied == ("alap", "slimming")  # best mean first; uniform is beaten
    assert describe(verdict, psnr, close) == "tie: `alap`, `slimming`"
    # one seed each: no spread, but the display precision still decides (21.004 vs 21.0 is a tie)
    single = {"a": spread([_row("a", psnr=21.004)], "psnr"), "b": spread([_row("b", psnr=21.0)], "psnr")}
    assert decide(psnr, single).tied == ("a", "b")
    assert decide(psnr, {"a": None}) is None


def test_fid_needs_disjoint_intervals_too() -> None:
    fid = METRICS["fid"]
    a = spread([_row("a", fid=40.0, fid_ci_low=36.0, fid_ci_high=44.0)], "fid")
    b = spread([_row("b", fid=47.0, fid_ci_low=43.0, fid_ci_high=51.0)], "fid")  # 7 apart, intervals overlap
    c = spread([_row("c", fid=50.0, fid_ci_low=46.0, fid_ci_high=54.0)], "fid")
    assert not clearly_beats(fid, a, b) and clearly_beats(fid, a, c)
    assert decide(fid, {"a": a, "b": b, "c": c}).tied == ("a", "b")


def test_benchmark_tables_and_plots_read_the_metric_registry() -> None:
    assert all(m is METRICS[m.key] for m in QUALITY)  # the registry's entries, not copies
    rows = [_row("alap"), _row("slimming", psnr=25.0)]
    fig = pareto_figure("seg2face", rows, [], "latency.cpu-t1.torch.bs1.p50_ms", "cpu-t1.torch.bs1")
    labels = {ax.get_ylabel() for ax in fig.axes}
    assert labels == {f"{METRICS[k].heading}, {METRICS[k].direction} is better" for k in ("fid", "lpips", "psnr")}
    text = render(BenchParams(tasks=["seg2face"], budgets=[4.0]), [_results(rows, {}, {})], Path("reports"))
    assert "| task | budget | " + " | ".join(m.label for m in QUALITY) + " | latency |" in text


@pytest.mark.parametrize("gan_ablation", [None, "alap_gan"])
def test_the_adversarial_hypothesis_gives_way_to_its_ablation(gan_ablation: str | None) -> None:
    rows = [_row("slimming", fid=20.0, fid_ci_low=18.0, fid_ci_high=22.0), _row("alap", fid=30.0)]
    rows += [_row(gan_ablation, fid=40.0)] if gan_ablation else []
    text = render(BenchParams(tasks=["seg2face"], budgets=[4.0]), [_results(rows, {}, {})], Path("reports"))
    note = next(line for line in text.splitlines() if line.startswith("- **FID**"))
    assert (f"Measured, and not better than ALAP's 30.00: `{gan_ablation}` 40.00." in note) == bool(gan_ablation)
    assert ("ALAP's distillation has none" in note) != bool(gan_ablation)
    assert ("(a hypothesis: `alap_gan`, which would test it" in note) != bool(gan_ablation)


@pytest.mark.parametrize("original_fid", [None, 20.0, 40.0])
def test_the_condensing_hypothesis_gives_way_to_its_ablation(original_fid: float | None) -> None:
    rows = [_row("slimming", fid=20.0, fid_ci_low=18.0, fid_ci_high=22.0)]
    rows.append(_row("alap", fid=30.0, fid_ci_low=28.0, fid_ci_high=32.0))
    if original_fid is not None:
        rows.append(
            _row("alap_original_teacher", fid=original_fid, fid_ci_low=original_fid - 2, fid_ci_high=original_fid + 2)
        )
    results = _results(rows, teacher={"fid": 10.0}, condensed={"fid": 12.0})
    text = render(BenchParams(tasks=["seg2face"], budgets=[4.0]), [results], Path("reports"))
    note = next(line for line in text.splitlines() if line.startswith("- **FID**"))
    hypothesis = (
        "Condensing cost the teacher quality (10.00 -> 12.00), and ALAP distils from the condensed network (a "
        "hypothesis: `alap_original_teacher`, which would test it, did not run here"
    )
    assert (hypothesis in note) == (original_fid is None)
    assert ("original teacher instead of the condensed one does better (20.00 vs 30.00)" in note) == (
        original_fid == 20.0
    )
    assert ("not better than ALAP's 30.00: `alap_original_teacher` 40.00." in note) == (original_fid == 40.0)


def test_report_budget_without_students_says_so_instead_of_an_empty_table() -> None:
    settings = BenchParams(tasks=["seg2face"], budgets=[4.0, 16.0], seeds=[0])
    results = _results([_row("alap"), _row("slimming")], teacher={"psnr": 24.0}, condensed={"psnr": 23.0})
    results["budgets"] = [4.0, 16.0]
    results["missed"] = [{"method": m, "budget": 16.0, "seed": 0, "error": "caps at 13x"} for m in ("alap", "slimming")]
    section = render(settings, [results], Path("reports")).split("### seg2face, 16x fewer MACs")[1].split("###")[0]
    assert "No method has a student within the tolerance at this budget:" in section
    assert "- `alap`: caps at 13x\n- `slimming`: caps at 13x" in section
    assert "| method |" not in section and "not measured" not in section


def test_each_ablation_changes_one_field_of_alap() -> None:
    alap = METHODS["alap"].__dict__
    for name in (m for m in METHODS if m.startswith("alap_")):
        changed = {k for k, v in METHODS[name].__dict__.items() if v != alap[k]} - {"name", "summary"}
        assert len(changed) == 1 or name == "alap_no_condense", (name, changed)  # no condense: source and teacher


def test_report_gives_mean_and_std_names_winners_or_ties_and_explains_alap_losses() -> None:
    settings = BenchParams(tasks=["seg2face"], budgets=[4.0], seeds=[0, 1])

    def two(method: str, **values: float) -> list[dict[str, Any]]:
        """Two seeds, the second 0.5 FID/0.2 dB/0.002 LPIPS off the first."""
        first = _row(method, **values)
        second = {**first, "seed": 1, "fid": first["fid"] + 0.5, "psnr": first["psnr"] + 0.2}
        second["lpips"] = first["lpips"] + 0.002
        return [first, second]

    rows = [
        *two("uniform"),
        *two("l1_norm"),
        *two("slimming", psnr=25.0),
        *two("tp_magnitude"),
        *two("alap", fid=30.0, fid_ci_low=27.0, fid_ci_high=33.0, psnr=21.0, lpips=0.29),
        *two("alap_original_teacher", psnr=22.0),
        *two("alap_output_only", lpips=0.2905),
        *two("alap_gan", psnr=23.0),
    ]
    results = _results(rows, teacher={"psnr": 24.0}, condensed={"psnr": 23.0})
    results["missed"] = [{"method": "uniform", "budget": 4.0, "seed": s, "error": "closest +7.0%"} for s in (0, 1)]
    text = render(settings, [results], Path("reports"))
    assert "No student within the tolerance (not in the table):\n\n- `uniform`: closest +7.0%\n" in text
    assert "| seg2face | 4x | `alap` 30.25 ± 0.35 |" in text  # FID: the only clear winner of the summary
    assert "| **`alap`** | 2 | 1 (+1.0%) | 30.25 ± 0.35 [27.00, 33.00] |" in text  # mean, std, mean interval
    assert "- FID: `alap` 30.25 ± 0.35 -- ALAP wins" in text
    assert "- PSNR: `slimming` 25.10 ± 0.14; ALAP 21.10 ± 0.14, rank 4 of 8 by mean, behind beyond" in text
    psnr_note = next(line for line in text.splitlines() if line.startswith("- **PSNR**"))
    assert "Condensing cost" not in psnr_note  # alap_original_teacher ran: its result replaces the hypothesis
    assert "original teacher instead of the condensed one does better (22.10 ± 0.14 vs 21.10 ± 0.14)" in psnr_note
    assert "The adversarial term at GAN Compression's weight (lambda_gan 1) does better" in psnr_note
    assert "`slimming` beats even the teacher (25.10 vs 24.00)" in psnr_note
    assert "- LPIPS: tie: `alap`, `alap_output_only`; ALAP 0.2910 ± 0.0014, rank 1 of 8 by mean, tied" in text
    assert "- **LPIPS**" not in text
    assert "### seg2face: ALAP's defaults against each ablation" in text
    gan = next(line for line in text.splitlines() if line.startswith("| 4x | `alap_gan` |"))
    expected = "| 4x | `alap_gan` | *+20.00 worse* | +0.0000 ~ | *+0.0100 worse* | +0.0000 ~ | **+2.00 better** |"
    assert gan == expected + " +0.0000 ~ |"
    assert "| 4x | `alap_output_only` | *+20.00 worse* | +0.0000 ~ | +0.0005 ~ |" in text
    assert "![seg2face Pareto plot](bench/seg2face_pareto.png)" in text


def test_each_distill_ablation_changes_its_one_distill_setting() -> None:
    """A Method's distill field reaches the DistillParams its units are keyed and trained with."""
    params, bench_params = (
        load_params(ROOT / "configs" / "demo.yaml"),
        load_bench_params(ROOT / "bench" / "params.yaml"),
    )
    tb = SimpleNamespace(
        params=params, bench=bench_params, originals=SimpleNamespace(teacher_arch={"kind": "unet"}), more_layers=[]
    )
    base = distill_settings(tb, METHODS["alap"]).model_dump()
    for name in ("alap_gan", "alap_no_gan", "alap_no_output_distill", "alap_strong_target", "alap_beta1"):
        method = METHODS[name]
        changed = {k: v for k, v in distill_settings(tb, method).model_dump().items() if v != base[k]}
        fields = ("lambda_gan", "lambda_teacher", "lambda_target", "beta1")
        assert changed == {f: getattr(method, f) for f in fields if getattr(method, f) is not None}, name


def test_a_unit_key_holds_only_the_distill_settings_its_tuning_reads() -> None:
    """Distillation's own settings (its loss weights, Adam's beta1) key ALAP's units but not the baselines', so a
    new distillation default does not recompute rows of methods that never read it."""
    params = load_params(ROOT / "configs" / "demo.yaml")
    bench_params = load_bench_params(ROOT / "bench" / "params.yaml")

    def keys(distill_change: dict[str, float]) -> dict[str, str]:
        changed = params.model_copy(update={"distill": params.distill.model_copy(update=distill_change)})
        tb = SimpleNamespace(
            params=changed,
            bench=bench_params,
            originals=SimpleNamespace(teacher_arch={"kind": "unet"}),
            more_layers=[],
            identity="weights",
            task=SimpleNamespace(train=changed.train_for("seg2face")),
        )
        return {name: _unit_key(tb, Unit(8.0, METHODS[name], 0)) for name in ("uniform", "slimming", "alap")}

    base = keys({})
    for change in ({"lambda_gan": 0.7}, {"lambda_target": 3.0}, {"beta1": 0.9}):
        assert keys(change) == {**base, "alap": keys(change)["alap"]} and keys(change)["alap"] != base["alap"]
    lr = keys({"lr": 1e-3})  # fine-tuning on the objective takes distill's lr; training from scratch does not
    assert lr["slimming"] != base["slimming"] and lr["uniform"] == base["uniform"]


def test_dvc_metrics_nest_budgets_and_methods_with_the_seeds_mean_and_std() -> None:
    rows = [_row("alap"), _row("alap", seed=1, fid=52.0), _row("uniform", budget=8.0)]
    metrics = dvc_metrics(_results(rows, teacher={}, condensed={}), "latency.cpu-t1.torch.bs1.p50_ms")
    assert set(metrics) == {"teacher", "condensed", "b4", "b8"}
    assert metrics["b4"]["alap"]["p50_ms"] == 10.0 and metrics["b4"]["alap"]["fid"] == 51.0
    assert metrics["b4"]["alap"]["fid_std"] == pytest.approx(1.41421356) and metrics["b4"]["alap"]["kid_std"] == 0.01
    assert metrics["b8"]["uniform"]["fid"] == 50.0 and "fid_std" not in metrics["b8"]["uniform"]


# ----- end to end -------------------------------------------------------------------------------------------------


def _bench_workspace(root: Path, budgets: list[float]) -> tuple[Path, Path]:
    params = tiny_params(root, tasks=["seg2face"])  # horse2zebra is benchmarked without being a pipeline task
    params["data"]["n_test"] = 4
    params["profile"]["backends"] = ["torch"]
    params_file = write_params(root / "params.yaml", params)
    bench_file = root / "bench.yaml"
    bench_file.write_text(
        yaml.safe_dump({"tasks": ["seg2face", "horse2zebra"], "budgets": budgets, "search_steps": 12, "track": True})
    )
    return params_file, bench_file


def test_tiny_benchmark_runs_every_method_for_both_tasks(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("ALAP_PARENT_RUN_ID", raising=False)
    params_file, bench_file = _bench_workspace(tmp_path, [3.0])
    params, settings = load_params(params_file), load_bench_params(bench_file)
    done = bench(params, settings, None, torch_home, project_dir=tmp_path)

    rows = 0
    for task in ("seg2face", "horse2zebra"):
        results = done[task]
        ran, missed = [r["method"] for r in results["rows"]], [m["method"] for m in results["missed"]]
        assert [m for m in ALL_METHODS if m in ran or m in missed] == list(ALL_METHODS) and not set(ran) & set(missed)
        assert set(missed) <= {"alap_min_width"}  # 8 channels a layer is most of a tiny network: 3x is out of reach
        assert all("3x fewer MACs" in m["error"] for m in results["missed"])
        rows += len(ran)
        teacher_gmacs = results["references"][0]["gmacs"]
        assert results["test_images"] == params.data.n_test == 4
        identity = json.loads((tmp_path / "bench/out" / task / "train_metrics.json").read_text()).get("fid_identity")
        assert (results["identity_baseline"] or {}).get("fid") == identity  # unpaired: the floor; paired: none
        for row in results["rows"]:
            assert abs(row["gmacs"] / (teacher_gmacs / 3.0) - 1) <= 0.05, row["model"]
            assert row["fid"] is not None and row["lpips"] is not None and row["psnr"] is not None
            assert row["latency.cpu-t1.torch.bs1.p50_ms"] > 0 and row["wall_ratio"] > 0
            assert (tmp_path / "bench/out" / task / row["dir"] / "student.pt").is_file()
        for own in ("data", "teacher.pt", "teacher_aux.pt", "train_metrics.json", "condensed.pt"):
            assert (tmp_path / "bench/out" / task / own).exists(), own  # the benchmark's own, inside its DVC out
        by = {r["method"]: r for r in results["rows"]}
        assert by["alap"]["student"]["arch"] == by["slimming"]["student"]["arch"]  # one pruned student, two tunings
        assert by["l1_norm"]["student"]["arch"] == by["alap_no_condense"]["student"]["arch"]
        distill_only = ("alap_gan", "alap_no_gan", "alap_no_output_distill", "alap_strong_target", "alap_beta1")
        for name in distill_only:
            assert by[name]["student"]["arch"] == by["alap"]["student"]["arch"]
        assert by["alap_more_features"]["features"] == "more" and results["more_feature_layers"]
        assert by["uniform"]["steps"] == params.train_for(task).steps
        assert {by[m]["steps"] for m in ran if m != "uniform"} == {params.distill.steps}
        metrics = json.loads((tmp_path / "bench/metrics" / f"{task}.json").read_text())
        assert set(metrics["b3"]) == set(ran)

    assert not (tmp_path / "models").exists() and not (tmp_path / "data").exists()  # the pipeline's are untouched
    # resume checkpoints apart from the pipeline's, whose finished runs would otherwise "resume" in no time
    assert [p.name for p in (tmp_path / ".alap/state").iterdir()] == ["bench"]
    report = (tmp_path / "reports/benchmark.md").read_text()
    assert "### seg2face, 3x fewer MACs" in report and "### horse2zebra, 3x fewer MACs" in report
    assert report.count("4 test images") == 2 and report.count("The identity baseline") == 1
    assert (tmp_path / "reports/bench/horse2zebra_pareto.png").stat().st_size > 10_000
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        children = db.execute(
            "select count(*) from runs r join experiments e on r.experiment_id = e.experiment_id "
            "where e.name = 'alap-bench' and r.name not like 'bench-%'"
        ).fetchone()[0]
    assert children == rows + 2 * 2  # every row and the two references of each task

    # a second run reuses every finished row instead of recomputing it
    row_file = tmp_path / "bench/out/seg2face/b3/alap/seed0/row.json"
    stamp = row_file.stat().st_mtime_ns
    again = bench(params, settings, ["seg2face"], torch_home, project_dir=tmp_path)
    assert row_file.stat().st_mtime_ns == stamp and again["seg2face"]["rows"] == done["seg2face"]["rows"]


@pytest.mark.slow
def test_demo_size_benchmark(tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo profile at its real size, both benchmarked tasks, every method and budget (hours on 2 cores)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    params["profile"]["devices"] = [
        d for d in params["profile"]["devices"] if d != "cuda0" or torch.cuda.is_available()
    ]
    params_file = write_params(tmp_path / "params.yaml", params)
    settings = load_bench_params(ROOT / "bench" / "params.yaml")
    done = bench(load_params(params_file), settings, None, torch_home, project_dir=tmp_path)
    for task in settings.tasks:
        budgets, methods, seeds = settings.plan(task)
        assert len(done[task]["rows"]) + len(done[task]["missed"]) == len(budgets) * len(methods) * len(seeds)
        assert all(abs(r["gmacs_deviation"]) <= settings.tolerance for r in done[task]["rows"])
    assert "Winners:" in (tmp_path / "reports/benchmark.md").read_text()
