"""The team stack on 127.0.0.1, in one folder (default ``.alap/services/``, outside git):

    postgres   a PostgreSQL cluster of its own (postgres.py): databases ``mlflow`` and ``prefect``
    s3         `rclone serve s3` over ``<folder>/s3``: one bucket, MLflow artifacts under ``mlflow/``, DVC's remote
               under ``dvc/``
    mlflow     an MLflow tracking server on PostgreSQL proxying artifacts to the bucket (clients need no S3 keys)
    prefect    a Prefect server (API and UI) on PostgreSQL (SQLite would lock under many concurrent task runs)

`up` starts what does not run yet, in that order, each waited for; `down` stops them in reverse order and keeps
their data (the next `up` finds the same runs, models and flow runs); `status` says what runs where. The
folder holds ``stack.json`` (ports, bucket), a pid file and a log per server, and ``env.sh`` (mode 0600: it
holds the S3 keys) with the exports that point alap, MLflow, Prefect, DVC and boto3 at the stack. The S3 keys
are made once per folder and reach rclone and MLflow through their environment, never their argv or a log.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import socket
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from alap import io, storage
from alap.services import process
from alap.services.postgres import HOST, Cluster
from alap.services.process import Server, ServiceError

log = logging.getLogger(__name__)

DEFAULT_FOLDER = Path(".alap/services")
ORDER = ("postgres", "s3", "mlflow", "prefect")  # start order; `down` stops in reverse
MLFLOW_DATABASE = "mlflow"
PREFECT_DATABASE = "prefect"
MLFLOW_PREFIX = "mlflow"
READY_DEADLINE_S = 240.0  # first start on a busy 2-core machine: MLflow's and Prefect's schema migrations


@dataclass(frozen=True)
class Ports:
    postgres: int = 5433  # not 5432, where a system PostgreSQL may listen
    s3: int = 9000
    mlflow: int = 5000
    prefect: int = 4200

    def __post_init__(self) -> None:
        for name, port in asdict(self).items():
            if not 1 <= port <= 65535:
                raise ServiceError(f"--{name}-port {port} is out of range, expected 1..65535")
        if len(set(asdict(self).values())) != len(ORDER):
            raise ServiceError(f"the stack's ports must differ, got {asdict(self)}")


@dataclass(frozen=True)
class Stack:
    folder: Path
    ports: Ports
    bucket: str

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports.s3}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.ports.mlflow}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://{HOST}:{self.ports.prefect}/api"

    @property
    def cluster(self) -> Cluster:
        return Cluster(self.folder / "postgres", self.ports.postgres)

    @property
    def config_path(self) -> Path:
        return self.folder / "stack.json"

    @property
    def env_path(self) -> Path:
        return self.folder / "env.sh"

    @classmethod
    def load(cls, folder: Path) -> Stack:
        path = folder / "stack.json"
        if not path.is_file():
            raise ServiceError(f"{path}: no stack was started in {folder} (run `alap services up --dir {folder}`)")
        raw = json.loads(path.read_text())
        return cls(folder, Ports(**raw["ports"]), raw["bucket"])

    def urls(self) -> dict[str, str]:
        """Where each server answers, as `status` shows it (no credentials)."""
        return {
            "postgres": self.cluster.uri(MLFLOW_DATABASE),
            "s3": f"{self.s3_endpoint} (bucket {self.bucket})",
            "mlflow": self.mlflow_url,
            "prefect": self.prefect_api_url,
        }

    def s3_credentials(self) -> dict[str, str]:
        """The bucket's keys, made once per folder (a file of mode 0600)."""
        path = self.folder / "s3-credentials.json"
        if not path.is_file():
            # rclone rejects very short access keys; mkstemp (behind io.write_json) creates files 0600
            io.write_json(path, {"key": "alap" + secrets.token_hex(8), "secret": secrets.token_urlsafe(30)})
        raw = json.loads(path.read_text())
        return {
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": raw["key"],
            "AWS_SECRET_ACCESS_KEY": raw["secret"],
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client_env(self) -> dict[str, str]:
        """What `env.sh` exports: alap, MLflow, Prefect, DVC and boto3 then use this stack."""
        return {
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "PREFECT_API_URL": self.prefect_api_url,
            **self.s3_credentials(),
            storage.BUCKET_ENV: self.bucket,
        }

    def servers(self) -> list[Server]:
        s3 = self.s3_credentials()
        rclone = [str(storage.venv_executable("rclone")), "serve", "s3", "--addr", f"{HOST}:{self.ports.s3}"]
        rclone += ["--config", os.devnull, str(self.folder / "s3")]
        mlflow = storage.mlflow_server_command(
            self.cluster.uri(MLFLOW_DATABASE), self.bucket, HOST, self.ports.mlflow, MLFLOW_PREFIX, workers=1
        )
        prefect = [str(storage.venv_executable("prefect")), "server", "start", "--host", HOST]
        prefect += ["--port", str(self.ports.prefect), "--analytics-off"]
        return [
            self.cluster.server(),
            # rclone reads any flag from RCLONE_<FLAG> (a list flag as CSV, hence the quotes): keys stay out of argv
            Server(
                "s3",
                rclone,
                self.s3_endpoint,
                lambda: _answers(self.s3_endpoint),
                {"RCLONE_AUTH_KEY": f'"{s3["AWS_ACCESS_KEY_ID"]},{s3["AWS_SECRET_ACCESS_KEY"]}"'},
            ),
            Server(
                "mlflow",
                mlflow,
                self.mlflow_url,
                lambda: _answers(f"{self.mlflow_url}/health", ok_only=True),
                {**s3, **storage.mlflow_server_env(self.s3_endpoint), **self.cluster.client_env()},
            ),
            Server(
                "prefect",
                prefect,
                self.prefect_api_url,
                lambda: _answers(f"{self.prefect_api_url}/health", ok_only=True),
                {
                    "PREFECT_HOME": str(self.folder / "prefect"),
                    "PREFECT_API_DATABASE_CONNECTION_URL": self.cluster.uri(PREFECT_DATABASE, driver="asyncpg"),
                    **self.cluster.client_env(),
                },
            ),
        ]


def _answers(url: str, ok_only: bool = False) -> bool:
    """Whether HTTP answers at url (with 200 when ``ok_only``; any status otherwise: the server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status == 200
    except urllib.error.HTTPError:
        return not ok_only
    except (urllib.error.URLError, OSError):
        return False


def _check_free(name: str, port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise ServiceError(f"port {port} for {name} is in use on {HOST}: pick another with --{name}-port") from None


def _running(folder: Path) -> list[str]:
    return [name for name in ORDER if process.running_pid(folder, name) is not None]


def up(folder: Path = DEFAULT_FOLDER, ports: Ports | None = None, bucket: str = "alap") -> Stack:
    """Start every server of the stack that does not run yet, each waited for, and write ``env.sh``."""
    folder = io.check_output(folder, folder=True).resolve()
    stack = Stack(folder, ports or Ports(), bucket)
    running = _running(folder)
    if running:
        before = Stack.load(folder)
        if (before.ports, before.bucket) != (stack.ports, stack.bucket):
            raise ServiceError(
                f"{', '.join(running)} already run in {folder} with {asdict(before.ports)} and bucket "
                f"{before.bucket}: `alap services down --dir {folder}` first"
            )
    for name in ORDER:
        if name not in running:
            _check_free(name, getattr(stack.ports, name))
    folder.mkdir(parents=True, exist_ok=True)
    io.write_json(stack.config_path, {"ports": asdict(stack.ports), "bucket": stack.bucket})
    for server in stack.servers():
        if server.name == "postgres" and stack.cluster.init():
            log.info("made a PostgreSQL cluster in %s", stack.cluster.data)
        if server.name == "s3":
            (folder / "s3" / bucket).mkdir(parents=True, exist_ok=True)  # rclone serves each folder as a bucket
        process.start(server, folder, READY_DEADLINE_S)
        if server.name == "postgres":
            for database in (MLFLOW_DATABASE, PREFECT_DATABASE):
                stack.cluster.ensure_database(database)
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in stack.client_env().items())
    io.write_text(stack.env_path, "# alap's team stack: `source` this file (it holds the S3 keys)\n" + exports)
    return stack


def down(folder: Path = DEFAULT_FOLDER) -> list[str]:
    """Stop the stack's servers in reverse start order; return the names of those that were running."""
    return [name for name in reversed(ORDER) if process.stop(folder, name)]


@dataclass(frozen=True)
class ServerStatus:
    name: str
    pid: int | None
    url: str
    log: Path


def status(folder: Path = DEFAULT_FOLDER) -> list[ServerStatus]:
    stack = Stack.load(folder)
    urls = stack.urls()
    return [
        ServerStatus(name, process.running_pid(folder, name), urls[name], process.log_path(folder, name))
        for name in ORDER
    ]


def status_table(rows: list[ServerStatus]) -> str:
    lines = [f"{'server':<9} {'state':<20} url"]
    for row in rows:
        state = f"running (pid {row.pid})" if row.pid else "stopped"
        lines.append(f"{row.name:<9} {state:<20} {row.url}")
    return "\n".join(lines)
