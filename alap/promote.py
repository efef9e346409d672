"""Promotion: point the ``champion`` aliases at the best registered student that passes every gate.

Gates (params.yaml's ``promote`` section, :class:`alap.config.PromoteParams`; per candidate version of
``alap-<task>``, read from its run's metrics):
    latency   ``latency.<device>.<backend>.bs1.p50_ms`` <= max_p50_ms   (real time on that device)
    quality   ``fid`` <= max_fid_ratio * teacher fid                  (no visible loss vs the teacher)
    fidelity  ``lpips_teacher`` <= max_lpips_teacher                  (student still imitates teacher)
The teacher's fid comes from a version tag ``alap.teacher_fid`` when present, else from the run named
``teacher`` under the same parent run. A missing value fails its gate: promotion never guesses.

Each version is judged at every precision of ``precisions``: ``fp32`` reads the values above; ``int8`` reads those
of its static int8 quantization (``quantize.int8``): ``latency.<device>.onnxruntime-int8.bs1.p50_ms``, ``int8.fid``
and ``int8.lpips_teacher``, against the same limits and the fp32 teacher's fid (the teacher as it ships). The best
passing (version, precision) wins, and the champion's evidence tag names its precision.

Talks to MLflow only through `alap.tracking.client.Tracker`. Nothing changes when no candidate passes, and a
repeated call with the same outcome writes nothing new.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from alap.compress.params import INT8_BACKEND
from alap.config import PromoteParams
from alap.metrics.names import INT8_PREFIX, LatencyKey
from alap.tracking.client import RunRecord, Tracker, VersionRecord, redact, registered_model_name

TEACHER_RUN = "teacher"
TEACHER_FID_TAG = "alap.teacher_fid"
CHAMPION = "champion"


@dataclass(frozen=True)
class GateFailure:
    """One failed gate: which, the measured value (None if missing) and the limit it had to meet."""

    gate: str
    value: float | None
    limit: float | None

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.gate}: missing"
        if self.limit is None:
            return f"{self.gate}: {self.value:g} (no limit: teacher fid missing)"
        return f"{self.gate}: {self.value:g} > {self.limit:g}"


@dataclass(frozen=True)
class Candidate:
    """A registered version at one precision with the values the gates looked at."""

    version: int
    precision: str
    run_id: str | None
    run_name: str | None
    p50_ms: float | None
    fid: float | None
    lpips: float | None
    lpips_teacher: float | None
    teacher_fid: float | None
    failures: tuple[GateFailure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def run_label(self) -> str:
        """The run's name; at another precision than fp32 with it: ``s0.5 int8``."""
        return f"{self.run_name}" + ("" if self.precision == "fp32" else f" {self.precision}")

    @property
    def label(self) -> str:
        """``v3 s0.5``, ``v3 s0.5 int8``."""
        return f"v{self.version} {self.run_label}"

    def fid_limit(self, gates: PromoteParams) -> float | None:
        return fid_limit(gates, self.teacher_fid)

    def gate_record(self, gates: PromoteParams) -> dict[str, Any]:
        """The values this candidate showed each gate, under the metric names they were read from, the limits, and
        the verdict (a version tag, as JSON)."""
        prefix = metric_prefix(self.precision)
        return {
            latency_key(gates, self.precision): self.p50_ms,
            "max_p50_ms": gates.max_p50_ms,
            f"{prefix}fid": self.fid,
            "teacher_fid": self.teacher_fid,
            "max_fid": self.fid_limit(gates),
            f"{prefix}lpips_teacher": self.lpips_teacher,
            "max_lpips_teacher": gates.max_lpips_teacher,
            "verdict": "pass" if self.passed else "; ".join(map(str, self.failures)),
        }


@dataclass(frozen=True)
class PromotionResult:
    model: str
    device: str
    backend: str
    prefer: str
    candidates: tuple[Candidate, ...]
    champion: Candidate | None
    changed: bool

    def report(self) -> str:
        """Human-readable outcome: the champion, or for every candidate the gates it failed."""
        head = f"{self.model} on {self.device}/{self.backend} (prefer {self.prefer}): "
        if self.champion is None:
            lines = [head + "no version passes every gate; nothing changed"]
        else:
            state = "promoted" if self.changed else "already champion"
            at = "" if self.champion.precision == "fp32" else f" in {self.champion.precision}"
            lines = [head + f"version {self.champion.version} ({self.champion.run_name}){at} {state}"]
        for c in self.candidates:
            verdict = "pass" if c.passed else "; ".join(map(str, c.failures))
            lines.append(f"  {c.label}: {verdict}")
        return "\n".join(lines)

    def markdown(self, gates: PromoteParams) -> str:
        """The outcome as a table: each gate's threshold in the header, each candidate's values and verdict."""
        head = [
            f"**{self.model}** on {self.device}/{self.backend}, prefer {self.prefer}: "
            + (f"champion **{self.champion.label}**" if self.champion else "no champion"),
            "",
            f"| version | run | p50 ms (limit {gates.max_p50_ms:g}) | FID "
            f"| FID limit ({gates.max_fid_ratio:g} x teacher's) | LPIPS to teacher (limit {gates.max_lpips_teacher:g}) "
            "| verdict |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        rows = [
            f"| v{c.version} | {c.run_label} | {_shown(c.p50_ms)} | {_shown(c.fid)} | {_shown(c.fid_limit(gates))} "
            f"| {_shown(c.lpips_teacher)} | {'pass' if c.passed else '; '.join(map(str, c.failures))} |"
            for c in self.candidates
        ]
        return "\n".join(head + rows)


def _shown(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4g}"


def fid_limit(gates: PromoteParams, teacher_fid: float | None) -> float | None:
    """The quality gate's bound: ``max_fid_ratio`` times the teacher's FID (None when that is missing)."""
    return None if teacher_fid is None else gates.max_fid_ratio * teacher_fid


def backend_of(gates: PromoteParams, precision: str) -> str:
    """The runtime whose latency gates ``precision``: ``gates.backend`` for fp32, ONNX Runtime's int8 for int8."""
    return gates.backend if precision == "fp32" else INT8_BACKEND


def latency_key(gates: PromoteParams, precision: str = "fp32") -> str:
    """The batch-1 median latency the gates read at ``precision``."""
    return LatencyKey(gates.device, backend_of(gates, precision)).p50


def metric_prefix(precision: str) -> str:
    """What the quality metrics of ``precision`` are named behind (alap.metrics.names): none for fp32."""
    return "" if precision == "fp32" else INT8_PREFIX


def promote(
    task: str,
    gates: PromoteParams,
    client: Tracker | None = None,
    project_dir: str | os.PathLike = ".",
) -> PromotionResult:
    """Gate every registered version of ``alap-<task>``, pick the best passing one, set its aliases.

    ``gates.prefer == "quality"`` picks the lowest fid (ties: lowest lpips, then lowest latency); ``"speed"``
    the lowest latency (ties: lowest fid). Remaining ties go to the newest version. The winner gets
    aliases ``champion`` and ``<device>-champion`` and a tag ``alap.promotion.<device>`` holding the
    gate values it passed.
    """
    device, backend, prefer = gates.device, gates.backend, gates.prefer
    tracker = client or Tracker.connect(project_dir)
    model = registered_model_name(task)
    versions = tracker.model_versions(model)
    if not versions:
        raise LookupError(
            f"registered model '{model}' has no versions at {redact(tracker.uri)}: log and register a student first"
        )

    siblings: dict[str, list[RunRecord]] = {}
    candidates = tuple(c for version in versions for c in _judge(gates, version, tracker, siblings))
    for candidate in candidates:  # every version shows what the gates saw at each precision, not only the winner
        tag = f"alap.gates.{device}" + ("" if candidate.precision == "fp32" else f".{candidate.precision}")
        tracker.set_version_tags(
            model, candidate.version, {tag: json.dumps(candidate.gate_record(gates), sort_keys=True)}
        )
    passing = [c for c in candidates if c.passed]
    if not passing:
        return PromotionResult(model, device, backend, prefer, candidates, None, changed=False)

    champion = min(passing, key=_quality_order if prefer == "quality" else _speed_order)
    evidence = json.dumps(
        {
            "backend": backend_of(gates, champion.precision),
            "prefer": prefer,
            "precision": champion.precision,
            **champion.gate_record(gates),
        },
        sort_keys=True,
    )
    changed = False
    for alias in (CHAMPION, f"{device}-champion"):
        if tracker.alias_version(model, alias) != champion.version:
            tracker.set_alias(model, alias, champion.version)
            changed = True
    before = next(v for v in versions if v.version == champion.version).tags
    tag = f"alap.promotion.{device}"
    if before.get(tag) != evidence:
        tracker.set_version_tags(model, champion.version, {tag: evidence})
        changed = True
    return PromotionResult(model, device, backend, prefer, candidates, champion, changed)


def _judge(
    gates: PromoteParams, version: VersionRecord, tracker: Tracker, siblings: dict[str, list[RunRecord]]
) -> list[Candidate]:
    """``version`` at each of ``gates.precisions``, each read from its own metric names."""
    run = tracker.run(version.run_id) if version.run_id else None
    metrics = run.metrics if run else {}
    teacher_fid = _teacher_fid(version, run, tracker, siblings)
    limit = fid_limit(gates, teacher_fid)
    candidates = []
    for precision in gates.precisions:
        key, prefix = latency_key(gates, precision), metric_prefix(precision)
        p50, fid, lpips_t = metrics.get(key), metrics.get(f"{prefix}fid"), metrics.get(f"{prefix}lpips_teacher")
        failures = []
        if p50 is None or p50 > gates.max_p50_ms:
            failures.append(GateFailure(key, p50, gates.max_p50_ms))
        if fid is None or limit is None or fid > limit:
            failures.append(GateFailure(f"{prefix}fid", fid, limit))
        if lpips_t is None or lpips_t > gates.max_lpips_teacher:
            failures.append(GateFailure(f"{prefix}lpips_teacher", lpips_t, gates.max_lpips_teacher))
        candidates.append(
            Candidate(
                version=version.version,
                precision=precision,
                run_id=version.run_id,
                run_name=run.name if run else None,
                p50_ms=p50,
                fid=fid,
                lpips=metrics.get(f"{prefix}lpips"),
                lpips_teacher=lpips_t,
                teacher_fid=teacher_fid,
                failures=tuple(failures),
            )
        )
    return candidates


def _teacher_fid(
    version: VersionRecord, run: RunRecord | None, tracker: Tracker, siblings: dict[str, list[RunRecord]]
) -> float | None:
    """Tag on the version first (explicit beats inferred), else the sibling run named ``teacher``."""
    if TEACHER_FID_TAG in version.tags:
        try:
            return float(version.tags[TEACHER_FID_TAG])
        except ValueError as exc:
            value = version.tags[TEACHER_FID_TAG]
            raise ValueError(
                f"{version.name} v{version.version}: tag {TEACHER_FID_TAG}={value!r} is not a number"
            ) from exc
    if run is None or run.parent_id is None:
        return None
    if run.parent_id not in siblings:
        siblings[run.parent_id] = tracker.child_runs(run.parent_id)
    teachers = [r for r in siblings[run.parent_id] if r.name == TEACHER_RUN and "fid" in r.metrics]
    return teachers[0].metrics["fid"] if teachers else None


# Last ties: the newest version, then fp32 before int8 (the plainer deployment).
def _quality_order(c: Candidate) -> tuple:
    return (c.fid, c.lpips if c.lpips is not None else math.inf, c.p50_ms, -c.version, c.precision != "fp32")


def _speed_order(c: Candidate) -> tuple:
    return (c.p50_ms, c.fid, -c.version, c.precision != "fp32")
