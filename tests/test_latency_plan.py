"""The latency planner on tiny networks: the search, the on-disk timing cache, the unreachable-budget error.

The search is checked against a deterministic cost (the candidate's executed MACs, which fall as channels go, as
latency does up to noise), so that minimality can be asserted exactly; the cache and the error use real timings.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from pydantic import ValidationError

from alap.compress.latency_plan import CONFIRM_ROUNDS, BudgetUnreachable, auto_round_to
from alap.compress.params import LatencyTarget, PruneParams
from alap.compress.prune import prune
from alap.config import LatencySweep
from alap.models import build_generator
from alap.profile import candidates
from alap.profile.candidates import CandidateTimer
from alap.profile.roofline import count_gmacs
from alap.steps.prune import remeasured
from tests.test_prune import SIZE, _condensed, _inputs


class ExecutedMacs:
    """A candidate's executed MACs (in millions) as its "p50": deterministic and non-increasing in ``k``."""

    def __init__(self) -> None:
        self.archs: list[dict] = []

    def p50_ms(self, arch: dict) -> float:
        self.archs.append(arch)
        return 1000.0 * count_gmacs(build_generator(arch), (3, SIZE, SIZE))

    def fresh_p50_ms(self, arch: dict) -> float:
        return self.p50_ms(arch)


class SlowerAfresh(ExecutedMacs):
    """Fresh timings ``factor`` times the cached ones: the cache was timed on a quieter machine."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor
        self.fresh: list[float] = []

    def fresh_p50_ms(self, arch: dict) -> float:
        self.fresh.append(self.factor * self.p50_ms(arch))
        return self.fresh[-1]


def _latency(p50_ms: float, round_to: int | str = 1, **extra) -> PruneParams:
    """Kept widths as planned (round_to 1) unless given: minimality is asserted channel by channel."""
    latency = LatencyTarget(device="cpu-t1", p50_ms=p50_ms, **extra)
    return PruneParams(target="latency", latency=latency, round_to=round_to)


@pytest.mark.parametrize("kind,norm", [("unet", "batch"), ("resnet", "instance")])
def test_search_finds_the_fewest_channels_within_the_budget(kind: str, norm: str) -> None:
    model, arch = _condensed(kind, norm)
    cost = ExecutedMacs()
    full = cost.p50_ms(arch)
    budget = 0.5 * full
    result = prune(model, arch, _latency(budget), _inputs(), timer=cost)
    plan = result.report["latency"]
    student_cost = cost.p50_ms(result.arch)
    assert student_cost == pytest.approx(plan["p50_ms_planned"]) and student_cost <= budget
    assert plan["p50_ms_unpruned"] == pytest.approx(full)
    # minimal: the same ranking with one channel less removed is over the budget
    k = result.report["channels_removed"]
    one_less = prune(model, arch, PruneParams(target="channels", sparsity=(k - 1) / plan_total(result)), _inputs())
    assert one_less.report["channels_removed"] == k - 1
    assert cost.p50_ms(one_less.arch) > budget
    # bisection: about log2(channels) timings, not one per channel
    assert plan["candidates_timed"] <= plan_total(result).bit_length() + 2
    # tighter budgets remove more: the search is monotone in the budget
    tighter = prune(model, arch, _latency(0.3 * full), _inputs(), timer=ExecutedMacs())
    assert tighter.report["channels_removed"] > k


def plan_total(result) -> int:
    return result.report["channels_prunable"]


def test_a_plan_that_re_times_over_the_budget_is_searched_again_lower() -> None:
    model, arch = _condensed("unet", "batch")
    budget = 0.5 * ExecutedMacs().p50_ms(arch)
    trusted = prune(model, arch, _latency(budget), _inputs(), timer=ExecutedMacs()).report
    assert trusted["latency"]["confirmed"] and len(trusted["latency"]["confirmations"]) == 1
    slower = SlowerAfresh(1.1)
    report = prune(model, arch, _latency(budget), _inputs(), timer=slower).report
    plan = report["latency"]
    assert plan["confirmed"] and slower.fresh[-1] <= budget < slower.fresh[0]
    assert [c["fresh_ms"] for c in plan["confirmations"]] == slower.fresh
    assert report["channels_removed"] > trusted["channels_removed"]  # it removed more to meet the fresh timing
    never = prune(model, arch, _latency(budget), _inputs(), timer=SlowerAfresh(100.0)).report
    assert not never["latency"]["confirmed"] and len(never["latency"]["confirmations"]) <= CONFIRM_ROUNDS
    assert never["channels_removed"] > report["channels_removed"]  # it went on towards the smallest student
    assert never["latency"]["confirmations"][-1]["channels_removed"] == never["channels_removed"]  # the last re-timed


def test_a_met_budget_removes_nothing() -> None:
    model, arch = _condensed("unet", "batch")
    cost = ExecutedMacs()
    result = prune(model, arch, _latency(2 * cost.p50_ms(arch)), _inputs(), timer=cost)
    assert result.report["channels_removed"] == 0 and result.report["latency"]["candidates_timed"] == 1


def test_timings_are_cached_per_machine_on_disk(tmp_path) -> None:
    target = LatencyTarget(device="cpu-t1", backend="onnxruntime", p50_ms=1.0)
    _, arch = _condensed("unet", "batch")
    first = CandidateTimer(target, (3, SIZE, SIZE), cache_dir=tmp_path, min_repeats=3, min_seconds=0.0)
    p50 = first.p50_ms(arch)
    assert (first.measured, first.hits) == (1, 0) and p50 > 0
    assert first.cache_file.name == f"cpu-t1.onnxruntime.bs1.3x{SIZE}x{SIZE}.json"
    again = CandidateTimer(target, (3, SIZE, SIZE), cache_dir=tmp_path, min_repeats=3, min_seconds=0.0)
    assert again.p50_ms(arch) == p50 and (again.measured, again.hits) == (0, 1)
    other_shape = CandidateTimer(target, (3, 2 * SIZE, 2 * SIZE), cache_dir=tmp_path, min_repeats=3, min_seconds=0.0)
    other_shape.p50_ms(arch)
    assert other_shape.measured == 1  # another input shape is another file
    cached = json.loads(first.cache_file.read_text())
    first.cache_file.write_text(json.dumps({**cached, "machine": "another machine"}))
    elsewhere = CandidateTimer(target, (3, SIZE, SIZE), cache_dir=tmp_path, min_repeats=3, min_seconds=0.0)
    elsewhere.p50_ms(arch)
    assert elsewhere.measured == 1  # timings of another machine are not reused
    assert json.loads(first.cache_file.read_text())["machine"] == elsewhere.machine


def test_a_budget_below_the_smallest_student_names_its_p50(tmp_path) -> None:
    model, arch = _condensed("resnet", "instance")
    params = _latency(1e-6)
    timer = CandidateTimer(params.latency, (3, SIZE, SIZE), cache_dir=tmp_path, min_repeats=3, min_seconds=0.0)
    with pytest.raises(BudgetUnreachable, match=r"below the smallest reachable student: \d+\.\d{3} ms p50 on cpu-t1"):
        prune(model, arch, params, _inputs(), timer=timer)
    assert timer.measured == 2  # the full network, then the smallest: no search


def test_an_int8_budget_plans_on_int8_files_cached_apart(tmp_path, monkeypatch) -> None:
    """Backend onnxruntime-int8 times each candidate's int8 quantization, in a cache file of its own; the student
    is re-measured in int8 too. The timing is the int8 file's size (deterministic, falls as channels go), so the
    plan is exact; a real timing of one candidate checks that onnxruntime runs the file."""
    model, arch = _condensed("unet", "batch")
    fp32 = CandidateTimer(LatencyTarget(device="cpu-t1", p50_ms=1.0), (3, SIZE, SIZE), cache_dir=tmp_path)
    target = LatencyTarget(device="cpu-t1", backend="onnxruntime-int8", p50_ms=1.0)
    real = CandidateTimer(target, (3, SIZE, SIZE), cache_dir=tmp_path, min_repeats=3, min_seconds=0.0)
    assert real.p50_ms(arch) > 0 and real.measured == 1
    assert real.cache_file.name == f"cpu-t1.onnxruntime-int8.bs1.3x{SIZE}x{SIZE}.json" != fp32.cache_file.name
    assert not fp32.cache_file.exists()  # int8 timings never land in the fp32 file

    timed: list[set[str]] = []

    def file_size(onnx_file, spec, backend, batch_size, shape, **settings) -> dict:
        timed.append({node.op_type for node in onnx.load(str(onnx_file)).graph.node})
        ms = Path(onnx_file).stat().st_size / 1e4
        return {"p50_ms": ms, "p90_ms": ms}

    monkeypatch.setattr(candidates, "measure_latency", file_size)
    cost = CandidateTimer(target, (3, SIZE, SIZE), cache_dir=tmp_path / "sizes")
    full = cost.p50_ms(arch)
    budget = 0.5 * full
    params = PruneParams(target="latency", latency=target.model_copy(update={"p50_ms": budget}), round_to=1)
    result = prune(model, arch, params, _inputs(), timer=cost)
    plan = result.report["latency"]
    assert plan["backend"] == "onnxruntime-int8" and result.report["channels_removed"] > 0
    assert plan["p50_ms_planned"] <= budget < full
    assert all({"QuantizeLinear", "DequantizeLinear"} <= ops for ops in timed)  # every timed file is int8
    assert set(json.loads(cost.cache_file.read_text())["timings"]) >= {candidates.arch_digest(result.arch)}
    student = remeasured(plan, cost, result.student)
    assert student["p50_ms_student"] == pytest.approx(plan["p50_ms_planned"], rel=0.05)
    assert student["cache_file"] == str(cost.cache_file)


def test_int8_budgets_are_cpu_only() -> None:
    """ONNX Runtime's int8 kernels are a CPU path: a CUDA budget in int8 is refused where it is written."""
    with pytest.raises(ValidationError, match="onnxruntime-int8' runs on the CPU .* not on cuda0"):
        LatencyTarget(device="cuda0", backend="onnxruntime-int8", p50_ms=5)
    with pytest.raises(ValidationError, match="point 'cuda0-5ms': backend 'onnxruntime-int8' runs on the CPU"):
        LatencySweep(points=["cpu-t2-33ms", "cuda0-5ms"], backend="onnxruntime-int8")
    assert LatencySweep(points=["cpu-t2-33ms"], backend="onnxruntime-int8").target("cpu-t2-33ms").p50_ms == 33


def test_latency_settings_mean_one_thing() -> None:
    with pytest.raises(ValidationError, match="give both or neither"):
        PruneParams(target="latency")
    with pytest.raises(ValidationError, match="give both or neither"):
        PruneParams(target="macs", latency=LatencyTarget(p50_ms=10))
    with pytest.raises(ValidationError, match="takes no sparsity"):
        PruneParams(target="latency", sparsity=0.5, latency=LatencyTarget(p50_ms=10))
    with pytest.raises(ValidationError, match="cpu-t<N>"):
        LatencyTarget(device="cpu", p50_ms=10)
    with pytest.raises(ValidationError):
        LatencyTarget(p50_ms=0)


def test_round_to_auto_is_the_multiple_measured_for_the_kind_and_device() -> None:
    """auto: 8 for a U-Net's latency target on a CPU (reports/latency.md), 1 where nothing was measured or no
    device is targeted; a number is kept. The planner then plans with the rounded widths."""
    assert auto_round_to(PruneParams(target="macs", sparsity=0.5), "unet") == 1
    assert auto_round_to(_latency(1.0, round_to="auto"), "unet") == 8
    assert auto_round_to(_latency(1.0, round_to="auto"), "resnet") == 1
    cuda = PruneParams(target="latency", latency=LatencyTarget(device="cuda0", p50_ms=1.0))
    assert cuda.round_to == "auto" and auto_round_to(cuda, "unet") == 1
    assert auto_round_to(_latency(1.0, round_to=4), "unet") == 4
    model, arch = _condensed("unet", "batch")
    cost = ExecutedMacs()
    result = prune(model, arch, _latency(0.5 * cost.p50_ms(arch), round_to="auto"), _inputs(), timer=cost)
    assert result.report["round_to"] == 8 and result.report["channels_removed"] > 0
    assert all(kept % 8 == 0 or kept == width for width, kept in result.report["widths"].values())
