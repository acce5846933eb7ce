"""One writer per folder: an advisory lock on ``<folder>/.wsolbench.lock``.

:class:`FolderLock` takes an exclusive ``flock`` on the lock file and writes who holds it (pid, host, start
time, command) into it. The operating system drops the lock when the holder exits, however it exits
(``kill -9`` included), so a lock is never stale; the holder text left in the file afterwards is harmless.
A second taker fails at once with a one-line error naming the holder. A folder the lock created is removed
again on release when nothing else was written to it (a run refused before any work leaves no trace).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
import sys
from pathlib import Path

from wsolbench.errors import WsolbenchError

LOCK_NAME = ".wsolbench.lock"


class FolderLock:
    """Exclusive, non-blocking lock of ``folder`` (created if needed) for one writer; a context manager.

    ``what`` names the folder in messages (e.g. ``"--out"``).
    """

    def __init__(self, folder: str | os.PathLike, what: str = "folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self._handle = None
        self._created = False

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise :class:`WsolbenchError` naming the holder (or why the folder is unusable)."""
        self._created = not self.folder.exists()
        while True:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                handle = open(self.path, "a+", encoding="utf-8")
            except OSError as error:
                raise WsolbenchError(f"{self.what} {self.folder} cannot be written: {error.strerror or error}") \
                    from None
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise WsolbenchError(f"{self.what} {self.folder} is in use by {holder}; wait for it to finish or "
                                     "choose another folder") from None
            if self._is_current(handle):
                break
            handle.close()  # a releasing holder removed the file between our open and our lock: take the new one
        handle.seek(0)
        handle.truncate()
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {started} ({' '.join(sys.argv)})\n")
        handle.flush()
        self._handle = handle
        return self

    def _is_current(self, handle) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Drop the lock; a folder that :meth:`acquire` created and that holds nothing else is removed."""
        if self._handle is None:
            return
        if self._created and [p.name for p in self.folder.iterdir()] == [LOCK_NAME]:
            self.path.unlink()
            self.folder.rmdir()
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
