"""Every command in the README's bash blocks runs as written on the demo.

The cheap ones run for real in a clone of the repository (``dvc metrics show``, ``dvc plots show``,
``alap use-profile``, ``--help`` of long-running servers); the expensive ones (the whole pipeline, a compression, a
push) are checked as far as they can be without running them: the make target exists, the flags parse, the values
validate and an ``exp run`` sparsity is reachable for the demo's architecture. A command of a kind this file does not
know fails the test, so a README edit cannot slip past it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from alap.cli import build_parser
from alap.compress.condense import prepare_for_condense
from alap.compress.prune import prune
from alap.config import Params, load_params
from alap.models import build_generator
from alap.task import Task

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def readme_commands() -> list[str]:
    """The commands of the README's ```bash blocks: continuations joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].split(" # ")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed repository, as a new user gets it."""
    path = tmp_path_factory.mktemp("readme") / "alap"
    subprocess.run(["git", "clone", "-q", str(REPO), str(path)], check=True)
    return path


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"`{shlex.join(argv)}` failed:\n{done.stdout}\n{done.stderr}"
    return done


def check_make(argv: list[str], clone: Path) -> None:
    targets = set(re.findall(r"^([\w-]+):", (clone / "Makefile").read_text(), re.M))
    assert argv[1] in targets, f"make {argv[1]}: no such target in the Makefile"


def check_exp_run(argv: list[str], clone: Path) -> None:
    """``dvc exp run -S key=value``: the params still validate, and each sparsity can be pruned to."""
    raw = yaml.safe_load((clone / "params.yaml").read_text())
    for setting in argv[argv.index("-S") + 1 :]:
        key, _, value = setting.partition("=")
        section, _, name = key.partition(".")
        raw[section][name] = yaml.safe_load(value)
    params = Params.model_validate(raw)
    for task_name in params.run_tasks:
        task = Task.from_params(params, task_name)
        arch = task.teacher_arch(params.model)
        size = params.crop_size(task_name)
        inputs = torch.rand(params.prune.probe_samples, task.channels[0], size, size) * 2 - 1  # no data in a clone
        for sparsity in params.sweep.sparsities:  # reachability depends on the widths only, not on trained weights
            model, condensed_arch = prepare_for_condense(build_generator(arch), arch, inputs)
            prune(model.eval(), condensed_arch, params.prune.model_copy(update={"sparsity": sparsity}), inputs)


def check_command(command: str, clone: Path) -> None:
    argv = shlex.split(command)
    program, rest = argv[0], argv[1:]
    if program == "make":
        check_make(argv, clone)
    elif program == "export":
        assert rest and all(re.fullmatch(r"[A-Z][A-Z0-9_]*=\S+", word) for word in rest), command
    elif program == "source":  # the stack's environment file, written by `alap services up` (tests/test_stack.py)
        assert rest == [".alap/services/env.sh"], command
    elif program == "dask" or argv[0].startswith("PYTHONPATH="):  # a Dask cluster's processes
        dask = argv[argv.index("dask") :]
        assert "--resources" in run([str(BIN / "dask"), dask[1], "--help"], clone).stdout or dask[1] == "scheduler"
    elif argv[:3] == ["dvc", "exp", "run"]:
        check_exp_run(argv, clone)
    elif argv[:2] == ["dvc", "repro"]:  # the whole pipeline: its stages resolve from the params
        run([str(BIN / "dvc"), "dag", *argv[2:]], clone)
    elif argv[:2] == ["dvc", "push"]:  # to the default remote: it is configured
        assert "remote" in run([str(BIN / "dvc"), "remote", "list"], clone).stdout
    elif program == "dvc":
        run([str(BIN / "dvc"), *rest], clone)
    elif program == "alap" and rest[0] in ("compress", "storage", "services"):
        build_parser().parse_args(rest)  # flags as written: the user's files, S3 and servers (tests/test_stack.py)
    elif program == "alap":
        run([str(BIN / "alap"), *rest], clone)
    elif argv[:3] == ["prefect", "server", "start"]:
        assert "--host" in run([str(BIN / "prefect"), "server", "start", "--help"], clone).stdout
    elif argv[:2] == ["python", "-m"]:
        run([sys.executable, *rest, "--help"], clone)  # a server that runs until interrupted
    else:
        raise AssertionError(f"README command of an unknown kind: {command!r}; teach tests/test_readme.py to run it")


def test_every_readme_command_runs_as_written(clone: Path):
    commands = readme_commands()
    assert "make demo" in commands and "make test" in commands
    for command in commands:
        check_command(command, clone)
    assert load_params(clone / "params.yaml").profile_name == "paper"  # `alap use-profile paper` ran for real
