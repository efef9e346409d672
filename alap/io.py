"""Atomic file output: a killed process leaves the previous file or none, never half of one.

Every stage writes through these helpers (docs/architecture.md: outputs are written atomically), after
:func:`check_output` has refused a path that cannot be written; torch files are read back through :func:`load_weights`,
which never unpickles code and says in one line what a file that is not one is. Imports nothing heavy: the CLI uses it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alap.errors import UserError


def check_output(path: str | os.PathLike, folder: bool = False) -> Path:
    """Refuse an output path that cannot be written, before any work: a directory where a file goes (or a file
    where a folder goes), a path under a file, or a folder without write permission. Returns the path."""
    path = Path(path)
    want, other = ("a folder", "a file") if folder else ("a file", "a directory")
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{path}: is {other}; expected {want} to write")
    parent = path if folder else path.parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{path}: cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{path}: cannot be written: no write permission in {existing}")
    return path


# A full disk or quota: the user's to fix (free space, another folder), not a bug.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(UserError):
    """The device ran out of space while writing; the previous file under the final name is untouched."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic, and is named after
    ``path`` and this process (``.<name>.<pid>.<random>.tmp``), so that temporary files of ``path`` left by a writer
    that was killed (``kill -9`` skips the cleanup) are removed by the next write of ``path``. A full disk is a
    :class:`DiskFull` naming ``path`` (one line, exit 2): a resume checkpoint that could not be saved leaves the
    previous one whole, so the run resumes from it once there is space.
    """
    target = check_output(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_writers_temps(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise DiskFull(f"no space left on device writing {target}") from exc
        raise


def _remove_dead_writers_temps(target: Path) -> None:
    """Delete the temporary files of ``target`` whose process is gone; a live writer's (another thread or process)
    stays. A recycled pid only leaves a file in place."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = stale.name[len(target.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through an open file, atomically.

    Given a path, torch names the records inside the zip after the file, here a random temporary name, so the
    same weights would hash differently on every run and DVC would see every rerun as a new model. Through a file
    object the records are always named ``archive``: same tensors, same bytes.
    """
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


def load_weights(path: str | os.PathLike, expected: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, or one line saying what the file is and that ``expected`` was
    expected. Never torch's own message: it suggests ``weights_only=False``, which would run any code the file
    holds, and spans several lines with terminal escapes."""
    import torch

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; expected {expected}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected {expected}")
    try:
        with warnings.catch_warnings():  # a plain pickle of protocol > 2 warns before failing; the error says more
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path}: {_what_is(path, err)}; expected {expected}") from None


def _what_is(path: Path, err: Exception) -> str:
    """What a file that ``torch.load(weights_only=True)`` refused holds, judged from its first bytes."""
    with path.open("rb") as handle:
        head = handle.read(512)
    unsafe = re.search(r"GLOBAL (\S+) was not an allowed global", str(err))
    if not head:
        return "is empty"
    if unsafe:
        return f"holds Python objects ({unsafe[1]}), not only tensors: refused, since loading them could run code"
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return "is truncated or damaged (a PyTorch zip archive without its end)"
        return "is a zip archive but not a PyTorch file"
    if head[0] == 0x80:  # a pickle's protocol opcode
        return "is a Python pickle but not a PyTorch file of tensors"
    try:
        head[:-4].decode("utf-8")  # a multi-byte character may be cut at the end of the block
        return "is a text file, not a PyTorch file"
    except UnicodeDecodeError:
        return "is not a PyTorch file"
