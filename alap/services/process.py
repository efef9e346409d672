"""Detached servers that outlive the command that started them.

Each server runs in its own session (so its process group holds it and every worker it forks), logs to
``<folder>/<name>.log`` and is recorded in ``<folder>/<name>.pid`` with its kernel start time, so a later
`down` or `status` never mistakes a process that reused the pid for the server. Stopping signals the whole
group and waits until no process of it is left (then SIGKILLs what lingers), so nothing keeps a port open.
Linux only: liveness is read from /proc.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alap import io
from alap.errors import UserError

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0


class ServiceError(UserError):
    """A server did not start or answer; the message names it and its log file."""


@dataclass(frozen=True)
class Server:
    """One server: how to run it, where it answers (shown by `status`, never with credentials), and when it is up.

    Secrets go in ``env`` (the server reads them from its environment), never in ``argv``, which every local
    user can read in ``ps``."""

    name: str
    argv: list[str]
    url: str
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM


def pid_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.pid"


def log_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.log"


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks) of a live process, None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[2]), int(fields[19])


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is alive (zombies, which hold no port or file, do not count)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat[1] == pgid and stat[0] != "Z":
                return True
    return False


def _recorded(folder: Path, name: str) -> dict | None:
    try:
        return json.loads(pid_path(folder, name).read_text())
    except FileNotFoundError:
        return None


def running_pid(folder: Path, name: str) -> int | None:
    """The server's pid when the process recorded in its pid file still runs (same pid, same start time)."""
    record = _recorded(folder, name)
    if record is None:
        return None
    stat = _stat(record["pid"])
    if stat is None or stat[0] == "Z" or stat[2] != record["started"]:
        return None
    return record["pid"]


def start(server: Server, folder: Path, deadline_s: float) -> int:
    """Start the server detached unless it already runs; wait until it is ready; return its pid.

    A server that exits or is not ready by the deadline is stopped and reported with its log's last line."""
    pid = running_pid(folder, server.name)
    if pid is not None:
        log.info("%s already runs (pid %d) at %s", server.name, pid, server.url)
        return pid
    log_file = log_path(folder, server.name)
    with open(log_file, "ab") as sink:
        proc = subprocess.Popen(
            server.argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **server.env},
            cwd=folder,
            start_new_session=True,
        )
    record = {"pid": proc.pid, "started": _stat(proc.pid)[2], "stop_signal": int(server.stop_signal)}
    io.write_json(pid_path(folder, server.name), record)
    deadline = time.monotonic() + deadline_s
    while not server.ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            exited = proc.poll() is not None
            stop(folder, server.name)
            lines = log_file.read_text(errors="replace").strip().splitlines() or ["(empty)"]
            what = f"exited with {proc.returncode}" if exited else f"was not ready within {deadline_s:.0f} s"
            raise ServiceError(f"{server.name} {what}; see {log_file}; its last line: {lines[-1]}")
        time.sleep(0.2)
    log.info("%s runs (pid %d) at %s; log %s", server.name, proc.pid, server.url, log_file)
    return proc.pid


def stop(folder: Path, name: str, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the server's whole process group with its stop signal (SIGKILL after ``timeout_s``); True if one was
    running."""
    record = _recorded(folder, name)
    if record is None:
        return False
    pid = record["pid"]
    leader = _stat(pid)
    # While any process of a group lives, its id is not handed out again: a live group with the recorded id is
    # the server's, unless the id now leads an unrelated process (the server's group ended, the pid was reused).
    ours = leader is None or leader[0] == "Z" or leader[2] == record["started"]
    was_running = ours and group_alive(pid)
    if was_running:
        _signal_group(pid, record["stop_signal"])
        if not _wait_gone(pid, timeout_s):
            log.warning("%s (pid %d) did not stop within %.0f s: killing its process group", name, pid, timeout_s)
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, timeout_s)
    _reap(pid)
    pid_path(folder, name).unlink(missing_ok=True)
    return was_running


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_alive(pgid):
        _reap(pgid)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when this process started the server (``up`` and ``down`` in one process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
