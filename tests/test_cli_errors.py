"""Bad input to every `alap` verb is refused before any work: exit status 2, one line on stderr that names the
flag or file, no traceback, nothing written. Bugs keep their traceback (alap/errors.py has the rule)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import ROOT, tiny_params, write_params

from alap import cli
from alap.errors import UserError, is_user_error
from alap.models import build_generator, default_arch, save_checkpoint

ALAP = Path(sys.executable).parent / "alap"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Every good and bad file the cases use, made once: checkpoints of seg2face (8 class ids -> RGB U-Net) and
    of another task, a bare state dict, and files that are no checkpoint at all."""
    d = tmp_path_factory.mktemp("files")
    arch = default_arch("unet", 8, 3, ngf=4, num_downs=5)
    model = build_generator(arch)
    save_checkpoint(d / "seg2face.pt", model, arch, {"task": "seg2face"})
    save_checkpoint(d / "face2cartoon.pt", model, arch, {"task": "face2cartoon"})
    torch.save(model.state_dict(), d / "state_dict.pth")
    torch.save({"weights": model.state_dict(), "made_in": Path("x")}, d / "pickled.pth")
    whole = (d / "seg2face.pt").read_bytes()
    (d / "truncated.pth").write_bytes(whole[: len(whole) // 2])
    (d / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "empty.pth").write_bytes(b"")
    (d / "notes.txt").write_text("not weights\n")
    (d / "text.pth").symlink_to(d / "notes.txt")
    return d


@pytest.fixture
def project(tmp_path, files, monkeypatch) -> Path:
    """A project as the working directory: tiny params, configs/demo.yaml, the seg2face teacher and condensed
    network, a plain file ``afile`` and an empty folder ``adir``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALAP_S3_BUCKET", raising=False)
    write_params(tmp_path / "params.yaml", tiny_params(tmp_path))
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "demo.yaml", tmp_path / "configs")
    models = tmp_path / "models" / "seg2face"
    models.mkdir(parents=True)
    for name in ("teacher.pt", "condensed.pt"):
        shutil.copy(files / "seg2face.pt", models / name)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    return tmp_path


def put(source: str | None, target: str = "models/seg2face/condensed.pt"):
    """Set-up: ``files/source`` at ``target`` (a link stays a link); None: nothing there; "dir": a folder."""

    def setup(project: Path, files: Path) -> None:
        path = project / target
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        if source == "dir":
            path.mkdir()
        elif source is not None:
            shutil.copy(files / source, path, follow_symlinks=False)

    return setup


def params(edit):
    """Set-up: params.yaml as ``edit(params, files)`` leaves the tiny params."""

    def setup(project: Path, files: Path) -> None:
        p = tiny_params(project)
        edit(p, files)
        write_params(project / "params.yaml", p)

    return setup


def teacher_file(name: str, task: str = "seg2face"):
    """Params in which ``task`` imports ``files/name`` as its teacher."""

    def edit(p: dict, files: Path) -> None:
        p["tasks"][task].pop("arch")
        p["tasks"][task]["teacher"] = {"checkpoint": str(files / name), "dropout": False}
        p.pop("dvc")

    return params(edit)


def setting(*keys_value):
    """Params with the key path ``keys_value[:-1]`` set to ``keys_value[-1]``."""

    def edit(p: dict, files: Path) -> None:
        *keys, value = keys_value
        node = p
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return params(edit)


def _paired(p: dict, files: Path) -> None:
    """seg2face as a paired folder task: its 8-channel U-Net no longer fits (3 -> 3 channels)."""
    p["tasks"]["seg2face"] = {"source": "folder", "layout": "paired", "root": "data/seg2face", "arch": "unet"}
    p["dvc"]["generate"] = []


RESNET = setting("tasks", "seg2face", "arch", "resnet")
PAIRED = params(_paired)
SIZE_48 = setting("tasks", "seg2face", "load_size", 48)
PRUNE = ["prune", "--task", "seg2face", "--sparsity", "0.5"]
IMPORT = ["import-generator", "{files}/state_dict.pth", "out.pt", "--task", "t"]
COMPRESS = ["compress", "{files}/state_dict.pth", "--data", "adir", "--out", "out", "--sparsity", "0.5"]

# (argv, what the one line must name, set-up); {files} is the folder of the `files` fixture
CASES = [
    # flags and the CLI itself
    ([], "required: verb", None),
    (["nosuch"], "invalid choice: 'nosuch'", None),
    (["--quiet", "--verbose", "data", "--task", "seg2face"], "not allowed with argument --quiet", None),
    # params files
    (["--params", "nope.yaml", "data", "--task", "seg2face"], "nope.yaml: params file not found", None),
    (["--params", "adir", "data", "--task", "seg2face"], "adir: is a directory", None),
    (["--params", "{files}/random.pth", "data", "--task", "seg2face"], "random.pth: not a text file", None),
    (
        ["data", "--task", "seg2face"],
        "model.unet.ngf: Input should be greater than 0 (got -1)",
        setting("model", "unet", "ngf", -1),
    ),
    (["data", "--task", "nosuch"], "unknown task 'nosuch'", None),
    (["use-profile", "nope"], "no profile 'nope'", None),
    (["--params", "adir", "use-profile", "demo"], "adir: is a directory", None),
    (["--params", "afile/params.yaml", "use-profile", "demo"], "afile is a file", None),
    # teacher training and import
    (["train"], "required: --task", None),
    (
        ["train", "--task", "seg2face"],
        "models/seg2face: cannot be written: models is a file",
        put("notes.txt", "models"),
    ),
    (["import-teacher", "--task", "seg2face"], "tasks.seg2face names no teacher file", None),
    (["import-teacher", "--task", "seg2face"], "random.pth: is not a PyTorch file", teacher_file("random.pth")),
    (["import-teacher", "--task", "seg2face"], "pickled.pth: holds Python objects", teacher_file("pickled.pth")),
    (
        ["import-teacher", "--task", "face2cartoon"],
        "state_dict.pth: the generator maps 8 to 3 channels, but tasks.face2cartoon.layout 'paired' needs 3 to 3",
        teacher_file("state_dict.pth", "face2cartoon"),
    ),
    # condense, prune, distill: checkpoints of every kind of wrong
    (
        ["condense", "--task", "seg2face"],
        "models/seg2face/teacher.pt: no such file",
        put(None, "models/seg2face/teacher.pt"),
    ),
    (
        ["condense", "--task", "seg2face"],
        "teacher.pt: is truncated",
        put("truncated.pth", "models/seg2face/teacher.pt"),
    ),
    (
        ["condense", "--task", "seg2face"],
        "teacher.pt: holds a unet generator, but tasks.seg2face.arch is 'resnet'",
        RESNET,
    ),
    (
        ["condense", "--task", "seg2face"],
        "reports/seg2face: cannot be written: reports is a file",
        put("notes.txt", "reports"),
    ),
    (
        ["prune", "--task", "seg2face", "--sparsity", "1.0"],
        "--sparsity: 1.0 is out of range, expected 0 <= S < 1",
        None,
    ),
    (["prune", "--task", "seg2face", "--sparsity", "-0.1"], "--sparsity: -0.1 is out of range", None),
    (["prune", "--task", "seg2face", "--sparsity", "nan"], "--sparsity: nan is out of range", None),
    (["prune", "--task", "seg2face", "--sparsity", "half"], "--sparsity: 'half' is not a number", None),
    (["prune", "--task", "seg2face", "--latency", "gpu-3ms"], "--latency: 'gpu-3ms': expected <device>-<p50>ms", None),
    (
        ["prune", "--task", "seg2face", "--latency", "cpu-t2-5ms"],
        "latency point 'cpu-t2-5ms' is not in sweep.latency.points []",
        None,
    ),
    (["prune", "--task", "seg2face", "--sparsity", "0.5", "--latency", "cpu-t2-5ms"], "not allowed with", None),
    (
        ["evaluate", "--task", "seg2face", "--latency", "cpu-t2-5ms"],
        "cpu-t2-5ms/prune_report.json: no prune report",
        None,
    ),
    ([*PRUNE, "--out", "afile"], "afile: is a file; expected a folder", None),
    ([*PRUNE, "--out", "afile/s0.5"], "afile/s0.5: cannot be written: afile is a file", None),
    (PRUNE, "condensed.pt: no such file", put(None)),
    (PRUNE, "condensed.pt: is a directory", put("dir")),
    (PRUNE, "condensed.pt: is a text file, not a PyTorch file", put("text.pth")),
    (PRUNE, "condensed.pt: is not a PyTorch file", put("random.pth")),
    (PRUNE, "condensed.pt: holds Python objects (pathlib.PosixPath), not only tensors", put("pickled.pth")),
    (PRUNE, "condensed.pt: is truncated or damaged", put("truncated.pth")),
    (PRUNE, "condensed.pt: is empty", put("empty.pth")),
    (PRUNE, "condensed.pt: not an alap checkpoint", put("state_dict.pth")),
    (PRUNE, "condensed.pt: was made for task 'face2cartoon', expected 'seg2face'", put("face2cartoon.pt")),
    (PRUNE, "condensed.pt: holds a unet generator, but tasks.seg2face.arch is 'resnet'", RESNET),
    (
        PRUNE,
        "condensed.pt: the generator maps 8 to 3 channels, but tasks.seg2face.layout 'paired' needs 3 to 3",
        PAIRED,
    ),
    (PRUNE, "needs image sides divisible by 32; task 'seg2face' uses 48-pixel images", SIZE_48),
    (["distill", "--task", "seg2face", "--sparsity", "1"], "--sparsity: 1 is out of range", None),
    (["distill", "--task", "seg2face", "--sparsity", "0.5"], "s0.5/pruned.pt: no such file", None),
    (["distill", "--task", "seg2face", "--sparsity", "0.5", "--out", "afile/x"], "afile is a file", None),
    (
        ["distill", "--task", "seg2face", "--sparsity", "0.5"],
        "pruned.pt: holds Python objects",
        put("pickled.pth", "models/seg2face/s0.5/pruned.pt"),
    ),
    # evaluate, profile, weights, report
    (["evaluate", "--task", "seg2face"], "one of the arguments --model --sparsity --latency is required", None),
    (["evaluate", "--task", "seg2face", "--model", "student"], "--model: invalid choice: 'student'", None),
    (["evaluate", "--task", "seg2face", "--sparsity", "2"], "--sparsity: 2 is out of range", None),
    (["evaluate", "--task", "seg2face", "--sparsity", "0.5"], "s0.5/student.pt: no such file", None),
    (
        ["evaluate", "--task", "seg2face", "--model", "teacher"],
        "reports/seg2face/teacher: cannot be written",
        put("notes.txt", "reports/seg2face"),
    ),
    (["evaluate", "--task", "seg2face", "--model", "condensed"], "condensed.pt: is truncated", put("truncated.pth")),
    (["profile", "--task", "seg2face", "--sparsity", "-1"], "--sparsity: -1 is out of range", None),
    (["profile", "--task", "seg2face", "--model", "condensed"], "tasks.seg2face.arch is 'resnet'", RESNET),
    (
        ["profile", "--task", "seg2face", "--model", "teacher"],
        "teacher.pt: is empty",
        put("empty.pth", "models/seg2face/teacher.pt"),
    ),
    (["weights", "--torch-home", "afile"], "afile: is a file; expected a folder", None),
    (["report", "--reports", "afile/reports"], "afile is a file", None),
    (["--params", "nope.yaml", "report"], "nope.yaml: params file not found", None),
    # a user's own generator file
    (["import-generator", "nope.pth", "out.pt", "--task", "t"], "nope.pth: no such file", None),
    (["import-generator", "adir", "out.pt", "--task", "t"], "adir: is a directory", None),
    (["import-generator", "{files}/text.pth", "out.pt", "--task", "t"], "text.pth: is a text file", None),
    (["import-generator", "{files}/random.pth", "out.pt", "--task", "t"], "random.pth: is not a PyTorch file", None),
    (["import-generator", "{files}/pickled.pth", "out.pt", "--task", "t"], "pickled.pth: holds Python objects", None),
    (["import-generator", "{files}/truncated.pth", "out.pt", "--task", "t"], "truncated.pth: is truncated", None),
    (["import-generator", "{files}/empty.pth", "out.pt", "--task", "t"], "empty.pth: is empty", None),
    (["import-generator", "{files}/seg2face.pt", "out.pt", "--task", "t"], "is an alap checkpoint already", None),
    (["import-generator", "{files}/state_dict.pth", ".", "--task", "t"], ".: is a directory; expected a file", None),
    (["import-generator", "{files}/state_dict.pth", "adir", "--task", "t"], "adir: is a directory", None),
    (["import-generator", "{files}/state_dict.pth", "afile/out.pt", "--task", "t"], "afile is a file", None),
    ([*IMPORT, "--kind", "vgg"], "--kind: invalid choice: 'vgg'", None),
    ([*IMPORT, "--kind", "resnet"], "kind='resnet' was given, but the file has kind='unet'", None),
    (IMPORT[:-2], "required: --task", None),
    ([*COMPRESS[:-2], "--sparsity", "1.0"], "--sparsity 1.0: expected 0 <= S < 1", None),
    ([*COMPRESS[:-2], "--macs-x", "0.5"], "--macs-x 0.5: expected a number > 1", None),
    (COMPRESS[:-2], "give exactly one target", None),
    ([*COMPRESS, "--load-size", "8"], "--load-size 8: expected a side of 16 to 4096 pixels", None),
    ([*COMPRESS, "--batch-size", "0"], "--batch-size 0: expected a positive integer", None),
    ([*COMPRESS, "--device", "gpu"], "--device gpu: expected auto, cpu, cuda or cuda:N", None),
    ([*COMPRESS, "--condense-steps", "many"], "--condense-steps: invalid int value: 'many'", None),
    (
        ["compress", "{files}/state_dict.pth", "--data", "nodir", "--out", "out", "--sparsity", "0.5"],
        "--data nodir: not a folder",
        None,
    ),
    (
        ["compress", "{files}/state_dict.pth", "--data", "adir", "--out", "afile", "--sparsity", "0.5"],
        "afile: is a file",
        None,
    ),
    (
        ["compress", "{files}/state_dict.pth", "--data", "adir", "--out", "afile/out", "--sparsity", "0.5"],
        "afile is a file",
        None,
    ),
    (["compress", "nope.pth", "--data", "adir", "--out", "out", "--sparsity", "0.5"], "nope.pth: no such file", None),
    (
        ["compress", "{files}/random.pth", "--data", "adir", "--out", "out", "--sparsity", "0.5"],
        "random.pth: is not a PyTorch file",
        None,
    ),
    # services and the benchmark
    (["promote", "--device", "cpu-t2"], "required: --task", None),
    (["promote", "--task", "seg2face", "--max-p50-ms", "fast"], "--max-p50-ms: invalid float value: 'fast'", None),
    (["storage"], "no S3 bucket given", None),
    (["services", "restart"], "invalid choice: 'restart'", None),
    (["services", "status"], "no stack was started in .alap/services", None),
    (["services", "up", "--dir", "afile"], "afile: is a file", None),
    (["services", "up", "--s3-port", "70000"], "--s3-port 70000 is out of range, expected 1..65535", None),
    (["services", "up", "--s3-port", "5000", "--mlflow-port", "5000"], "the stack's ports must differ", None),
    (["bench", "--bench-params", "nope.yaml"], "nope.yaml: params file not found", None),
    (["bench", "--bench-params", "adir"], "adir: is a directory", None),
    (["bench-latency", "--settings", "nope.yaml"], "nope.yaml: params file not found", None),
    (["bench-latency", "--settings", "adir"], "adir: is a directory", None),
]


def _verbs() -> set[str]:
    parser = cli.build_parser()
    return set(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


LOCKS = (".alap", ".alap/state", ".alap/state/locks")  # alap.lock's folder: left behind empty, holds no output


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} - set(LOCKS)


def test_every_verb_has_cases():
    verbs = _verbs()
    assert {a for argv, _, _ in CASES for a in argv if a in verbs} == verbs


@pytest.mark.parametrize("argv, names, setup", CASES, ids=[" ".join(c[0]) or "(none)" for c in CASES])
def test_bad_input_is_refused_in_one_line_before_any_work(project, files, capsys, argv, names, setup):
    if setup is not None:
        setup(project, files)
    before = _tree(project)
    code = cli.main([a.format(files=files) for a in argv])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert (code, out, len(lines)) == (2, "", 1), err
    assert names in lines[0] and "Traceback" not in err and "\x1b" not in err
    assert _tree(project) == before  # nothing written, nothing removed


@pytest.mark.parametrize(
    "exc, user",
    [
        (UserError("x"), True),
        (ValueError("x"), True),
        (FileNotFoundError("x"), True),
        (IsADirectoryError("x"), True),
        (NotADirectoryError("x"), True),
        (FileExistsError("x"), True),
        (PermissionError("x"), True),
        (RuntimeError("x"), False),
        (KeyError("x"), False),
        (TypeError("x"), False),
        (OSError("x"), False),
    ],
)
def test_the_user_error_rule(exc, user):
    assert is_user_error(exc) is user


def test_alaps_error_classes_are_user_errors():
    from alap.bench.params import BenchParamsError
    from alap.config import ParamsError
    from alap.data.errors import DataError
    from alap.metrics.errors import WeightsError
    from alap.profile.devices import DeviceUnavailable
    from alap.storage import StorageError
    from alap.tracking.client import TrackingUnavailable

    for cls in (
        BenchParamsError,
        ParamsError,
        DataError,
        WeightsError,
        DeviceUnavailable,
        StorageError,
        TrackingUnavailable,
    ):
        assert issubclass(cls, UserError), cls


def test_a_bug_keeps_its_traceback_and_verbose_shows_a_user_errors(monkeypatch, capsys):
    def bug(args):
        raise RuntimeError("a bug")

    def bad_input(args):
        raise ValueError("bad input")

    monkeypatch.setattr(cli, "cmd_data", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["data", "--task", "x"])
    monkeypatch.setattr(cli, "cmd_data", bad_input)
    assert cli.main(["--verbose", "data", "--task", "x"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("alap data: error: bad input")


def _alap(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ALAP), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, names",
    [
        (["prune", "--task", "seg2face", "--sparsity", "1.0"], "--sparsity: 1.0 is out of range"),
        (["import-generator", "{files}/pickled.pth", "out.pt", "--task", "t"], "pickled.pth: holds Python objects"),
        (["import-generator", "{files}/state_dict.pth", ".", "--task", "t"], ".: is a directory"),
    ],
)
def test_a_real_process_writes_errors_to_stderr_only(project, files, args, names):
    run = _alap(*[a.format(files=files) for a in args], cwd=project)
    assert (run.returncode, run.stdout, len(run.stderr.splitlines())) == (2, "", 1), run.stderr
    assert names in run.stderr and "weights_only" not in run.stderr and "\x1b" not in run.stderr


def test_a_real_process_writes_results_to_stdout_and_logs_to_stderr(project, files):
    args = ["import-generator", str(files / "state_dict.pth"), "out.pt", "--task", "t", "--no-dropout"]
    run = _alap(*args, cwd=project)
    assert (run.returncode, run.stdout) == (0, "out.pt\n") and "imported" in run.stderr
    quiet = _alap("--quiet", *args, cwd=project)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "out.pt\n", "")
