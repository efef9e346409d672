"""`alap bench-latency` at toy size: every row measured once, an unreachable budget recorded, resume, report; a
trained student's int8 export scored beside its fp32 export."""

from __future__ import annotations

import json

import yaml
from tiny import tiny_params

from alap.bench.latency_params import LatencyBenchParams
from alap.bench.latency_report import build_latency_report
from alap.bench.paper_latency import int8_students, read_int8_students
from alap.cli import main
from alap.config import Params
from alap.models import build_generator, default_arch, save_checkpoint
from alap.steps.data import prepare_data


def _settings(tmp_path) -> dict:
    return {
        "image_size": 32,
        "teachers": {"unet": {"kind": "unet", "ngf": 4, "num_downs": 3, "norm": "batch"}},
        "devices": ["cpu-t1"],
        "backends": ["onnxruntime"],
        "throughput_batch": 2,
        "budgets_ms": [1000.0, 0.001],
        "teacher_fractions": [4.0],
        "plan_device": "cpu-t1",
        "condense_steps": 2,
        "round_to": [1, 4],
        "widths_macs_x": 1.25,
        "widths_rounds": 1,
        "condense_images": 2,
        "warmup": 0,
        "min_repeats": 2,
        "min_seconds": 0.0,
        "out_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "report": str(tmp_path / "reports" / "latency.md"),
        "plot": str(tmp_path / "reports" / "latency" / "plot.png"),
    }


def test_bench_latency_measures_each_row_once_and_reports(tmp_path) -> None:
    settings = tmp_path / "latency.yaml"
    settings.write_text(yaml.safe_dump(_settings(tmp_path)))
    assert main(["bench-latency", "--settings", str(settings)]) == 0
    rows = tmp_path / "out" / "unet"
    teacher = json.loads((rows / "teacher.json").read_text())
    met = json.loads((rows / "p50<=1000.0ms.json").read_text())
    unreachable = json.loads((rows / "p50<=0.001ms.json").read_text())
    assert {(r["device"], r["backend"], r["batch_size"]) for r in teacher["records"]} == {
        ("cpu-t1", "onnxruntime", 1),
        ("cpu-t1", "onnxruntime", 2),
    }
    assert met["plan"]["candidates_timed"] == 1 and met["gmacs"] == teacher["gmacs"]  # the teacher meets 1 s
    assert "below the smallest reachable student" in unreachable["unreachable"]
    report = (tmp_path / "reports" / "latency.md").read_text()
    relative = json.loads((rows / "p50<=4.0xteacher.json").read_text())
    assert relative["budget_ms"] == round(4 * teacher["records"][0]["p50_ms"], 3) and "| p50<=4.0xteacher |" in report
    assert "| teacher |" in report and "| p50<=1000.0ms |" in report and "unreachable" in report
    assert (tmp_path / "reports" / "latency" / "plot.png").stat().st_size > 0
    int8 = json.loads((rows / "teacher.int8.json").read_text())
    assert int8["records"][0]["device"] == "cpu-t1" and int8["psnr_vs_fp32"] > 20  # quantization stays close
    assert "fp32 -> int8" in report
    assert (rows / "p50<=1000.0ms.pt").is_file() and not (rows / "p50<=0.001ms.int8.json").exists()
    widths = json.loads((rows / "widths.json").read_text())
    assert [w["round_to"] for w in widths] == [1, 4] and all(w["p50_ms"]["cpu-t1"] > 0 for w in widths)
    assert all(w % 4 == 0 for w in widths[1]["widths"]["up"]) and "| multiples of 4 |" in report
    assert max(w["gmacs"] for w in widths) <= teacher["gmacs"] / 1.25 * 1.0001  # both at 1.25x fewer MACs

    stamps = {p.name: p.stat().st_mtime_ns for p in rows.glob("*.json")}
    assert main(["bench-latency", "--settings", str(settings)]) == 0  # resumes: every row is on disk
    assert {p.name: p.stat().st_mtime_ns for p in rows.glob("*.json")} == stamps


def test_bench_latency_refuses_an_unknown_teacher(tmp_path, capsys) -> None:
    settings = tmp_path / "latency.yaml"
    settings.write_text(yaml.safe_dump(_settings(tmp_path)))
    assert main(["bench-latency", "--settings", str(settings), "--teacher", "vgg"]) == 2
    assert "--teacher ['vgg']: not in the settings' teachers ['unet']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_int8_students_beside_fp32_on_the_test_split(tmp_path, torch_home) -> None:
    """A pipeline student's fp32 and int8 exports scored on its task's test images (FID/KID against the real
    targets, LPIPS/PSNR against the ground truth and int8 against fp32) and timed, once; then in the report."""
    pipeline = Params.model_validate(tiny_params(tmp_path))
    prepare_data(pipeline, "seg2face")
    arch = default_arch("unet", 8, 3, ngf=4, num_downs=5)
    save_checkpoint(
        tmp_path / "models" / "seg2face" / "s0.5" / "student.pt", build_generator(arch), arch, {"task": "seg2face"}
    )
    settings = LatencyBenchParams.model_validate(
        {**_settings(tmp_path), "int8_students": [{"task": "seg2face", "model": "s0.5"}], "int8_calibration_images": 2}
    )
    [row] = int8_students(settings, pipeline, torch_home, tmp_path / "models")
    assert row["images"] == pipeline.data.n_test and row["calibration_images"] == 2
    for precision in ("fp32", "int8"):
        assert row[precision]["fid"] >= 0 and 0 <= row[precision]["lpips"] and row[precision]["p50_ms"]["cpu-t1"] > 0
    assert 0 <= row["lpips_vs_fp32"] < row["fp32"]["lpips"] + 1 and row["psnr_vs_fp32"] > 10
    stored = tmp_path / "out" / "int8_students" / "seg2face-s0.5.json"
    stamp = stored.stat().st_mtime_ns
    assert int8_students(settings, pipeline, torch_home, tmp_path / "models") == [row]  # measured once
    assert stored.stat().st_mtime_ns == stamp
    report = build_latency_report({}, settings, [], None, read_int8_students(settings))
    assert "## int8 on trained students" in report
    assert "| seg2face/s0.5 | fp32 |" in report and "| seg2face/s0.5 | int8 |" in report
