"""The MLflow client wrapper: the only module that imports mlflow.

Every read and write of runs, models and aliases goes through :class:`Tracker`, so MLflow's quirks are handled
once: find-or-create by stable keys (DVC stages are separate processes and rerun), a dead server told apart
from a real error (:class:`TrackingUnavailable`, so callers keep their outputs), bounded HTTP retries, no
credentials in params or tags, and pickle-free registered models.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from alap.errors import UserError
from alap.fingerprint import weights_digest
from alap.tracking.keys import flatten

PIPELINE_TAG = "alap.pipeline_id"
PARENT_ENV = "ALAP_PARENT_RUN_ID"
WEIGHTS_TAG = "alap.weights_sha256"
PARENT_TAG = "mlflow.parentRunId"
REGISTERED_TAG = "alap.registered_version"
ALSO_LOGGED_TAG = "alap.also_logged_by"

# MLflow's own HTTP retry defaults (7 retries, backoff factor 2, 120 s timeout) can stall a stage for
# minutes on a dead server; these bounded defaults apply only where the user has not chosen values.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}

_NAME_RE = re.compile(r"^[\w.@:+\-]+$")  # run names end up inside MLflow filter strings
_SECRET_KEY_RE = re.compile(r"secret|password|passwd|token|credential|access_key|api_key|private_key", re.I)
_SECRET_ENVS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
_USERINFO_RE = re.compile(r"://[^/@\s]+:[^/@\s]+@")
_URI_ENVS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_BATCH = 100  # MLflow's per-request limit for params and tags (metrics allow 1000)
_NOT_SET_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # no such model; no such alias


class TrackingUnavailable(UserError):
    """The tracking server did not answer; the message names the URI (without credentials)."""


class ArtifactsUnavailable(TrackingUnavailable):
    """The tracking server answers but could not store a run's files after its bounded retries: the artifact store
    behind it (S3) failed. The run's params and metrics are logged, the local files kept; a rerun uploads them."""


@dataclass(frozen=True)
class RunRecord:
    """A run as promotion and reports need it: who its parent is, and its latest metrics and tags."""

    run_id: str
    name: str
    parent_id: str | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    start_time: float | None = None  # Unix seconds
    end_time: float | None = None


@dataclass(frozen=True)
class VersionRecord:
    """One registered model version with the tags and aliases promotion reads."""

    name: str
    version: int
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


def registered_model_name(task: str) -> str:
    """Registry naming contract (docs/architecture.md): one registered model per task, ``alap-<task>``."""
    return f"alap-{task}"


def tracking_uri(project_dir: str | os.PathLike) -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store ``<project>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(project_dir)


def default_tracking_uri(project_dir: str | os.PathLike) -> str:
    """The embedded store's URI for a project, whatever MLFLOW_TRACKING_URI says."""
    return f"sqlite:///{Path(project_dir).resolve() / 'mlflow.db'}"


def redact(uri: str) -> str:
    """The URI without ``user:password@``, so errors and tags can name a server without leaking secrets."""
    return _USERINFO_RE.sub("://***@", uri)


def _refuse_secrets(values: Mapping[str, str], what: str) -> None:
    """Raise if a param or tag looks like a credential: runs are readable by everyone with the UI."""
    known = {os.environ[name] for name in _SECRET_ENVS if os.environ.get(name)}
    for key, value in values.items():
        if _SECRET_KEY_RE.search(key) or value in known or _USERINFO_RE.search(value):
            raise ValueError(f"refusing to log {what} '{key}': it looks like a credential")


def _check_name(name: str, what: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"{what} '{name}' must match {_NAME_RE.pattern} (letters, digits, . @ : + - _)")
    return name


def _wait_for_server(uri: str, attempts: int = 3, timeout: float = 5.0) -> None:
    """GET /health with a few spaced attempts; raise TrackingUnavailable naming the URI."""
    error: Exception | None = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            error = exc
        if attempt + 1 < attempts:
            time.sleep(0.5 * 2**attempt)
    raise TrackingUnavailable(
        f"MLflow tracking server {redact(uri)} is unreachable after {attempts} attempts ({error}). "
        "Local outputs are kept; start the server, or unset MLFLOW_TRACKING_URI to log to the "
        "embedded store <project>/mlflow.db"
    )


@contextlib.contextmanager
def _fluent_uri(uri: str) -> Iterator[None]:
    """mlflow.<flavor>.log_model only speaks the global (fluent) URI: point it at ours, then restore.

    mlflow.set_tracking_uri also rewrites MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI in os.environ, so
    those are restored exactly too; otherwise a later `Tracker.connect` in this process would
    silently follow (or lose) a server URI.
    """
    saved_env = {name: os.environ.get(name) for name in _URI_ENVS}
    saved_tracking, saved_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        mlflow.set_registry_uri(saved_registry)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_F = TypeVar("_F", bound=Callable[..., Any])


def _server_guard(method: _F) -> _F:
    """Turn an MLflow error into TrackingUnavailable when the cause is a server that has gone away.

    MLflow reports a dead server as a generic MlflowException after its own retries; asking /health
    once tells "server down" (callers may skip tracking and keep their outputs) from a real error.
    """

    @functools.wraps(method)
    def guarded(self: Tracker, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except MlflowException as exc:
            if self.uri.startswith(("http://", "https://")):
                try:
                    _wait_for_server(self.uri, attempts=1)
                except TrackingUnavailable as down:
                    raise down from exc
            raise

    return guarded  # type: ignore[return-value]


class Tracker:
    """One tracking store (embedded SQLite or a server) and everything alap logs to or reads from it."""

    def __init__(self, uri: str, artifact_root: str | None = None) -> None:
        self.uri = uri
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    @classmethod
    def connect(cls, project_dir: str | os.PathLike = ".") -> Tracker:
        """Resolve the store for a project; a server URI is checked up front so failures are early and named."""
        uri = tracking_uri(project_dir)
        if uri.startswith(("http://", "https://")):
            for name, value in HTTP_RETRY_DEFAULTS.items():
                os.environ.setdefault(name, value)
            _wait_for_server(uri)
            return cls(uri)
        if uri == default_tracking_uri(project_dir):
            return cls(uri, (Path(project_dir).resolve() / "mlartifacts").as_uri())
        return cls(uri)

    # ----- runs -------------------------------------------------------------------------------

    @_server_guard
    def experiment_id(self, name: str) -> str:
        """Find or create the experiment (artifacts under <project>/mlartifacts for the embedded store)."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise ValueError(
                    f"MLflow experiment '{name}' at {redact(self.uri)} is deleted; restore it or pick another"
                )
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=self.artifact_root)

    @_server_guard
    def parent_run(
        self,
        experiment: str,
        name: str,
        key: str,
        tags: Mapping[str, str] | None = None,
        start_time: float | None = None,
    ) -> str:
        """The parent run for one pipeline/sweep, found by ``key`` (tag alap.pipeline_id) or created (starting at
        ``start_time``, Unix seconds, when its first model's work started earlier).

        A flow that already made its parent exports ALAP_PARENT_RUN_ID and every stage attaches to it.
        DVC runs stages one at a time per workspace, so find-then-create does not race in practice.
        """
        from_env = os.environ.get(PARENT_ENV)
        if from_env:
            try:
                run = self.client.get_run(from_env)
            except MlflowException as exc:
                raise ValueError(f"{PARENT_ENV}={from_env} is not a run at {redact(self.uri)}: {exc.message}") from exc
            if run.info.lifecycle_stage == "deleted":
                raise ValueError(f"{PARENT_ENV}={from_env} names a deleted run")
            return run.info.run_id
        experiment_id = self.experiment_id(experiment)
        query = f"tags.`{PIPELINE_TAG}` = '{_check_name(key, 'pipeline key')}'"
        hits = self.client.search_runs([experiment_id], query, order_by=["start_time ASC"])
        parents = [run for run in hits if PARENT_TAG not in run.data.tags]
        if parents:
            return parents[0].info.run_id
        run_tags = {**(tags or {}), PIPELINE_TAG: key}
        _refuse_secrets(run_tags, "tag")
        return self.client.create_run(
            experiment_id, start_time=_ms(start_time), tags=run_tags, run_name=name
        ).info.run_id

    @_server_guard
    def child_run(self, parent_id: str, name: str, start_time: float | None = None) -> str:
        """The child run ``name`` under the parent, created on first use (starting at ``start_time``, Unix
        seconds, when the work it records started earlier) and reused on every rerun."""
        parent = self.client.get_run(parent_id)
        experiment_id = parent.info.experiment_id
        hits = self.client.search_runs(
            [experiment_id],
            f"tags.`{PARENT_TAG}` = '{parent_id}' and attributes.run_name = '{_check_name(name, 'run name')}'",
            order_by=["start_time ASC"],
        )
        if hits:
            return hits[0].info.run_id
        return self.client.create_run(
            experiment_id, start_time=_ms(start_time), tags={PARENT_TAG: parent_id}, run_name=name
        ).info.run_id

    @_server_guard
    def log_point(
        self,
        parent_id: str,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        artifacts: Sequence[str | os.PathLike] = (),
        tags: Mapping[str, str] | None = None,
        window: tuple[float, float] | None = None,
    ) -> str:
        """Log one model (teacher, condensed, or a sweep point) as a child run; return its run id.

        ``window`` (start, end in Unix seconds) is when the stages that made the model ran: the run's start and
        end time, so that its duration in the UI is the work's, not the logging's.

        ``params`` may be nested (flattened to dotted keys); metric names may contain dots and dashes
        (``latency.cpu-t2.onnxruntime.bs1.p50_ms``). A rerun with the same values writes nothing new;
        a rerun with *different* params is refused, because it is a different pipeline configuration
        and belongs under a different parent.
        """
        _check_artifacts(artifacts, f"run '{name}'")
        _checked(metrics, tags)  # refused before the run is made
        flat = flatten(params)
        _refuse_secrets(flat, "param")
        run_id = self.child_run(parent_id, name, None if window is None else window[0])
        logged = self.client.get_run(run_id).data
        changed = {k: (logged.params[k], v) for k, v in flat.items() if k in logged.params and logged.params[k] != v}
        if changed:
            raise ValueError(
                f"run '{name}' under parent {parent_id} already has different params {changed}: "
                "changed params need a new parent (pipeline key)"
            )
        new_params = [Param(k, v) for k, v in flat.items() if k not in logged.params]
        for start in range(0, len(new_params), _BATCH):
            self.client.log_batch(run_id, params=new_params[start : start + _BATCH])
        self.log_to_run(run_id, metrics, artifacts, tags)
        self.client.set_terminated(run_id, "FINISHED", end_time=None if window is None else _ms(window[1]))
        return run_id

    @_server_guard
    def log_to_run(
        self,
        run_id: str,
        metrics: Mapping[str, float] | None = None,
        artifacts: Sequence[str | os.PathLike] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Add metrics, artifacts (files, or folders under their own name) and tags to an existing run (a child's,
        or a parent's task summary); values already logged are not written again."""
        _check_artifacts(artifacts, f"run {run_id}")
        values, tag_values = _checked(metrics, tags)
        logged = self.client.get_run(run_id).data
        now = int(time.time() * 1000)
        new_metrics = [Metric(k, v, now, 0) for k, v in values.items() if not _same(logged.metrics.get(k), v)]
        new_tags = [RunTag(k, v) for k, v in tag_values.items() if logged.tags.get(k) != v]
        for start in range(0, max(len(new_metrics), len(new_tags)), _BATCH):
            self.client.log_batch(
                run_id, metrics=new_metrics[start : start + _BATCH], tags=new_tags[start : start + _BATCH]
            )
        with self._storing_artifacts(run_id, "its files"):
            for item in map(Path, artifacts):
                if item.is_dir():
                    self.client.log_artifacts(run_id, str(item), artifact_path=item.name)
                else:
                    self.client.log_artifact(run_id, str(item))

    @contextlib.contextmanager
    def _storing_artifacts(self, run_id: str, what: str) -> Iterator[None]:
        """Uploads to a server's artifact store: a failure while the server itself answers is the store's (S3
        down), said in one line as :class:`ArtifactsUnavailable`; a server that went away is TrackingUnavailable."""
        try:
            yield
        except MlflowException as exc:
            if not self.uri.startswith(("http://", "https://")):
                raise
            _wait_for_server(self.uri, attempts=1)
            cause = str(exc).splitlines()[0][:300]
            raise ArtifactsUnavailable(
                f"MLflow server {redact(self.uri)} answers but could not store {what} of run {run_id} in its "
                f"artifact store (is its S3 endpoint reachable?); params and metrics are logged and local outputs "
                f"kept, a rerun uploads the files. Cause: {cause}"
            ) from exc

    @_server_guard
    def finish_run(self, run_id: str, status: str = "FINISHED", window: tuple[float, float] | None = None) -> None:
        """Close a parent run once its last child is logged (children close themselves); with ``window``, the end
        time is the work's (its start was set when the run was made)."""
        self.client.set_terminated(run_id, status, end_time=None if window is None else _ms(window[1]))

    @_server_guard
    def run(self, run_id: str) -> RunRecord:
        data = self.client.get_run(run_id)
        return _record(data)

    @_server_guard
    def child_runs(self, parent_id: str) -> list[RunRecord]:
        experiment_id = self.client.get_run(parent_id).info.experiment_id
        runs = self.client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'")
        return [_record(run) for run in runs]

    # ----- models and registry ------------------------------------------------------------------

    @_server_guard
    def log_generator_model(
        self,
        run_id: str,
        model: torch.nn.Module,
        input_example: np.ndarray,
        registered_name: str,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> int:
        """Log a generator as an MLflow model, register it with a one-line ``description``, and return the
        version number.

        Format: ``pt2`` (torch.export). MLflow 3.17 refuses to unpickle models unless
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION is set, and a pickled module only loads where alap's
        classes import; a pt2 archive is a pickle-free graph plus weights that
        ``mlflow.pytorch.load_model("models:/alap-<task>/<v>")`` loads anywhere torch>=2.4 is. The
        network is exported from a CPU copy in eval mode, so the archive loads on CPU machines. A
        batch-1 example is doubled before export: torch.export fixes size-1 dimensions as constants,
        and a batch of 2 keeps the batch dimension dynamic. Spatial size stays fixed to the example.

        Weights already registered (by this run or by another: a sweep and a pipeline that trained the same
        student) are not registered again: that version is returned, and tagged with this run
        (``alap.also_logged_by.<run id>``) while the run is tagged with the version (``alap.registered_version``).
        """
        example = np.asarray(input_example, dtype=np.float32)
        if example.ndim != 4:
            raise ValueError(f"input_example must be NCHW, got shape {example.shape}")
        if example.shape[0] == 1:
            example = np.concatenate([example, example])
        cpu_model = copy.deepcopy(model).to("cpu").eval()
        digest = weights_digest(cpu_model)
        for version in self.model_versions(registered_name):
            if version.tags.get(WEIGHTS_TAG) == digest:
                if version.run_id != run_id:
                    run_name = self.client.get_run(run_id).info.run_name
                    self.set_version_tags(registered_name, version.version, {f"{ALSO_LOGGED_TAG}.{run_id}": run_name})
                    self.client.set_tag(run_id, REGISTERED_TAG, f"{registered_name}/{version.version}")
                return version.version
        version_tags = {**(tags or {}), WEIGHTS_TAG: digest}
        _refuse_secrets(version_tags, "tag")
        # The run must be the *active* one: given only run_id=, MLflow files the logged model under the
        # Default experiment, whose artifact root is ./mlruns in the caller's working directory.
        # Leaving the block marks the run FINISHED, the state log_point leaves children in anyway, but also stamps
        # its end time with now: the end log_point set (when the work ended) is put back below.
        end_time = self.client.get_run(run_id).info.end_time
        with self._storing_artifacts(run_id, "the model"), _fluent_uri(self.uri), mlflow.start_run(run_id=run_id):
            info = mlflow.pytorch.log_model(
                cpu_model,
                name="model",
                input_example=example,
                serialization_format="pt2",
                registered_model_name=registered_name,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # skips slow inference
            )
        self.client.set_terminated(run_id, "FINISHED", end_time=end_time)
        version = int(info.registered_model_version)
        for key, value in version_tags.items():
            self.client.set_model_version_tag(registered_name, str(version), key, value)
        if description:
            self.client.update_model_version(registered_name, str(version), description=description)
        self.client.set_tag(run_id, REGISTERED_TAG, f"{registered_name}/{version}")
        return version

    @_server_guard
    def model_versions(self, name: str) -> list[VersionRecord]:
        """All versions of a registered model, oldest first; empty when the model does not exist."""
        versions = self.client.search_model_versions(f"name = '{_check_name(name, 'model name')}'")
        records = [
            VersionRecord(
                name=name,
                version=int(v.version),
                run_id=v.run_id,
                tags=dict(v.tags or {}),
                aliases=tuple(getattr(v, "aliases", None) or ()),
            )
            for v in versions
        ]
        return sorted(records, key=lambda r: r.version)

    @_server_guard
    def alias_version(self, name: str, alias: str) -> int | None:
        """The version an alias points at, or None when the alias (or the model) is not set; a server that went
        away is TrackingUnavailable, never read as "no alias"."""
        try:
            return int(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code in _NOT_SET_CODES:
                return None
            raise

    @_server_guard
    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    @_server_guard
    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Write only tags whose value differs, so repeating a promotion writes nothing new."""
        _refuse_secrets(dict(tags), "tag")
        current = dict(self.client.get_model_version(name, str(version)).tags or {})
        for key, value in tags.items():
            if current.get(key) != value:
                self.client.set_model_version_tag(name, str(version), key, value)


def _ms(seconds: float | None) -> int | None:
    """Unix seconds as MLflow's milliseconds."""
    return None if seconds is None else int(seconds * 1000)


def _check_artifacts(artifacts: Sequence[str | os.PathLike], what: str) -> None:
    missing = [str(p) for p in artifacts if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"artifacts to log for {what} do not exist: {', '.join(missing)}")


def _checked(
    metrics: Mapping[str, Any] | None, tags: Mapping[str, Any] | None
) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics as floats and tags as strings, refusing non-numbers and anything that looks like a credential."""
    tag_values = {key: str(value) for key, value in (tags or {}).items()}
    _refuse_secrets(tag_values, "tag")
    return {key: _metric_value(key, value) for key, value in (metrics or {}).items()}, tag_values


def _metric_value(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metric '{key}' must be a number, got {value!r}") from exc


def _same(old: float | None, new: float) -> bool:
    return old is not None and (old == new or (math.isnan(old) and math.isnan(new)))


def _record(run) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name,
        parent_id=run.data.tags.get(PARENT_TAG),
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        start_time=None if run.info.start_time is None else run.info.start_time / 1000,
        end_time=None if run.info.end_time is None else run.info.end_time / 1000,
    )
