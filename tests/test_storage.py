"""alap.storage against a real S3 server (rclone) and a tiny fault-injecting HTTP server (DVC push/pull of real
outputs through S3 is in test_flows.py)."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest
from servers import S3Server, free_port, s3_server

from alap import storage


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> S3Server:
    with s3_server(tmp_path_factory.mktemp("s3srv")) as server:
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch) -> S3Server:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ALAP_S3_ENDPOINT", raising=False)
    return s3


def test_endpoint_and_bucket_resolution(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("ALAP_S3_ENDPOINT", "http://alap:1")
    assert storage.resolve_endpoint() == "http://alap:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://aws:2")
    assert storage.resolve_endpoint() == "http://aws:2"
    assert storage.resolve_endpoint("http://arg:3") == "http://arg:3"
    monkeypatch.delenv("ALAP_S3_BUCKET", raising=False)
    with pytest.raises(storage.StorageError, match="ALAP_S3_BUCKET"):
        storage.resolve_bucket()
    monkeypatch.setenv("ALAP_S3_BUCKET", "from-env")
    assert storage.resolve_bucket() == "from-env"
    assert storage.resolve_bucket("arg") == "arg"


def test_mlflow_server_command_and_env():
    argv = storage.mlflow_server_command("sqlite:///x.db", "team", port=5123, prefix="/runs/", workers=2)
    assert Path(argv[0]).name == "mlflow" and Path(argv[0]).exists()
    assert argv[1:] == [
        "server",
        "--backend-store-uri",
        "sqlite:///x.db",
        "--artifacts-destination",
        "s3://team/runs",
        "--host",
        "127.0.0.1",
        "--port",
        "5123",
        "--workers",
        "2",
    ]
    env = storage.mlflow_server_env("http://s3:9")
    assert env == {"MLFLOW_S3_ENDPOINT_URL": "http://s3:9", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@pytest.mark.integration
def test_check_bucket_ok_after_create(s3_env: S3Server):
    assert storage.create_bucket("alap-ok") is True
    assert storage.create_bucket("alap-ok") is False  # rerun is harmless
    info = storage.check_bucket("alap-ok")
    assert info.bucket == "alap-ok" and info.endpoint == s3_env.endpoint and info.sample_keys == ()
    assert (s3_env.root / "alap-ok").is_dir()


@pytest.mark.integration
def test_check_bucket_wrong_credentials(s3_env: S3Server, monkeypatch):
    storage.create_bucket("alap-creds")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all")
    with pytest.raises(storage.StorageCredentialsError, match="rejected the credentials") as err:
        storage.check_bucket("alap-creds")
    assert s3_env.endpoint in str(err.value) and "not-the-secret" not in str(err.value)


@pytest.mark.integration
def test_check_bucket_missing(s3_env: S3Server):
    with pytest.raises(storage.MissingBucketError, match="alap storage --bucket no-such-bucket --create-bucket"):
        storage.check_bucket("no-such-bucket")


def test_check_bucket_unreachable_is_fast_and_named(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "somekeyid")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "somesecret")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(storage.StorageUnreachable, match=endpoint.replace(".", r"\.")):
        storage.check_bucket("any-bucket", endpoint, timeout=1.0, max_attempts=2)
    assert time.monotonic() - start < 15


class _FlakyS3(http.server.BaseHTTPRequestHandler):
    """Answers HEAD with 503 SlowDown for the first `failures` requests, then 200: a transient fault."""

    failures = 0
    seen = 0

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        type(self).seen += 1
        self.send_response(503 if type(self).seen <= type(self).failures else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        body = b'<?xml version="1.0"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount></ListBucketResult>'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("failures, attempts, ok", [(2, 3, True), (2, 2, False)])
def test_transient_faults_are_retried_a_bounded_number_of_times(monkeypatch, failures, attempts, ok):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "somekeyid")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "somesecret")
    handler = type("Flaky", (_FlakyS3,), {"failures": failures, "seen": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        if ok:
            assert storage.check_bucket("flaky-bucket", endpoint, timeout=2.0, max_attempts=attempts).bucket
        else:
            with pytest.raises(storage.StorageError, match=endpoint.replace(".", r"\.")):
                storage.check_bucket("flaky-bucket", endpoint, timeout=2.0, max_attempts=attempts)
    finally:
        server.shutdown()
        server.server_close()
    assert handler.seen == min(failures + 1, attempts)


def test_configure_dvc_remote_rejects_non_dvc_dir_and_bad_url(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="dvc init"):
        storage.configure_dvc_remote(tmp_path, "team", "s3://b/dvc")
    (tmp_path / ".dvc").mkdir()
    with pytest.raises(ValueError, match="s3://"):
        storage.configure_dvc_remote(tmp_path, "team", "gs://b/dvc")
