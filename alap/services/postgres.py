"""A PostgreSQL cluster of its own in a folder: the team stack's MLflow backend store.

The cluster is made once with ``initdb`` (superuser ``alap``, a random password, scram-sha-256 for every
connection) and served on 127.0.0.1 only, without a Unix socket (a socket path in a deep folder would pass the
107-byte limit). The password lives only in ``pgpass`` (mode 0600), which libpq reads through ``PGPASSFILE``:
URIs, argv and logs never hold it.

PostgreSQL refuses to run as root. As root, ``initdb`` and ``postgres`` run in a new user namespace that maps
this uid to ``nobody``: inside they are not root; outside they are still the owner of root's files, so the
cluster can live in any folder root owns (pytest's 0700 temporary folders too) and nothing needs ``chown``.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from alap import io
from alap.services.process import Server, ServiceError

BINDIR_ENV = "ALAP_PG_BINDIR"
DEBIAN_BINDIRS = Path("/usr/lib/postgresql")
INSTALL_HINT = (
    f"install PostgreSQL (Debian: apt-get install -y postgresql) or set {BINDIR_ENV} to the folder holding "
    "initdb and postgres"
)
SUPERUSER = "alap"
HOST = "127.0.0.1"


def bindir() -> Path:
    """$ALAP_PG_BINDIR, else the folder of an ``initdb`` on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    if os.environ.get(BINDIR_ENV):
        folder = Path(os.environ[BINDIR_ENV])
        if not (folder / "initdb").is_file():
            raise ServiceError(f"{BINDIR_ENV}={folder} holds no initdb; {INSTALL_HINT}")
        return folder
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    versions = [p.parent for p in DEBIAN_BINDIRS.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    if not versions:
        raise ServiceError(f"PostgreSQL's initdb was not found (PATH, {DEBIAN_BINDIRS}/N/bin); {INSTALL_HINT}")
    return max(versions, key=lambda folder: int(folder.parent.name))


def unprivileged(argv: list[str]) -> list[str]:
    """argv as it must run for PostgreSQL: unchanged for a normal user, in a user namespace as root."""
    if os.geteuid() != 0:
        return argv
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ServiceError("PostgreSQL cannot run as root and `unshare` (util-linux) is not installed")
    nobody = pwd.getpwnam("nobody")
    return [unshare, "--user", f"--map-user={nobody.pw_uid}", f"--map-group={nobody.pw_gid}", *argv]


@dataclass(frozen=True)
class Cluster:
    """The cluster in ``root`` (data/, pgpass, initdb.log), served on ``port``."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    def init(self) -> bool:
        """Make the cluster unless it exists; True if made. A failed ``initdb`` leaves no half cluster."""
        if (self.data / "PG_VERSION").is_file():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.data, ignore_errors=True)
        password = secrets.token_urlsafe(24)
        password_file = self.root / "initdb-password"
        io.write_text(password_file, password)  # mkstemp files are 0600; initdb reads it, then it is deleted
        try:
            argv = [str(bindir() / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={password_file}"]
            argv += ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"]
            result = subprocess.run(unprivileged(argv), capture_output=True, text=True, check=False)
        finally:
            password_file.unlink(missing_ok=True)
        io.write_text(self.root / "initdb.log", result.stdout + result.stderr)
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise ServiceError(f"initdb failed with {result.returncode}; see {self.root / 'initdb.log'}")
        io.write_text(self.pgpass, f"{HOST}:*:*:{SUPERUSER}:{password}\n")  # 0600, as libpq requires
        return True

    def password(self) -> str:
        return self.pgpass.read_text().strip().split(":", 4)[4]

    def uri(self, database: str, driver: str = "psycopg2") -> str:
        """SQLAlchemy URI without the password: libpq (psycopg2, MLflow) and asyncpg (Prefect) read it from
        PGPASSFILE (:meth:`client_env`). The driver is named: SQLAlchemy 2.1's default is psycopg 3, not installed."""
        return f"postgresql+{driver}://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def client_env(self) -> dict[str, str]:
        return {"PGPASSFILE": str(self.pgpass)}

    def connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host=HOST, port=self.port, user=SUPERUSER, password=self.password(), dbname=database, connect_timeout=3
        )

    def answers(self) -> bool:
        import psycopg2

        try:
            self.connect().close()
        except psycopg2.OperationalError:
            return False
        return True

    def server(self) -> Server:
        argv = [str(bindir() / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += ["-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories="]
        # SIGINT is PostgreSQL's fast shutdown: clients are disconnected, nothing waits for them.
        return Server("postgres", unprivileged(argv), self.uri(""), self.answers, stop_signal=signal.SIGINT)

    def ensure_database(self, name: str) -> None:
        """Create the database unless it exists (CREATE DATABASE cannot run in a transaction: autocommit)."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ServiceError(f"database name {name!r} must be lower-case letters, digits and _")
        connection = self.connect()
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f"CREATE DATABASE {name}")
        finally:
            connection.close()
