"""S3 object storage for teams: check a bucket, create it, point DVC and an MLflow server at it.

This is the only module in alap that imports boto3. Credentials come from the environment or the
AWS config files only (boto3's own credential chain), so nothing secret ever has to be written into
the repository; DVC settings that may carry an endpoint or credentials go to ``.dvc/config.local``,
which DVC keeps out of git.

Environment:
    AWS_ENDPOINT_URL or ALAP_S3_ENDPOINT   endpoint of an S3-compatible server (unset: AWS itself)
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (or an AWS profile)
    ALAP_S3_BUCKET                         bucket used when none is passed
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from alap.errors import UserError

BUCKET_ENV = "ALAP_S3_BUCKET"
ENDPOINT_ENVS = ("AWS_ENDPOINT_URL", "ALAP_S3_ENDPOINT")
CREATE_HINT = "create it with `alap storage --bucket {bucket} --create-bucket` (alap.storage.create_bucket)"

_UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
_CREDENTIAL_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}
_MISSING_CODES = {"404", "NoSuchBucket", "NotFound"}


class StorageError(UserError):
    """Any failure talking to S3; the message names the endpoint and bucket involved."""


class StorageUnreachable(StorageError):
    """The endpoint did not answer (after the bounded retries)."""


class StorageCredentialsError(StorageError):
    """No credentials were found, or the server rejected them."""


class MissingBucketError(StorageError):
    """The server answered, but the bucket does not exist."""


@dataclass(frozen=True)
class BucketInfo:
    """What `check_bucket` found: enough to show a user that storage is wired up."""

    bucket: str
    endpoint: str
    region: str | None
    sample_keys: tuple[str, ...]


def resolve_endpoint(endpoint: str | None = None) -> str | None:
    """An explicit endpoint wins, then AWS_ENDPOINT_URL, then ALAP_S3_ENDPOINT; None means AWS."""
    if endpoint:
        return endpoint
    for name in ENDPOINT_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def resolve_bucket(bucket: str | None = None) -> str:
    """An explicit bucket wins over ALAP_S3_BUCKET; neither is an error that says how to set one."""
    name = bucket or os.environ.get(BUCKET_ENV)
    if not name:
        raise StorageError(f"no S3 bucket given: pass one or set {BUCKET_ENV}")
    return name


def s3_client(endpoint: str | None = None, *, timeout: float = 10.0, max_attempts: int = 3):
    """A boto3 S3 client with bounded retries and timeouts.

    botocore's "standard" retry mode retries throttling, 5xx and connection faults with backoff up to
    ``max_attempts`` in total, so a transient fault is absorbed while a dead endpoint fails fast.
    Path-style addressing works with every S3-compatible server (rclone, SeaweedFS, MinIO) and AWS.
    """
    config = Config(
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=timeout,
        s3={"addressing_style": "path"},
        signature_version="s3v4",
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=resolve_endpoint(endpoint), region_name=region, config=config)


def _describe(endpoint: str | None) -> str:
    return endpoint or "AWS S3 (no endpoint set)"


def _translate(exc: Exception, bucket: str, endpoint: str | None, action: str) -> StorageError:
    """Turn a boto3 failure into one of our errors, naming the endpoint, bucket and the fix."""
    where = _describe(endpoint)
    if isinstance(exc, _UNREACHABLE):
        return StorageUnreachable(f"S3 endpoint {where} is unreachable while trying to {action} '{bucket}': {exc}")
    if isinstance(exc, NoCredentialsError):
        return StorageCredentialsError(
            f"no AWS credentials found for S3 endpoint {where}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or an AWS profile)"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _CREDENTIAL_CODES:
            return StorageCredentialsError(
                f"S3 endpoint {where} rejected the credentials (access key id "
                f"'{_access_key_id() or '?'}') while trying to {action} '{bucket}': {code}. "
                "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            )
        if code in _MISSING_CODES:
            return MissingBucketError(
                f"S3 bucket '{bucket}' does not exist at {where}; " + CREATE_HINT.format(bucket=bucket)
            )
        return StorageError(f"S3 endpoint {where} refused to {action} '{bucket}': {exc}")
    return StorageError(f"S3 request to {where} failed while trying to {action} '{bucket}': {exc}")


def _access_key_id() -> str | None:
    """The access key id in use (not secret: AWS prints it in its own errors), to say which was rejected."""
    credentials = boto3.session.Session().get_credentials()
    return credentials.access_key if credentials else None


def check_bucket(
    bucket: str | None = None, endpoint: str | None = None, *, timeout: float = 10.0, max_attempts: int = 3
) -> BucketInfo:
    """Prove that the bucket exists and the credentials may read it; raise a StorageError subclass otherwise."""
    name = resolve_bucket(bucket)
    url = resolve_endpoint(endpoint)
    client = s3_client(url, timeout=timeout, max_attempts=max_attempts)
    try:
        head = client.head_bucket(Bucket=name)
        listing = client.list_objects_v2(Bucket=name, MaxKeys=5)
    except (BotoCoreError, ClientError) as exc:
        raise _translate(exc, name, url, "read bucket") from exc
    region = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    keys = tuple(item["Key"] for item in listing.get("Contents", []))
    return BucketInfo(bucket=name, endpoint=_describe(url), region=region, sample_keys=keys)


def create_bucket(bucket: str | None = None, endpoint: str | None = None, *, timeout: float = 10.0) -> bool:
    """Create the bucket; True if created, False if it already existed (so reruns are harmless)."""
    name = resolve_bucket(bucket)
    url = resolve_endpoint(endpoint)
    client = s3_client(url, timeout=timeout)
    try:
        client.create_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            check_bucket(name, url, timeout=timeout)  # "exists" must also mean "is ours to use"
            return False
        raise _translate(exc, name, url, "create bucket") from exc
    except BotoCoreError as exc:
        raise _translate(exc, name, url, "create bucket") from exc
    return True


def venv_executable(name: str) -> Path:
    """The console script installed beside this interpreter, so a venv's tools are used without PATH tricks."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"'{name}' is not installed next to {sys.executable} (expected {path})")
    return path


def _dvc(repo_dir: Path, *args: str) -> None:
    result = subprocess.run(
        [str(venv_executable("dvc")), *args], cwd=repo_dir, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StorageError(f"`dvc {' '.join(args[:3])} ...` failed in {repo_dir}: {result.stderr.strip()}")


def configure_dvc_remote(
    repo_dir: str | os.PathLike,
    name: str = "storage",
    url: str | None = None,
    endpoint: str | None = None,
    default: bool = True,
    store_credentials: bool = False,
) -> str:
    """Add (or update) an S3 DVC remote in ``.dvc/config.local`` and return its URL.

    Everything goes to the *local* config so that an endpoint of a private server and, when
    ``store_credentials`` is asked for, the keys never reach git. Without ``store_credentials`` DVC
    reads the same environment / AWS config that boto3 does, which is the safer default.
    """
    repo = Path(repo_dir)
    if not (repo / ".dvc").is_dir():
        raise FileNotFoundError(f"{repo} is not a DVC repository (no .dvc directory): run `dvc init` there first")
    remote_url = url or f"s3://{resolve_bucket(None)}/dvc"
    if not remote_url.startswith("s3://"):
        raise ValueError(f"DVC remote url must start with s3://, got '{remote_url}'")
    _dvc(repo, "remote", "add", "--local", "--force", *(["--default"] if default else []), name, remote_url)
    server = resolve_endpoint(endpoint)
    if server:
        _dvc(repo, "remote", "modify", "--local", name, "endpointurl", server)
    if store_credentials:
        credentials = boto3.session.Session().get_credentials()
        if credentials is None:
            raise StorageCredentialsError("store_credentials=True but no AWS credentials are configured")
        frozen = credentials.get_frozen_credentials()
        _dvc(repo, "remote", "modify", "--local", name, "access_key_id", frozen.access_key)
        _dvc(repo, "remote", "modify", "--local", name, "secret_access_key", frozen.secret_key)
    return remote_url


def mlflow_server_command(
    backend_uri: str,
    bucket: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    prefix: str = "mlflow",
    workers: int | None = None,
) -> list[str]:
    """argv for an MLflow tracking server that proxies artifacts to ``s3://bucket/prefix``.

    Clients then upload through the server (``mlflow-artifacts:/``) and need no S3 credentials;
    the server process itself needs them plus `mlflow_server_env` for a non-AWS endpoint.
    """
    destination = f"s3://{bucket}/{prefix.strip('/')}" if prefix.strip("/") else f"s3://{bucket}"
    argv = [
        str(venv_executable("mlflow")),
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        destination,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if workers is not None:
        argv += ["--workers", str(workers)]
    return argv


def mlflow_server_env(endpoint: str | None = None) -> dict[str, str]:
    """Environment additions for `mlflow_server_command`: the S3 endpoint (when not AWS), and no job runner.

    MLflow 3 servers start a background job runner (huey) for GenAI evaluation jobs by default; alap
    never submits such jobs, and the extra process costs start-up time and CPU on small machines.
    """
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = resolve_endpoint(endpoint)
    if server:
        env["MLFLOW_S3_ENDPOINT_URL"] = server
    return env
