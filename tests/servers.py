"""Real servers for integration tests: an S3 server (rclone), an MLflow tracking server and a Dask cluster.

All bind 127.0.0.1 on a free port, are waited for with a deadline, and are always stopped (their
whole process group, since `mlflow server` forks workers) when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alap import storage

# rclone rejects very short access keys with InvalidAccessKeyId, so use realistic lengths.
S3_KEY = "alaptestkey"
S3_SECRET = "alaptestsecret0123456789"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key: str
    secret: str
    root: Path  # rclone serves root/<bucket>/<key> as plain files: tests can look at them directly

    def env(self) -> dict[str, str]:
        """Environment a client (boto3, DVC, an MLflow server) needs to talk to this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    """True once anything HTTP answers at url (an error status counts: the server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def background(
    argv: list[str], log: Path, ready, deadline_s: float, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Run argv in its own process group until the block ends (yields its pid); fail with the log tail if never
    ready."""
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
    try:
        deadline = time.monotonic() + deadline_s
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{argv[0]} did not become ready within {deadline_s:.0f} s:\n{tail}")
            time.sleep(0.1)
        yield proc.pid
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's own process group, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def s3_server(tmp_path: Path, deadline_s: float = 20.0) -> Iterator[S3Server]:
    """`rclone serve s3` over tmp_path/s3 on a free port; buckets must be created through the S3 API."""
    root = tmp_path / "s3"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    empty_config = tmp_path / "rclone.conf"
    empty_config.touch()
    argv = [
        str(Path(sys.executable).parent / "rclone"),
        "serve",
        "s3",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{S3_KEY},{S3_SECRET}",
        "--config",
        str(empty_config),
        str(root),
    ]
    endpoint = f"http://127.0.0.1:{port}"
    with background(argv, tmp_path / "rclone.log", lambda: _answers(endpoint), deadline_s):
        yield S3Server(endpoint=endpoint, key=S3_KEY, secret=S3_SECRET, root=root)


@contextlib.contextmanager
def mlflow_server(
    tmp_path: Path, artifacts_destination: str, env: dict[str, str] | None = None, deadline_s: float = 90.0
) -> Iterator[str]:
    """An MLflow server (SQLite backend, one worker) proxying artifacts to an s3:// destination; yields its URL.

    The argv comes from `alap.storage.mlflow_server_command`, so the product's command is what is tested.
    """
    if not artifacts_destination.startswith("s3://"):
        raise ValueError(f"artifacts_destination must be s3://bucket[/prefix], got '{artifacts_destination}'")
    bucket, _, prefix = artifacts_destination[len("s3://") :].partition("/")
    port = free_port()
    backend = f"sqlite:///{tmp_path / 'mlflow-server.db'}"
    argv = storage.mlflow_server_command(backend, bucket, port=port, prefix=prefix, workers=1)
    url = f"http://127.0.0.1:{port}"
    server_env = {**(env or {}), **storage.mlflow_server_env((env or {}).get("AWS_ENDPOINT_URL"))}
    with background(argv, tmp_path / "mlflow-server.log", lambda: _healthy(f"{url}/health"), deadline_s, server_env):
        yield url


@dataclass(frozen=True)
class DaskCluster:
    address: str
    worker_pids: list[int]  # in the order of the resources asked for; a worker without a nanny is this process


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def dask_cluster(
    tmp_path: Path, worker_resources: list[dict[str, float]], env: dict[str, str] | None = None, deadline_s=120.0
) -> Iterator[DaskCluster]:
    """`dask scheduler` and one single-threaded `dask worker --resources ...` per entry (``{}``: none), as separate
    processes on 127.0.0.1, as an operator starts them on a real cluster; workers preload alap's flow tasks."""
    from distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    with contextlib.ExitStack() as stack:
        stack.enter_context(background(scheduler, tmp_path / "scheduler.log", lambda: _listening(port), deadline_s))
        pids = []
        for index, resources in enumerate(worker_resources):
            worker = [dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny"]
            worker += ["--no-dashboard", "--preload", "flows.tasks", "--name", f"worker{index}"]
            if resources:
                worker += ["--resources", " ".join(f"{k}={v:g}" for k, v in resources.items())]
            log = tmp_path / f"worker{index}.log"
            pids.append(stack.enter_context(background(worker, log, lambda: True, deadline_s, env)))
        with Client(address, timeout=deadline_s) as client:
            client.wait_for_workers(len(worker_resources), timeout=deadline_s)
        yield DaskCluster(address, pids)
