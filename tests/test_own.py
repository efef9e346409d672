"""Compress the generator a user brings, on the data the user has: import@ in DVC, `alap compress`, and the
condense/distill steps working without a trained discriminator."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from reference_nets import reference
from tiny import ROOT, tiny_params, write_params

from alap.cli import main
from alap.config import Params
from alap.gan_aux import stage_aux
from alap.models import load_checkpoint
from alap.paths import TaskPaths
from alap.steps.condense import condense_task
from alap.steps.distill import distill_point
from alap.steps.prune import prune_point
from alap.steps.teacher import import_teacher
from alap.task import Task


def _image(path: Path, seed: int, size: int = 32) -> None:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC).save(path)


def paired_folder(root: Path, n_train: int = 8, n_test: int = 4) -> Path:
    """train/A, train/B, test/A, test/B: no val split, as many published datasets ship."""
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            _image(root / split / "A" / f"{i:03d}.png", 2 * i)
            _image(root / split / "B" / f"{i:03d}.png", 2 * i + 1)
    return root


def unpaired_folder(root: Path) -> Path:
    """CycleGAN as published: trainA/trainB/testA/testB."""
    for folder, count in (("trainA", 20), ("trainB", 20), ("testA", 4), ("testB", 4)):  # val: 2 carved of each
        for i in range(count):
            _image(root / folder / f"{folder}{i}.jpg", hash(folder) % 1000 + i)
    return root


def reference_file(path: Path, kind: str, norm: str, seed: int = 0, **depth) -> Path:
    """A generator as the reference code base saves it (bare state dict), with non-trivial weights."""
    torch.manual_seed(seed)
    net = reference(kind, norm, False, ngf=4, **depth)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def folder_params(root: Path, task: dict, name: str = "mine") -> Params:
    raw = tiny_params(root)
    raw["tasks"][name] = task
    raw["run_tasks"] = [name]
    raw["dvc"] = None
    return Params.model_validate(raw)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_imported_unpaired_teacher_condenses_and_distills_without_trained_discriminators(tmp_path, torch_home):
    data = unpaired_folder(tmp_path / "h2z")
    teacher_file = reference_file(tmp_path / "latest_net_G_A.pth", "resnet", "instance", n_blocks=2)
    task = {"source": "folder", "layout": "unpaired", "root": str(data), "teacher": {"checkpoint": str(teacher_file)}}
    params = folder_params(tmp_path, task)
    paths = TaskPaths("mine", models=tmp_path / "models", reports=tmp_path / "reports", state=tmp_path / "state")
    before = tree_digest(data)

    record = import_teacher(params, "mine", paths, torch_home)
    assert record["source_file"] == "latest_net_G_A.pth" and "psnr_test" not in record  # unpaired: no ground truth
    teacher, meta = load_checkpoint(paths.teacher, expect_task="mine")
    assert meta["role"] == "teacher"
    aux = stage_aux(Task.from_params(params, "mine"), params, {"norm": "instance"}, paths, torch.device("cpu"))
    assert set(aux) == {"D_A"}  # no reverse generator: the cycle term and D_B are off

    condense_task(params, "mine", paths, torch_home)
    # unpaired: the condensed network is the best validation FID from the end of the penalty's warm-up on
    selected = json.loads(paths.condense_report.read_text())["selected"]
    after_warmup = [fid for step, fid in selected["val_fids"] if step >= params.condense.warmup_steps]
    assert selected["val_fid"] == min(after_warmup) and selected["step"] >= params.condense.warmup_steps
    assert selected["val_fids"][0][0] == 0  # the teacher it starts from is scored too, never kept
    report = prune_point(params, "mine", 0.5, paths.point_dir(0.5), paths)
    assert report["sparsity"] == 0.5
    distill_point(params, "mine", 0.5, paths.point_dir(0.5), paths)
    assert (paths.point_dir(0.5) / "student.pt").is_file()
    assert tree_digest(data) == before, "the user's dataset was modified"

    # with the reverse generator the imported pair keeps the cycle term
    reverse_file = reference_file(tmp_path / "latest_net_G_B.pth", "resnet", "instance", n_blocks=2)
    task["teacher"]["reverse"] = str(reverse_file)
    params = folder_params(tmp_path, task)
    import_teacher(params, "mine", paths, torch_home)
    aux = stage_aux(Task.from_params(params, "mine"), params, {"norm": "instance"}, paths, torch.device("cpu"))
    assert set(aux) == {"G_B", "D_A", "D_B"}


def test_images_layout_condenses_against_the_teacher(tmp_path, caplog):
    for i in range(12):
        _image(tmp_path / "frames" / f"frame{i}.png", i)
    teacher_file = reference_file(tmp_path / "g.pth", "unet", "batch", num_downs=5)
    task = {
        "source": "folder",
        "layout": "images",
        "root": str(tmp_path / "frames"),
        "teacher": {"checkpoint": str(teacher_file), "dropout": False},
    }
    params = folder_params(tmp_path, task)
    paths = TaskPaths("mine", models=tmp_path / "models", reports=tmp_path / "reports", state=tmp_path / "state")
    import_teacher(params, "mine", paths)
    meta = condense_task(params, "mine", paths)
    assert meta["steps"] == params.condense.steps
    prune_point(params, "mine", 0.5, paths.point_dir(0.5), paths)
    report = distill_point(params, "mine", 0.5, paths.point_dir(0.5), paths)
    assert report["val_psnr_teacher"] is None and report["val_psnr_best"] > 0  # validated against the teacher

    with_gan = folder_params(tmp_path, task).model_copy(
        update={"distill": params.distill.model_copy(update={"lambda_gan": 1.0})}
    )
    with caplog.at_level(logging.INFO, logger="alap.steps.distill"):
        again = distill_point(with_gan, "mine", 0.5, paths.point_dir(0.5), paths)
    assert "the adversarial term (lambda_gan) does not apply" in caplog.text
    assert again["val_psnr_best"] == report["val_psnr_best"]  # the same distillation: no discriminator to add


def test_teacher_that_does_not_fit_the_task_is_refused(tmp_path):
    data = paired_folder(tmp_path / "pairs")
    teacher_file = reference_file(tmp_path / "g.pth", "unet", "batch", num_downs=6)  # needs 64-px images
    task = {"source": "folder", "layout": "paired", "root": str(data), "teacher": {"checkpoint": str(teacher_file)}}
    params = folder_params(tmp_path, task)
    paths = TaskPaths("mine", models=tmp_path / "models")
    with pytest.raises(ValueError, match=r"g\.pth: a unet generator of this depth needs image sides divisible by 64"):
        import_teacher(params, "mine", paths)
    assert not paths.teacher.exists()


DVC = str(Path(sys.executable).with_name("dvc"))


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.integration
def test_dvc_repro_imports_the_teacher_file_and_never_touches_the_dataset(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    for name in ["alap", "stages", "configs"]:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    paired_folder(repo / "data" / "mine")
    reference_file(repo / "teachers" / "latest_net_G.pth", "unet", "batch", num_downs=5)
    params = tiny_params(repo)
    params["tasks"]["mine"] = {
        "source": "folder",
        "layout": "paired",
        "root": "data/mine",
        "teacher": {"checkpoint": "teachers/latest_net_G.pth", "dropout": False},
    }
    params["run_tasks"] = ["mine"]
    params["dvc"] = {"generate": [], "train": [], "import": {"mine": "teachers/latest_net_G.pth"}}
    write_params(repo / "params.yaml", params)
    _run(["git", "init", "-q"], repo)
    _run([DVC, "init", "-q"], repo)
    before = tree_digest(repo / "data" / "mine")

    out = _run([DVC, "repro", "distill@mine-0.5"], repo)
    for stage in ["import@mine", "condense@mine", "prune@mine-0.5", "distill@mine-0.5"]:
        assert f"Running stage '{stage}'" in out
    assert "train@" not in out and "data@" not in out
    source = json.loads((repo / "models" / "mine" / "teacher_source.json").read_text())
    assert source["psnr_test"] is not None and source["source_file"] == "latest_net_G.pth"
    assert tree_digest(repo / "data" / "mine") == before, "dvc repro modified the user's dataset"
    assert "Running stage" not in _run([DVC, "repro", "distill@mine-0.5"], repo)

    reference_file(repo / "teachers" / "latest_net_G.pth", "unet", "batch", seed=1, num_downs=5)  # the user retrains
    assert "Running stage 'import@mine'" in _run([DVC, "repro", "import@mine"], repo)
    assert tree_digest(repo / "data" / "mine") == before


def test_dvc_roster_must_match_the_tasks(tmp_path):
    params = tiny_params(tmp_path)
    params["tasks"]["mine"] = {
        "source": "folder",
        "layout": "paired",
        "root": "data/mine",
        "teacher": {"checkpoint": "t.pth"},
    }
    params["run_tasks"] = ["seg2face", "mine"]
    with pytest.raises(
        ValueError,
        match=r"write dvc: \{generate: \['seg2face'\], train: \['seg2face'\], "
        r"import: \{'mine': 't.pth'\}\}",
    ):
        Params.model_validate(params)
    params["dvc"] = {"generate": ["seg2face"], "train": ["seg2face"], "import": {"mine": "t.pth"}}
    Params.model_validate(params)
    params["tasks"]["mine"]["root"] = "/datasets/mine"
    with pytest.raises(
        ValueError, match="tasks.mine.root is '/datasets/mine'; dvc.yaml reads a task's data from data/mine"
    ):
        Params.model_validate(params)


def tiny_run_flags(torch_home: Path) -> list[str]:
    """The `alap compress` flags that make an end-to-end run take seconds: 32 px, 2 steps a stage, batch 2."""
    flags = ["--load-size", "32", "--condense-steps", "2", "--distill-steps", "2", "--batch-size", "2"]
    return [*flags, "--no-dropout", "--torch-home", str(torch_home)]


def test_alap_compress_runs_every_step_resumes_and_refuses_other_settings(tmp_path, torch_home, capsys):
    data = paired_folder(tmp_path / "pairs")
    teacher_file = reference_file(tmp_path / "latest_net_G.pth", "unet", "batch", num_downs=5)
    out = tmp_path / "out"
    args = [
        "compress",
        str(teacher_file),
        "--data",
        str(data),
        "--out",
        str(out),
        "--macs-x",
        "2",
        *tiny_run_flags(torch_home),
    ]
    before = tree_digest(data)
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| teacher |" in table and "| s0.5 |" in table and "fewer MACs" in table
    results = json.loads((out / "results.json").read_text())
    teacher, student = results["rows"]
    assert teacher["gmacs"] / student["gmacs"] >= 2 * 0.95
    assert student["psnr_teacher"] > 0 and student["lpips_teacher"] >= 0 and student["fid"] >= 0
    assert any(k.startswith("latency.cpu-t1.onnxruntime") for k in student)
    assert (out / "reports" / "own" / "s0.5" / "model.onnx").is_file()
    assert tree_digest(data) == before

    assert main(args) == 0  # a rerun resumes: every step is done
    assert "| s0.5 |" in capsys.readouterr().out

    other = [a if a != "2" else "4" for a in args]  # --macs-x 4 into the same folder
    assert main(other) == 2
    assert "holds a run made with other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a, t: a.__setitem__(1, str(t / "nope.pth")), "nope.pth: no such file"),
        (lambda a, t: a.__setitem__(1, str(t)), "is a directory; expected a .pth file"),
        (lambda a, t: a.extend(["--sparsity", "1.0"]), "--sparsity 1.0: expected 0 <= S < 1"),
        (lambda a, t: a.extend(["--macs-x", "1"]), "--macs-x 1.0: expected a number > 1"),
        (lambda a, t: a.extend(["--sparsity", "0.5", "--crop-size", "64"]), "--crop-size 64: must not exceed"),
        (lambda a, t: a.extend(["--p50-ms", "5"]), "--p50-ms X and --latency-device D (e.g. cpu-t2) go together"),
        (lambda a, t: a.extend(["--p50-ms", "0", "--latency-device", "cpu-t1"]), "--p50-ms 0.0: expected a positive"),
        (lambda a, t: a.extend(["--p50-ms", "5", "--latency-device", "cpu"]), "--latency-device cpu: unknown device"),
        (lambda a, t: a.extend(["--sparsity", "0.5", "--latency-device", "cpu-t1"]), "go together"),
        (
            lambda a, t: a.extend(
                ["--p50-ms", "5", "--latency-device", "cuda0", "--latency-backend", "onnxruntime-int8"]
            ),
            "--latency-backend onnxruntime-int8: backend 'onnxruntime-int8' runs on the CPU",
        ),
    ],
)
def test_alap_compress_refuses_bad_flags_before_any_work(tmp_path, capsys, change, message):
    teacher_file = reference_file(tmp_path / "g.pth", "unet", "batch", num_downs=5)
    args = [
        "compress",
        str(teacher_file),
        "--data",
        str(paired_folder(tmp_path / "d")),
        "--out",
        str(tmp_path / "out"),
        "--load-size",
        "32",
    ]
    change(args, tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_alap_compress_refuses_an_out_folder_another_run_is_writing(tmp_path, capsys):
    from alap.lock import output_lock

    out = tmp_path / "out"
    args = ["compress", str(reference_file(tmp_path / "g.pth", "unet", "batch", num_downs=5))]
    args += ["--data", str(paired_folder(tmp_path / "d")), "--out", str(out), "--load-size", "32", "--macs-x", "2"]
    out.mkdir()
    with output_lock(out / ".state", out, "the first run"):  # another open file: flock refuses it as another process's
        assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: {out} is being written by another alap process (pid " in err
    assert not (out / "models").exists()


def test_compress_params_file_sections_are_used(tmp_path):
    from alap.compress_own import CompressRequest, build_params

    params_file = write_params(tmp_path / "params.yaml", tiny_params(tmp_path))
    req = CompressRequest(
        teacher=tmp_path / "g.pth",
        data=paired_folder(tmp_path / "d"),
        out=tmp_path / "o",
        sparsity=0.75,
        params=params_file,
        distill_steps=7,
    )
    params = build_params(req)
    assert (
        params.distill.steps == 7
        and params.condense.steps == yaml.safe_load(params_file.read_text())["condense"]["steps"]
    )
    assert params.sweep.sparsities == [0.75] and params.tasks["own"].layout == "paired"
    budget = dataclasses.replace(req, sparsity=None, p50_ms=20.0, latency_device="cpu-t1", latency_backend="torch")
    latency = build_params(budget).prune
    assert latency.target == "latency" and latency.sparsity is None and build_params(budget).sweep.sparsities == []
    assert (latency.latency.device, latency.latency.backend, latency.latency.p50_ms) == ("cpu-t1", "torch", 20.0)


def test_alap_compress_plans_a_student_for_a_latency_budget(tmp_path, torch_home, capsys):
    from alap.compress.params import LatencyTarget
    from alap.models import build_generator, default_arch
    from alap.paths import latency_point_name
    from alap.profile.candidates import CandidateTimer

    data = paired_folder(tmp_path / "pairs")
    teacher_file = reference_file(tmp_path / "latest_net_G.pth", "unet", "batch", num_downs=5)
    cache = tmp_path / "cache"
    teacher_arch = default_arch("unet", 3, 3, ngf=8, norm="batch", num_downs=5)
    timer = CandidateTimer(LatencyTarget(device="cpu-t1", p50_ms=1), (3, 32, 32), cache_dir=tmp_path / "probe")
    budget = timer.measure(build_generator(teacher_arch))["p50_ms"]  # the teacher's own p50: met whatever the noise
    args = [
        "compress",
        str(teacher_file),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--p50-ms",
        f"{budget:.4f}",
        "--latency-device",
        "cpu-t1",
        "--latency-cache",
        str(cache),
        *tiny_run_flags(torch_home),
    ]
    assert main(args) == 0
    point = latency_point_name("cpu-t1", float(f"{budget:.4f}"))
    assert f"| {point} |" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "models" / "own" / point / "prune_report.json").read_text())
    plan = report["latency"]
    assert report["target"] == "latency" and report["sparsity"] == report["macs_removed_fraction"]  # reached
    assert plan["p50_ms_planned"] <= plan["p50_ms_target"] == pytest.approx(budget, abs=1e-4)
    assert plan["p50_ms_student"] > 0 and isinstance(plan["student_within_budget"], bool)
    assert len(list(cache.glob("cpu-t1.onnxruntime.bs1.3x32x32.json"))) == 1
