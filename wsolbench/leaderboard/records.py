"""Finding and reading run records for the leaderboard: a bad file is skipped with one warning, never a crash.

Run records are the source of truth (:mod:`wsolbench.results`). :func:`load_records` reads every
``record.json`` under the given files and folders; a half-written, corrupt, incomplete or future-version
record is skipped with a one-line warning naming the file (:func:`wsolbench.results.read_record` says what is
wrong), so that one broken run cannot hide the others. Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from wsolbench.errors import WsolbenchError
from wsolbench.results import read_record

RECORD_FILE = "record.json"


def find_record_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every ``record.json`` given directly or found under a folder (recursively), sorted, each once."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found.update(p for p in path.rglob(RECORD_FILE) if p.is_file())
        elif path.is_file():
            found.add(path)
        else:
            raise WsolbenchError(f"{path}: no such run record or folder")
    return sorted(found)


def load_records(paths: Iterable[str | os.PathLike], warn: Callable[[str], None]) -> list[tuple[Path, dict]]:
    """``(file, record)`` for every readable record under ``paths``; ``warn(line)`` for each skipped file."""
    loaded = []
    for path in find_record_files(paths):
        try:
            loaded.append((path, read_record(path)))
        except WsolbenchError as error:
            warn(f"skipping {error}")
    return loaded
