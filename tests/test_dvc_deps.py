"""Each DVC stage's code deps cover the alap modules its entry imports, so a change to that code reruns the stage.

The rule, read statically with ``ast`` (nothing of alap is run except ``alap.cli.build_parser``, which maps a verb
to its function):

1. A stage's ``cmd`` runs ``python -m stages.<module>``; ``stages/<module>.py`` calls ``run("<verb>")``, which runs
   the ``cmd_<verb>`` function of alap/cli.py that ``alap <verb>`` dispatches to.
2. The roots are the alap modules imported inside that function and at alap/cli.py's module level.
3. From the roots, the alap modules imported at module level (also inside ``try``/``with``/class bodies and
   ``if`` blocks other than ``if TYPE_CHECKING:``), transitively. Importing ``alap.a.b`` also runs the packages
   ``alap`` and ``alap.a``; ``from alap.a import b`` counts ``alap.a.b`` when b is a submodule.
   Imports inside other functions are *not* followed (each stage's step lives in its own module of alap/steps/ and
   imports what it runs at module level): deps a stage needs through a function-level import further down (e.g.
   alap/report/grid.py for evaluate@) are listed by hand, and this test is a lower bound, not the whole truth.
4. Each module's file must lie under a code dep of the stage: the same path, or a directory dep containing it.
   Package ``__init__.py`` files holding nothing but a docstring are no code and need no dep.

dvc.yaml's ``foreach``/``matrix`` templating is not expanded: code deps are literal paths, and deps that contain
``${`` (data, models, the teacher file) are skipped. Paths are relative to the stage's ``wdir`` (bench/dvc.yaml
runs from the repository root).
"""

from __future__ import annotations

import argparse
import ast
import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from tiny import ROOT

from alap.cli import build_parser

DVC_FILES = [ROOT / "dvc.yaml", ROOT / "bench" / "dvc.yaml"]

# Modules that shape no stage output, so a change to them need not rerun stages.
NOT_DEPS = {
    # the package's docstring and __version__, which nothing reads
    "alap": "alap/__init__.py",
    # argument parsing and dispatch to the verb's library call, which is what the stage computes
    "alap.cli": "alap/cli.py",
    # logging set-up: messages on stderr, never in an output
    "alap.logs": "alap/logs.py",
    # error classes and the exit-status rule: how a failure is reported, never what a stage writes
    "alap.errors": "alap/errors.py",
    # the params schema and its validation: params reach a stage through its `params:` keys, which DVC hashes; the
    # profiles (configs/*.yaml, copied to params.yaml) spell out the keys a stage reads
    "alap.config": "alap/config.py",
    # the one-writer lock of an output folder: who may write, never what is written
    "alap.lock": "alap/lock.py",
    # atomic writes (temp file + rename): how a file is written, not what it holds
    "alap.io": "alap/io.py",
    # where stages read and write: the same places dvc.yaml names literally as deps and outs, so a change there
    # changes dvc.yaml (and reruns the stages) anyway
    "alap.paths": "alap/paths.py",
}

_STAGE_CMD = re.compile(r"\bpython -m stages\.(\w+)\b")


def _stages() -> list[tuple[str, Path, dict]]:
    """(``<dvc file>:<stage>``, the stage's wdir, its definition) for each stage group of the DVC files."""
    found = []
    for dvc_file in DVC_FILES:
        for name, stage in yaml.safe_load(dvc_file.read_text())["stages"].items():
            body = stage.get("do", stage)  # foreach groups keep cmd and deps under `do:`
            wdir = (dvc_file.parent / body.get("wdir", ".")).resolve()
            found.append((f"{dvc_file.relative_to(ROOT)}:{name}", wdir, body))
    return found


@cache
def _verb_functions() -> dict[str, str]:
    """CLI verb -> the name of the alap/cli.py function it runs."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {verb: p.get_default("fn").__name__ for verb, p in sub.choices.items()}


def _verb_of(module: str) -> str:
    """The verb ``stages/<module>.py`` hands to ``run``."""
    tree = ast.parse((ROOT / "stages" / f"{module}.py").read_text())
    verbs = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "run"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    assert len(verbs) == 1, f"stages/{module}.py should call run('<verb>') once, found {verbs}"
    return verbs[0]


def _module_file(module: str) -> Path | None:
    """The file of an alap module or package, None when ``module`` names no module (e.g. a function)."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The alap modules an import statement runs: the named module, its parent packages, imported submodules."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    elif node.level == 0 and node.module:
        names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    modules = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != "alap":
            continue
        modules |= {".".join(parts[: i + 1]) for i in range(len(parts)) if _module_file(".".join(parts[: i + 1]))}
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(statements: list[ast.stmt]) -> set[str]:
    """Imports that run when the module is imported: not in functions, not under ``if TYPE_CHECKING:``."""
    modules: set[str] = set()
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules |= _imported(node)
        elif isinstance(node, ast.If):
            modules |= _module_level_imports(node.orelse)
            if not _is_type_checking(node.test):
                modules |= _module_level_imports(node.body)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                modules |= _module_level_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            modules |= _module_level_imports(node.body)
    return modules


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(_module_file(module).read_text())


def _is_code(module: str) -> bool:
    """False for a package ``__init__.py`` that holds nothing but its docstring."""
    body = _tree(module).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return bool(body)


def _imports_of_verb(verb: str) -> set[str]:
    """The alap modules ``alap <verb>`` imports, by the rule in this file's docstring."""
    cli = _tree("alap.cli")
    name = _verb_functions()[verb]
    function = next(n for n in cli.body if isinstance(n, ast.FunctionDef) and n.name == name)
    todo = {"alap.cli"} | {
        m for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom)) for m in _imported(node)
    }
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo |= _module_level_imports(_tree(module).body)
    return {m for m in seen if _is_code(m)}


def _covered(file: str, deps: list[str]) -> bool:
    return any(file == dep or file.startswith(dep + "/") for dep in deps)


@pytest.mark.parametrize("stage", _stages(), ids=lambda s: s[0])
def test_stage_code_deps_cover_the_modules_its_verb_imports(stage: tuple[str, Path, dict]) -> None:
    _, wdir, body = stage
    match = _STAGE_CMD.search(body["cmd"])
    assert match, f"cmd {body['cmd']!r} does not run `python -m stages.<module>`"
    deps = [
        (wdir / dep).resolve().relative_to(ROOT).as_posix()
        for dep in body.get("deps", [])
        if isinstance(dep, str) and "${" not in dep
    ]
    missing = sorted(
        file
        for module in _imports_of_verb(_verb_of(match.group(1)))
        if module not in NOT_DEPS and not _covered(file := _module_file(module).relative_to(ROOT).as_posix(), deps)
    )
    assert not missing, f"code this stage runs is not among its deps: {missing}"


def test_rule_sees_function_imports_and_module_level_imports_transitively() -> None:
    """The closure of `alap condense`: the step it imports, and what that step's module imports at module level."""
    modules = _imports_of_verb("condense")
    assert {"alap.steps.condense", "alap.compress.condense", "alap.loop", "alap.cli"} <= modules
    assert "alap.evaluate" not in modules  # another step's module
    assert "alap.compress" not in modules  # an __init__.py with no code


def test_allowlist_names_existing_modules() -> None:
    for module, path in NOT_DEPS.items():
        assert _module_file(module) == ROOT / path, module


def test_latency_stage_groups_match_their_sparsity_twins() -> None:
    """DVC names a matrix stage after its items, so the latency points (``prune-latency@<task>-cpu-t2-33ms``) have
    stage groups of their own; each differs from its sparsity twin only in the point: the same command with
    ``--latency``, the same code deps (plus alap/points.py, the sparsity a latency point reached) and params
    (plus the prune stage's shared budget settings)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    twins = [name for name in stages if f"{name}-latency" in stages]
    assert twins == ["prune", "distill", "evaluate", "profile"]

    def code(body: dict) -> set[str]:
        return {dep for dep in body["deps"] if isinstance(dep, str) and "${" not in dep} - {"alap/points.py"}

    for name in twins:
        sparsity, latency = stages[name], stages[f"{name}-latency"]
        assert code(latency) == code(sparsity), name
        as_sparsity = (
            latency["cmd"].replace("--latency ${item.p}", "--sparsity ${item.s}").replace("}/${item.p}", "}/s${item.s}")
        )
        assert as_sparsity == sparsity["cmd"], name
        shared = [p for p in latency["params"] if not str(p).startswith("sweep.latency.")]
        assert shared == sparsity["params"], name
        assert latency["matrix"] == {"task": "${run_tasks}", "p": "${sweep.latency.points}"}
