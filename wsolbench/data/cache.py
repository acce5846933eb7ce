"""wsolbench's cache folder: ``$WSOLBENCH_CACHE`` if set, else ``~/.cache/wsolbench``.

It holds generated synthetic datasets (``synthetic/<params hash>/``) and decoded image arrays
(``decoded/<split hash>.npy``); anything in it can be deleted and is rebuilt on the next use. An entry
found incomplete or damaged is rebuilt too, and the temporaries of killed writers are deleted, by the
code that uses it (:mod:`wsolbench.data.pipeline`, :mod:`wsolbench.data.synthetic`). Processes that
build the same entry at once take turns through :func:`entry_lock`.
"""

from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from wsolbench.errors import WsolbenchError

CACHE_ENV = "WSOLBENCH_CACHE"


def cache_root() -> Path:
    """The cache folder (not created here)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "wsolbench")


@contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Hold the exclusive lock of the cache entry ``entry`` (a file or folder) while checking and building it.

    The lock is a blocking ``flock`` on ``.<name>.lock`` beside the entry, released by the operating system
    however its holder exits; the lock file is kept (deleting it would let two processes lock two files).
    A process that has to wait says so once on stderr. A lock file that cannot be created or locked is a
    :class:`WsolbenchError`.
    """
    lock = entry.with_name(f".{entry.name}.lock")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
    except OSError as error:
        raise WsolbenchError(f"cannot write the cache folder {entry.parent}: {error.strerror or error}") from None
    with handle:
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"wsolbench: waiting for another process to build {entry}", file=sys.stderr)
                fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:
            raise WsolbenchError(f"cannot lock {lock}: {error.strerror or error} (the cache folder needs a file "
                                 f"system with flock; set {CACHE_ENV} to a local folder)") from None
        yield
