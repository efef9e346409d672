"""Where a run's inputs came from, as MLflow tags: the git commit, the DVC hashes of a stage's inputs, the metric
weights' provenance; and a stable id for a configuration (its parent run). A network's weights are identified by
alap.fingerprint.

Read from git, dvc.lock and the objects themselves, without mlflow: only the client writes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from alap.tracking.keys import flatten, safe_key


def pipeline_key(params: Mapping[str, Any], commit: str | None) -> str:
    """A stable id for one pipeline configuration: the same params at the same commit give the same parent."""
    blob = json.dumps({"params": params, "commit": commit}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def git_commit(repo_dir: str | os.PathLike) -> str | None:
    """HEAD of the repository, suffixed ``-dirty`` when tracked files differ; None outside git."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True, check=False)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def dvc_dep_hashes(dvc_lock_path: str | os.PathLike, stage_name: str) -> dict[str, str]:
    """Tags ``dvc.dep.<path>: <md5>`` for a stage's dependencies, read from dvc.lock.

    These let a run be traced back to the exact data and models it consumed. Stage names from a
    ``matrix:`` look like ``prune@0.5``.
    """
    path = Path(dvc_lock_path)
    if not path.is_file():
        raise FileNotFoundError(f"dvc lock file {path} does not exist (run `dvc repro` first)")
    lock = yaml.safe_load(path.read_text()) or {}
    stages = lock.get("stages") or {}
    if stage_name not in stages:
        raise KeyError(f"stage '{stage_name}' is not in {path}; it has: {', '.join(sorted(stages)) or 'no stages'}")
    tags: dict[str, str] = {}
    for dep in stages[stage_name].get("deps") or []:
        digest = dep.get("md5") or dep.get("etag") or dep.get("checksum")
        if digest:
            tags[safe_key(f"dvc.dep.{dep['path']}")] = str(digest)
    return tags


def provenance_tags(
    repo_dir: str | os.PathLike, stage: str | None = None, weights: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Git commit, DVC input hashes of ``stage`` (when dvc.lock has it) and metric-weights provenance."""
    tags: dict[str, str] = {}
    commit = git_commit(repo_dir)
    if commit:
        tags["alap.git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    lock = Path(repo_dir) / "dvc.lock"
    if stage and lock.is_file():
        with contextlib.suppress(KeyError):  # a stage not yet locked simply has no recorded inputs
            tags.update(dvc_dep_hashes(lock, stage))
    tags.update(flatten(weights or {}, "alap.weights"))
    return tags
