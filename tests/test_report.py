"""Report: summary CSV/markdown, Pareto plots and data, HTML, built from synthetic per-model JSON files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alap.metrics.names import METRICS, QUALITY, LatencyKey
from alap.report.build import build_report
from alap.report.headline import WIDTH, headline_rows, render
from alap.report.plots import PLOTTED, gmacs_figure, pareto_mask
from alap.report.tables import load_task, summary_frame

DEVICES = (("cpu-t1", "torch"), ("cpu-t1", "onnxruntime"), ("cpu-t2", "torch"))
# model -> (sparsity, gmacs, fid, teacher p50 factor); latency scales with gmacs so the arithmetic is checkable.
MODELS = {
    "teacher": (None, 2.0, 30.0, 1.0),
    "condensed": (None, 2.0, 31.0, 1.0),
    "s0.90": (0.9, 0.08, 45.0, 0.1),
    "s0.50": (0.5, 0.5, 32.0, 0.4),
    "s0.75": (0.75, 0.25, 33.0, 0.25),
}
NO_LATENCY = {"condensed"}
GATE = LatencyKey("cpu-t1", "onnxruntime")  # the device promotion gates on: the headline's p50 and speed-up


def _metrics(task: str, model: str, paired: bool) -> dict:
    sparsity, gmacs, fid, _ = MODELS[model]
    return {
        "task": task,
        "model": model,
        "sparsity": sparsity,
        "fid": fid + (0 if paired else 10),
        "fid_ci_low": fid + (0 if paired else 10) - 4,
        "fid_ci_high": fid + (0 if paired else 10) + 5,
        "kid": fid / 1000,
        "kid_std": fid / 10000,
        "lpips": (fid / 100) if paired else None,
        "lpips_teacher": None if model == "teacher" else fid / 200,
        "psnr": (50 - fid / 2) if paired else None,
        "ssim": (1 - fid / 100) if paired else None,
        "gmacs": gmacs,
        "params_m": gmacs * 3,
        "measured_on": {"image_size": 32, "samples": 20, "weights": {"fid": "pt_inception-2015-12-05"}},
    }


def _latency(model: str, base_ms: float) -> dict:
    factor = MODELS[model][3]
    # profile_model names the field achieved_fraction; the report brief names it achieved_fraction_of_peak.
    fraction_field = "achieved_fraction" if model == "s0.90" else "achieved_fraction_of_peak"
    flat, records = {}, []
    for i, (device, backend) in enumerate(DEVICES):
        p50 = base_ms * (i + 1) * factor
        flat[f"latency.{device}.{backend}.bs1.p50_ms"] = p50
        flat[f"latency.{device}.{backend}.bs1.p90_ms"] = p50 * 1.2
        records.append(
            {
                "device": device,
                "backend": backend,
                "batch_size": 1,
                "p50_ms": p50,
                "p90_ms": p50 * 1.2,
                "images_per_s": 1000 / p50,
                "peak_mem_mb": 10.0,
                fraction_field: 0.125 * (i + 1),
                "gflops_achieved": 1.0,
            }
        )
    return {
        **flat,
        "records": records,
        "peak_gflops": {f"{d}.{b}": 100.0 for d, b in DEVICES},
        "skipped": {"cuda0": "no CUDA device"},
        "model": model,
    }


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _grid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 4), (10, 20, 30)).save(path)


def _make_reports(root: Path) -> Path:
    """Two tasks x five models; condensed has no latency, one grid is missing in the second task."""
    for task, paired, base_ms in (("seg2face", True, 20.0), ("horse2zebra", False, 40.0)):
        for model in MODELS:
            model_dir = root / task / model
            _write(model_dir / "metrics.json", _metrics(task, model, paired))
            if model not in NO_LATENCY:
                _write(model_dir / "latency.json", _latency(model, base_ms))
            if not (task == "horse2zebra" and model == "s0.75"):
                _grid(model_dir / "grid.png")
    return root


@pytest.fixture()
def reports(tmp_path: Path) -> Path:
    """Fresh inputs for tests that change them."""
    return _make_reports(tmp_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """One full build shared by the tests that only read its outputs (rendering plots is the slow part)."""
    root = _make_reports(tmp_path_factory.mktemp("reports"))
    return root, build_report(root, ["seg2face", "horse2zebra"], GATE)


def test_summary_csv_columns_rows_and_ratios(built: tuple[Path, dict[str, Path]]) -> None:
    _, written = built
    frame = pd.read_csv(written["summary_csv"], keep_default_na=False, na_values=[""])
    latency = sorted(f"latency.{d}.{b}.bs1.{s}" for d, b in DEVICES for s in ("p50_ms", "p90_ms"))
    speedup = sorted(f"speedup.{d}.{b}.bs1" for d, b in DEVICES)
    assert list(frame.columns) == [
        "task",
        "model",
        "sparsity",
        "fid",
        "fid_ci_low",
        "fid_ci_high",
        "kid",
        "kid_std",
        "lpips",
        "lpips_teacher",
        "psnr",
        "ssim",
        "gmacs",
        "params_m",
        *latency,
        *speedup,
        "macs_reduction",
    ]
    order = ["teacher", "condensed", "s0.50", "s0.75", "s0.90"]
    assert list(frame["task"]) == ["seg2face"] * 5 + ["horse2zebra"] * 5
    assert list(frame["model"]) == order * 2

    row = frame.set_index(["task", "model"])
    for task in ("seg2face", "horse2zebra"):
        for model in order:
            _, gmacs, _, factor = MODELS[model]
            assert row.loc[(task, model), "macs_reduction"] == pytest.approx(2.0 / gmacs)
            for d, b in DEVICES:
                value = row.loc[(task, model), f"speedup.{d}.{b}.bs1"]
                if model in NO_LATENCY:
                    assert math.isnan(value) and math.isnan(row.loc[(task, model), f"latency.{d}.{b}.bs1.p50_ms"])
                else:
                    assert value == pytest.approx(1.0 / factor)
    assert math.isnan(row.loc[("seg2face", "teacher"), "sparsity"])
    assert row.loc[("seg2face", "s0.75"), "sparsity"] == 0.75
    assert math.isnan(row.loc[("horse2zebra", "s0.50"), "psnr"])  # null in the file stays empty
    assert row.loc[("horse2zebra", "s0.50"), "fid"] == 42.0
    assert (
        row.loc[("horse2zebra", "s0.50"), "fid_ci_high"] == 47.0 and row.loc[("seg2face", "s0.90"), "kid_std"] == 0.0045
    )


def test_markdown_contains_the_numbers(built: tuple[Path, dict[str, Path]]) -> None:
    md = built[1]["summary_md"].read_text()
    assert "## seg2face" in md and "## horse2zebra" in md
    s090 = next(line for line in md.splitlines() if line.startswith("| s0.90"))
    # gmacs, x fewer MACs, FID with its interval, KID with its std, cpu-t1/torch p50 (20 ms * 0.1) and cpu-t2/torch
    # p50, speed-ups, fractions of peak.
    shown = ("0.08", "25.00", "| 45.0 [41.0, 50.0] |", "| 0.0450 ± 0.0045 |", "2.00 ms · 10.00× · 12.5% of peak")
    for text in (*shown, "6.00 ms · 10.00× · 37.5% of peak"):
        assert text in s090, (text, s090)
    condensed = next(line for line in md.splitlines() if line.startswith("| condensed"))
    assert "ms" not in condensed and "—" in condensed
    assert "No latency.json for: condensed." in md
    assert "Quality measured on 20 samples at 32 px." in md
    assert "Metric weights: fid `pt_inception-2015-12-05`; full provenance in each metrics.json." in md
    assert "Not profiled: cuda0 (no CUDA device)." in md


def test_plots_and_pareto_data(built: tuple[Path, dict[str, Path]]) -> None:
    reports, written = built
    for task in ("seg2face", "horse2zebra"):
        for kind in ("latency", "gmacs"):
            path = written[f"{task}_pareto_{kind}"]
            assert path == reports / "plots" / f"{task}_pareto_{kind}.png"
            with Image.open(path) as image:
                image.verify()
                assert image.format == "PNG" and image.size[0] > 300
        data = pd.read_csv(written[f"{task}_pareto_csv"])
        assert list(data["model"]) == ["teacher", "condensed", "s0.50", "s0.75", "s0.90"]
        assert data["latency_key"].dropna().unique().tolist() == ["latency.cpu-t1.onnxruntime.bs1.p50_ms"]
        # FID rises as MACs fall, so every model is on the gmacs front except condensed (teacher's cost, worse FID).
        assert data["pareto_gmacs_fid"].tolist() == [True, False, True, True, True]
        assert data["pareto_latency_fid"].tolist() == [True, False, True, True, True]
    assert not list(reports.glob("**/.*.tmp")), "atomic writes left temporary files"


def test_html_references_every_grid_and_plot(built: tuple[Path, dict[str, Path]]) -> None:
    html = built[1]["index_html"].read_text()
    for task in ("seg2face", "horse2zebra"):
        for model in MODELS:
            if task == "horse2zebra" and model == "s0.75":
                continue
            assert f'src="{task}/{model}/grid.png"' in html
        assert f'src="plots/{task}_pareto_latency.png"' in html and f'src="plots/{task}_pareto_gmacs.png"' in html
    assert "horse2zebra/s0.75/grid.png" not in html and "no image grid" in html
    assert "2.00 ms · 10.00× · 12.5% of peak" in html


def _panel_labels(task: str, reports: Path) -> list[str]:
    frame = summary_frame({task: load_task(reports, task)})
    return [ax.get_ylabel() for ax in gmacs_figure(task, frame).axes if ax.get_ylabel()]


def test_headers_and_plot_labels_come_from_the_metric_registry(built: tuple[Path, dict[str, Path]]) -> None:
    reports, written = built
    md = written["summary_md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    metrics = [
        METRICS["gmacs"].heading,
        "× fewer MACs",
        METRICS["params_m"].heading,
        *(m.shown_heading for m in QUALITY if m.core),
    ]
    assert "FID [95% CI]" in metrics and "KID ± std" in metrics and "PSNR (dB)" in metrics
    assert header.startswith("| " + " | ".join(["model", "sparsity", *metrics]) + " | cpu-t1/onnxruntime bs1")
    plotted = [m for m in PLOTTED if m.core]  # the files have no teacher-referenced FID
    assert _panel_labels("seg2face", reports) == [f"{m.heading}, {m.direction} is better" for m in plotted]


def test_rows_without_fid_get_the_teacher_referenced_columns(reports: Path) -> None:
    """A task of input images alone (layout images) has FID and KID against the teacher's outputs, no fid."""
    for path in (reports / "seg2face").glob("*/metrics.json"):
        data = json.loads(path.read_text())
        data.update(
            fid_teacher=data.pop("fid") - 30,
            fid_ci_low_teacher=data.pop("fid_ci_low") - 30,
            fid_ci_high_teacher=data.pop("fid_ci_high") - 30,
            kid_teacher=data.pop("kid"),
            kid_std_teacher=data.pop("kid_std"),
            psnr_teacher=40.0,
            lpips=None,
            psnr=None,
            ssim=None,
        )
        path.write_text(json.dumps(data))
    written = build_report(reports, ["seg2face"], GATE)
    frame = pd.read_csv(written["summary_csv"])
    assert list(frame.columns[3:18]) == [
        "fid",
        "fid_ci_low",
        "fid_ci_high",
        "fid_teacher",
        "fid_ci_low_teacher",
        "fid_ci_high_teacher",
        "kid",
        "kid_std",
        "kid_teacher",
        "kid_std_teacher",
        "lpips",
        "lpips_teacher",
        "psnr",
        "psnr_teacher",
        "ssim",
    ]
    assert frame["fid"].isna().all() and frame["fid_teacher"].tolist() == [0.0, 1.0, 2.0, 3.0, 15.0]
    md = written["summary_md"].read_text()
    assert "| FID [95% CI] | FID to teacher [95% CI] | KID ± std | KID to teacher ± std |" in md
    assert "| PSNR (dB) | PSNR to teacher (dB) |" in md
    assert "| s0.90 | 0.90 | 0.0800 | 25.00 | 0.240 | — | 15.0 [11.0, 20.0] | — | 0.0450 ± 0.0045 |" in md
    assert _panel_labels("seg2face", reports) == [
        "FID to teacher, lower is better",
        "LPIPS to teacher, lower is better",
    ]


def test_task_without_any_latency_still_builds(reports: Path) -> None:
    for path in (reports / "horse2zebra").glob("*/latency.json"):
        path.unlink()
    written = build_report(reports, ["horse2zebra"], GATE)
    frame = pd.read_csv(written["summary_csv"])
    assert not any(c.startswith(("latency.", "speedup.")) for c in frame.columns)
    with Image.open(written["horse2zebra_pareto_latency"]) as image:
        assert image.format == "PNG"
    assert pd.read_csv(written["horse2zebra_pareto_csv"])["p50_ms"].isna().all()


def test_task_without_metrics_names_the_missing_file(reports: Path) -> None:
    for path in (reports / "horse2zebra").glob("*/metrics.json"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"horse2zebra/teacher/metrics\.json"):
        build_report(reports, ["seg2face", "horse2zebra"], GATE)
    assert not (reports / "summary.csv").exists(), "nothing may be written when an input is missing"
    with pytest.raises(FileNotFoundError, match=r"nowhere/teacher/metrics\.json"):
        load_task(reports, "nowhere")


def test_missing_teacher_leaves_ratios_empty(reports: Path) -> None:
    (reports / "seg2face" / "teacher" / "metrics.json").unlink()
    (reports / "seg2face" / "teacher" / "latency.json").unlink()
    written = build_report(reports, ["seg2face"], GATE)
    frame = pd.read_csv(written["summary_csv"])
    assert "teacher" not in set(frame["model"])
    assert frame["macs_reduction"].isna().all() and frame.filter(like="speedup.").isna().all().all()
    assert "No teacher metrics" in written["summary_md"].read_text()


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("metrics.json", "{not json", "not valid JSON"),
        ("metrics.json", json.dumps({"task": "seg2face", "model": "s0.90", "fid": "bad"}), "'fid' must be a number"),
        ("metrics.json", json.dumps({"task": "other", "model": "s0.90"}), "field 'task' must be 'seg2face'"),
        ("latency.json", json.dumps({"latency.cpu.torch.p50_ms": 3.0}), "is not latency.<device>"),
        ("latency.json", json.dumps({"latency.cpu-t1.torch.bs1.p50_ms": -1}), "positive number"),
        ("latency.json", json.dumps({"model": "s0.50"}), "field 'model' must be 's0.90'"),
    ],
)
def test_malformed_input_names_the_file(reports: Path, file: str, content: str, message: str) -> None:
    path = reports / "seg2face" / "s0.90" / file
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        build_report(reports, ["seg2face"], GATE)
    assert str(path) in str(err.value)


def test_bad_task_list() -> None:
    with pytest.raises(ValueError, match="distinct task names"):
        build_report(Path("."), ["a", "a"], GATE)


def test_pareto_mask_directions() -> None:
    cost = [1.0, 2.0, 3.0, 2.0, math.nan]
    assert pareto_mask(cost, [5.0, 4.0, 1.0, 6.0, 0.0], lower_is_better=True) == [True, True, True, False, False]
    assert pareto_mask(cost, [5.0, 4.0, 1.0, 6.0, 9.0], lower_is_better=False) == [True, False, False, True, False]


def test_weights_note_is_short_for_full_provenance_records() -> None:
    from alap.report.tables import _weights_note

    records = {
        "lpips": {"metric": "lpips-alex", "sha256": "cf1ac3496b80dc53" * 4, "trunk": {"file": "a.pth"}},
        "fid": {"file": "pt_inception.pth", "sha256": "c7f5eed04665aceff" * 4, "source": {"package": "x"}},
    }
    assert _weights_note(records) == (
        "fid `pt_inception.pth` (sha256 c7f5eed04665…), lpips `lpips-alex` (sha256 cf1ac3496b80…)"
    )


def test_cost_notes_give_teacher_quality_and_compression_time(reports: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    _write(
        models / "seg2face" / "train_metrics.json",
        {"steps": 800, "wall_s": 200.0, "psnr_test": 29.5, "psnr_mean_image": 15.0},
    )
    _write(reports / "seg2face" / "condense" / "condense.json", {"wall_s": 40.0})
    for point, distill_s in (("s0.50", 50.0), ("s0.75", 60.0), ("s0.90", 70.0)):
        _write(models / "seg2face" / point / "prune_report.json", {"wall_s": 10.0})
        _write(models / "seg2face" / point / "distill_report.json", {"wall_s": distill_s})
    (models / "seg2face" / "s0.90" / "distill_report.json").unlink()  # an unfinished point is marked, not hidden
    md = build_report(reports, ["seg2face", "horse2zebra"], GATE, models)["summary_md"].read_text()
    assert "Teacher: 800 steps in 200 s; test PSNR 29.50 dB vs 15.00 dB for the mean training image (+14.50 dB)." in md
    assert (
        "Compression time vs teacher training (condense once, then prune + distill per student): "
        "s0.50 0.50x (100 s), s0.75 0.55x (110 s), s0.90 ?."
    ) in md
    assert f"No {models / 'horse2zebra' / 'train_metrics.json'}: the teacher's training time" in md
    _write(models / "horse2zebra" / "train_metrics.json", ["not", "an", "object"])
    with pytest.raises(ValueError, match="horse2zebra/train_metrics.json: expected a JSON object"):
        build_report(reports, ["seg2face", "horse2zebra"], GATE, models)


def test_teacher_note_of_an_unpaired_task_gives_the_identity_fid(tmp_path: Path) -> None:
    """A CycleGAN teacher is judged by its FID against the untranslated inputs' (train_metrics.json's fid_identity)."""
    from alap.paths import TaskPaths
    from alap.report.costs import teacher_note

    paths = TaskPaths("horse2zebra", models=tmp_path / "models", reports=tmp_path / "reports")
    _write(paths.train_metrics, {"steps": 2400, "wall_s": 600.0, "fid_identity": 437.44})
    assert teacher_note(paths) == "Teacher: 2400 steps in 600 s; FID ? vs 437.44 for the untranslated test inputs."
    _write(paths.report_dir / "teacher" / "metrics.json", {"fid": 201.5})
    assert teacher_note(paths).endswith("; FID 201.50 vs 437.44 for the untranslated test inputs.")


def test_cost_notes_of_an_imported_teacher(tmp_path: Path) -> None:
    """An imported teacher was not trained here: the notes name its file and give compression times in seconds."""
    from alap.paths import TaskPaths
    from alap.report.costs import compression_note, teacher_note
    from alap.report.tables import ModelReport

    paths = TaskPaths("own", models=tmp_path / "models", reports=tmp_path / "reports")
    assert "the teacher's training time and quality are unknown" in teacher_note(paths)
    paths.model_dir.mkdir(parents=True)
    source = {"source_file": "latest_net_G.pth", "source_sha256": "ab" * 32, "psnr_test": 20.0, "psnr_mean_image": 12.5}
    paths.teacher_source.write_text(json.dumps(source))
    note = teacher_note(paths)
    assert note.startswith("Teacher: imported from latest_net_G.pth (sha256 abababababab…)")
    assert note.endswith("; test PSNR 20.00 dB vs 12.50 dB for the mean training image (+7.50 dB).")
    paths.condense_report.parent.mkdir(parents=True)
    paths.condense_report.write_text(json.dumps({"wall_s": 100.0}))
    (paths.model_dir / "s0.5").mkdir()
    for name, wall in (("prune_report.json", 5.0), ("distill_report.json", 60.0)):
        (paths.model_dir / "s0.5" / name).write_text(json.dumps({"wall_s": wall}))
    reports = [ModelReport("own", "s0.5", paths.model_dir / "s0.5", None, None)]
    assert compression_note(paths, reports) == (
        "Compression time (condense once, then prune + distill per student): s0.5 165 s."
    )


def test_headline_metrics_are_a_few_numbers_per_model_on_the_gate_device(built):
    root, written = built
    headline = json.loads((root / "headline" / "seg2face" / "s0.75.json").read_text())
    teacher_p50 = 20.0 * 2  # cpu-t1/onnxruntime is the second device: base_ms * 2
    assert headline == {
        "fid": 33.0,
        "fid_ci_low": 29.0,
        "fid_ci_high": 38.0,
        "lpips_teacher": pytest.approx(33.0 / 200),
        "macs_x": pytest.approx(2.0 / 0.25),
        "p50_ms": pytest.approx(teacher_p50 * 0.25),
        "psnr": pytest.approx(50 - 33.0 / 2),
        "speedup": pytest.approx(4.0),
    }
    condensed = json.loads((root / "headline" / "seg2face" / "condensed.json").read_text())
    assert condensed["p50_ms"] is None and condensed["speedup"] is None  # never profiled: null, not a guess
    assert sorted(p.name for p in (root / "headline" / "horse2zebra").iterdir()) == sorted(f"{m}.json" for m in MODELS)
    assert all(path.is_file() for name, path in written.items() if name.startswith("headline:"))


def test_terminal_summary_fits_100_columns_and_marks_the_champion(built):
    root, _ = built
    frame = pd.read_csv(root / "summary.csv")
    text = render(headline_rows(frame, GATE), GATE, {"seg2face": "s0.75", "horse2zebra": None})
    lines = text.splitlines()
    assert max(map(len, lines)) <= WIDTH
    assert any(line.startswith("s0.75") and line.endswith("← champion") for line in lines)
    assert "horse2zebra: p50 on cpu-t1/onnxruntime, batch 1; no student passes the promotion gates" in lines
    teacher = next(line for line in lines if line.startswith("teacher"))
    assert "40" in teacher and "1.00" in teacher  # p50 40 ms, speed-up 1.00
    assert "30 [26, 35]" in teacher  # FID with its interval, to the unit
    # a champion that an earlier run registered is named as such, not as "no student passes"
    text = render(headline_rows(frame, GATE), GATE, {"seg2face": "s0.75", "horse2zebra": None}, {"horse2zebra": 3})
    assert "horse2zebra: p50 on cpu-t1/onnxruntime, batch 1; champion: registry version 3, from an earlier run" in (
        text.splitlines()
    )


def test_terminal_summary_of_three_digit_fids_and_long_point_names_fits_100_columns():
    """The widest values of the demo (FIDs over 100, a latency point's name) still leave room for the champion."""
    row = {
        "task": "seg2face",
        "model": "cpu-t2-33ms",
        "macs_x": 128.5,
        "psnr": 27.25,
        "fid": 131.17,
        "fid_ci_low": 124.3,
        "fid_ci_high": 139.92,
        "lpips_teacher": 0.0071,
        "p50_ms": 0.308,
        "speedup": 15.04,
    }
    text = render([row], GATE, {"seg2face": "cpu-t2-33ms"})
    line = next(line for line in text.splitlines() if line.startswith("cpu-t2-33ms"))
    assert line.endswith("← champion") and len(line) <= WIDTH and "131 [124, 140]" in line


def test_image_grid_columns_are_labelled(tmp_path: Path):
    import torch

    from alap.report.grid import save_grid

    columns = [torch.full((2, 3, 64, 64), value) for value in (-1.0, 0.0, 1.0)]
    save_grid(columns, ["input", "teacher", "s0.9"], tmp_path / "grid.png")
    image = np.asarray(Image.open(tmp_path / "grid.png").convert("L"))
    header = image[: image.shape[0] - 2 * 66 - 2]  # above two 64-pixel rows with 2-pixel padding
    assert header.shape[0] >= 11
    for col in range(3):  # dark label pixels above every column, on the white header
        assert (header[:, 2 + col * 66 : 66 + col * 66] < 128).any()
    with pytest.raises(ValueError, match="3 grid columns need as many labels"):
        save_grid(columns, ["input"], tmp_path / "bad.png")
