"""The metric registry (alap.metrics.names): every metric the evaluate and profile stages write has an entry, latency
keys build and parse back, and a name nobody registered is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference_nets import reference
from tiny import tiny_params

from alap import evaluate
from alap.config import Params
from alap.metrics.names import LATENCY, METRICS, QUALITY, LatencyKey, metric
from alap.paths import TaskPaths
from alap.profile.latency import profile_model
from alap.profile.quantize import CALIBRATION_IMAGES
from alap.steps.evaluate import evaluate_entry
from alap.steps.profile import profile_entry
from alap.steps.teacher import import_teacher

# What metrics.json records besides metrics: which model, and what it was measured on.
BOOKKEEPING = {"task", "model", "sparsity", "measured_on"}


class _Features:
    """Stands in for the Inception trunk: these tests need the names evaluate writes, not FID's value."""

    provenance = {"file": "stub"}

    def __init__(self, *_: object) -> None:
        pass

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


class _Lpips:
    """Stands in for LPIPS: a per-image distance."""

    provenance = {"metric": "stub"}

    def __init__(self, *_: object) -> None:
        pass

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().flatten(1).mean(1)


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    coarse = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((32, 32), Image.Resampling.BICUBIC).save(path)


def _folder(root: Path, layout: str) -> Path:
    """A paired dataset (train/A, train/B, test/...) or a plain folder of input images (layout images)."""
    if layout == "images":
        for i in range(40):  # carved into train, val and test: a few test images to compare
            _image(root / f"frame{i}.png", i)
        return root
    for split, count in (("train", 8), ("test", 4)):
        for i in range(count):
            _image(root / split / "A" / f"{i}.png", 2 * i)
            _image(root / split / "B" / f"{i}.png", 2 * i + 1)
    return root


def _imported(tmp_path: Path, layout: str, int8: bool = False) -> tuple[Params, TaskPaths]:
    """A task ``mine`` of ``layout`` under ``tmp_path`` whose teacher is imported (a random tiny U-Net)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    teacher_file = tmp_path / "g.pth"
    torch.save(reference("unet", "batch", False, ngf=4, num_downs=5).state_dict(), teacher_file)
    raw = tiny_params(tmp_path)
    raw["tasks"]["mine"] = {
        "source": "folder",
        "layout": layout,
        "root": str(_folder(tmp_path / "data", layout)),
        "teacher": {"checkpoint": str(teacher_file), "dropout": False},
    }
    raw.update(run_tasks=["mine"], dvc=None)
    raw["quantize"]["int8"] = int8
    params = Params.model_validate(raw)
    paths = TaskPaths("mine", models=tmp_path / "models", reports=tmp_path / "reports", state=tmp_path / "state")
    import_teacher(params, "mine", paths)
    return params, paths


@pytest.mark.parametrize(("layout", "suffix"), [("paired", ""), ("images", "_teacher")])
def test_every_metric_evaluate_writes_is_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, suffix: str
) -> None:
    monkeypatch.setattr(evaluate, "InceptionFeatures", _Features)
    monkeypatch.setattr(evaluate, "LpipsMetric", _Lpips)
    params, paths = _imported(tmp_path, layout)

    out = tmp_path / "reports" / "mine" / "teacher"
    evaluate.evaluate_model(params, "mine", "teacher", paths.teacher, paths.teacher, out, tmp_path / "torch_home")
    written = set(json.loads((out / "metrics.json").read_text())) - BOOKKEEPING
    assert written <= set(METRICS), f"metrics.json names metrics the registry lacks: {written - set(METRICS)}"
    distances = {f"{name}{suffix}" for name in ("fid", "fid_ci_low", "fid_ci_high", "kid", "kid_std")}
    assert distances | {"lpips_teacher", "psnr_teacher", "gmacs", "params_m"} <= written
    other = "_teacher" if suffix == "" else ""
    assert {f"{name}{other}" for name in ("fid", "fid_ci_low", "fid_ci_high", "kid", "kid_std")}.isdisjoint(written)


@pytest.mark.parametrize(("layout", "suffix"), [("paired", ""), ("images", "_teacher")])
def test_profile_int8_adds_the_int8_exports_quality_and_latency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, suffix: str
) -> None:
    """With quantize.int8 the evaluate and profile steps score and time the model's int8 quantization too: every
    quality metric again behind ``int8.`` (registered) and latency keys of backend onnxruntime-int8; the model's own
    metrics do not change. Off (the default), neither step writes any int8 key."""
    monkeypatch.setattr(evaluate, "InceptionFeatures", _Features)
    monkeypatch.setattr(evaluate, "LpipsMetric", _Lpips)
    written = {}
    for int8 in (False, True):
        params, paths = _imported(tmp_path / str(int8), layout, int8)
        out = paths.report_dir / "teacher"
        torch_home = tmp_path / "torch_home"
        evaluate_entry(params, "mine", "teacher", None, torch_home, paths=paths)
        profile_entry(params, "mine", "teacher", paths=paths)
        written[int8] = {
            **json.loads((out / "metrics.json").read_text()),
            **json.loads((out / "latency.json").read_text()),
        }
    off, on = written[False], written[True]
    int8_keys = {key for key in on if key.startswith("int8.")}
    assert not any(key.startswith("int8.") or "onnxruntime-int8" in key for key in off)
    quality = {key for key in off if key in METRICS and METRICS[key].kind != "cost" and off[key] is not None}
    assert {f"fid{suffix}", "lpips_teacher", "psnr_teacher"} <= quality
    assert {key for key in int8_keys if on[key] is not None} == {f"int8.{key}" for key in quality}
    assert int8_keys <= set(METRICS)
    assert all(on[key] == off[key] for key in off if key in METRICS)  # the model's own metrics: unchanged
    assert on["int8.lpips_teacher"] > 0 == off["lpips_teacher"]  # int8 is not the model (here the teacher) itself
    assert 1 <= on["measured_on"]["int8_calibration_images"] <= CALIBRATION_IMAGES  # the train split is smaller
    int8_latency = LatencyKey("cpu-t1", "onnxruntime-int8")
    assert on[int8_latency.p50] > 0 and on[int8_latency.p90] >= on[int8_latency.p50]
    assert {key for key in on if key.startswith("latency.")} - {int8_latency.p50, int8_latency.p90} == {
        key for key in off if key.startswith("latency.")
    }


def test_every_latency_key_profile_writes_reads_as_the_latency_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh())
    result = profile_model(
        model,
        (3, 8, 8),
        ["cpu-t1"],
        ["torch"],
        [1, 2],
        onnx_dir=tmp_path,
        warmup=0,
        min_repeats=2,
        min_seconds=0.0,
        name="tiny",
        progress=False,
    )
    assert len(result["metrics"]) == 4  # p50 and p90 at two batch sizes
    for key in result["metrics"]:
        entry = metric(key)
        assert (entry.key, entry.label, entry.direction, entry.unit) == (key, LATENCY.label, "lower", "ms")
        parsed = LatencyKey.parse(key)
        assert key in (parsed.p50, parsed.p90) and parsed.device == "cpu-t1" and parsed.backend == "torch"


def test_latency_keys_build_and_parse_back() -> None:
    key = LatencyKey("cpu-t2", "onnxruntime", 8)
    assert key.p50 == "latency.cpu-t2.onnxruntime.bs8.p50_ms" and key.p90 == "latency.cpu-t2.onnxruntime.bs8.p90_ms"
    assert LatencyKey.parse(key.p90) == key and LatencyKey("cpu-t2", "onnxruntime").batch == 1
    assert key.speedup == "speedup.cpu-t2.onnxruntime.bs8" and key.label == "cpu-t2/onnxruntime bs8"
    for bad in ("latency.cpu.torch.p50_ms", "latency.cpu.torch.bs0.p50_ms", "latency.cpu.torch.bs1.p99_ms"):
        with pytest.raises(ValueError, match="not a latency metric key"):
            LatencyKey.parse(bad)


def test_registry_entries_are_complete_and_unknown_names_are_refused() -> None:
    for key, entry in METRICS.items():
        assert entry.key == key and entry.label and entry.direction in ("lower", "higher")
        assert format(1.5, entry.spec) and entry.fmt(1.5) and entry.fmt(None) == "n/a"
    assert [m.key for m in QUALITY] == [k for k, m in METRICS.items() if m.kind == "quality"]
    assert METRICS["psnr"].heading == "PSNR (dB)" and METRICS["fid"].heading == "FID"
    assert METRICS["psnr"].better(30.0, 29.0) and METRICS["fid"].better(29.0, 30.0)
    assert METRICS["fid"].clearly_better(29.0, 30.0) and not METRICS["fid"].clearly_better(29.995, 30.0)
    with pytest.raises(KeyError, match="'psnr_student' is not a metric alap knows"):
        metric("psnr_student")


def test_each_uncertainty_metric_qualifies_one_metric_and_shows_beside_it() -> None:
    qualified = {key: entry.key for entry in METRICS.values() for key in (*(entry.interval or ()), entry.spread) if key}
    uncertainty = {k for k, m in METRICS.items() if m.kind == "uncertainty"}
    fp32 = {"fid_ci_low", "fid_ci_high", "kid_std", "fid_ci_low_teacher", "fid_ci_high_teacher", "kid_std_teacher"}
    assert set(qualified) == uncertainty == fp32 | {f"int8.{key}" for key in fp32}
    for key, of in qualified.items():  # against the teacher or int8: both or neither; core alike
        assert key.endswith("_teacher") == of.endswith("_teacher") and METRICS[key].core == METRICS[of].core
        assert key.startswith("int8.") == of.startswith("int8.")
    int8_row = {"int8.fid": 122.44, "int8.fid_ci_low": 115.0, "int8.fid_ci_high": 130.21}
    assert METRICS["int8.fid"].shown(int8_row) == "122.4 [115.0, 130.2]" and METRICS["int8.fid"].label == "int8 FID"
    assert not any(m.kind == "uncertainty" for m in QUALITY)  # never ranked or plotted on their own

    row = {"fid": 122.44, "fid_ci_low": 115.0, "fid_ci_high": 130.21, "kid": 0.01234, "kid_std": 0.001}
    assert METRICS["fid"].shown(row) == "122.4 [115.0, 130.2]"
    assert METRICS["fid"].shown(row, ".0f") == "122 [115, 130]"
    assert METRICS["kid"].shown(row) == "0.0123 ± 0.0010"
    assert METRICS["fid"].shown({"fid": 122.44, "fid_ci_low": None}) == "122.4"  # files from before the interval
    assert METRICS["fid"].shown({"fid": float("nan")}) is None and METRICS["lpips"].shown({}) is None
    assert METRICS["fid"].shown_heading == "FID [95% CI]" and METRICS["kid"].shown_heading == "KID ± std"
    assert METRICS["psnr"].shown({"psnr": 27.0}) == "27.00" and METRICS["psnr"].shown_heading == "PSNR (dB)"
