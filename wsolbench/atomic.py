"""Atomic files: written under a temporary name of their own in the destination's folder, then renamed.

A reader sees the old file or the new one, never a torn one. Every writer has its own temporary
(``.<name>.<pid>-<random>.tmp``), so concurrent writers never collide; a writer killed with ``kill -9``
leaves only such a temporary behind, which :func:`remove_stale_temporaries` deletes (a folder built under
such a name, then renamed into place, is a temporary too). This protects against
killed processes; it does not ``fsync`` (except :func:`write_text` with ``durable=True``), so it is not a
guarantee against power loss.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]{12}\.tmp$")
_HOST = uuid.uuid5(uuid.NAMESPACE_DNS, socket.gethostname()).hex[:8]


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.<pid>-<host>-<random>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}-{_HOST}-{uuid.uuid4().hex[:12]}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new contents to; when the block ends without an error it
    replaces ``path`` (``os.replace``), otherwise it is deleted. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> None:
    """Replace ``path`` by ``text`` (UTF-8) atomically; ``durable`` also fsyncs it before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is named as :func:`temporary_path` names temporaries."""
    return _TEMPORARY.match(path.name) is not None


def _writer_gone(path: Path) -> bool:
    """Whether the process that named this temporary is no longer running (on this host; a temporary of
    another host counts as gone only through the caller's lock)."""
    match = _TEMPORARY.match(path.name)
    if match["host"] != _HOST:
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except (ProcessLookupError, OverflowError):  # no such process (or no process could have that pid)
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _temporaries(folder: Path, recursive: bool) -> Iterator[Path]:
    """The temporaries in ``folder`` and, if ``recursive``, in its subfolders (not those inside a temporary
    folder). Folders that vanish or cannot be read while walking are skipped."""
    for parent, folders, files in os.walk(folder):
        for name in files + folders:
            if _TEMPORARY.match(name):
                yield Path(parent, name)
        folders[:] = [name for name in folders if not _TEMPORARY.match(name)] if recursive else []


def _remove(path: Path) -> bool:
    """Delete the file or folder ``path`` as far as permitted; whether it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:  # gone already, or not ours to delete
            pass
    return not os.path.lexists(path)


def remove_stale_temporaries(folder: str | os.PathLike, *, locked: bool = False,
                             recursive: bool = True) -> list[Path]:
    """Delete the temporaries (files or folders) under ``folder`` left by killed writers; return them.

    With ``locked`` the caller holds the folder's lock (:class:`wsolbench.lock.FolderLock`), so every
    temporary there is stale; otherwise only those whose writer process has gone are. ``recursive=False``
    looks in ``folder`` itself only (one listing, for a cache folder used often). A temporary that cannot
    be deleted (another user's) is left alone and not returned.
    """
    return [path for path in _temporaries(Path(folder), recursive)
            if (locked or _writer_gone(path)) and _remove(path)]
