"""Fetch and unpack dataset archives: resumable, checksummed downloads and safe extraction.

:func:`download` streams a URL (``http``, ``https`` or ``file``) into ``<dest>.part`` and renames it to
``dest`` only once it is complete and, when a SHA-256 is given, verified. A ``.part`` left by an interrupted
run is resumed with an HTTP ``Range`` request; a server that ignores ``Range`` answers with the whole file,
which is then written from the start. Every failure is one :class:`~wsolbench.errors.WsolbenchError` line
naming the URL and the file.

:func:`extract` unpacks ``.tar``, ``.tgz``, ``.tar.gz`` and ``.zip`` archives, refuses members that would land
outside the destination (and, with Python's ``data`` filter, links, devices and unsafe modes), and writes a
marker file when done, so a rerun skips an archive it has already unpacked.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from wsolbench import __version__
from wsolbench.errors import WsolbenchError

CHUNK_SIZE = 1 << 20
TIMEOUT_S = 60
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, *, resume: bool = True,
             progress: bool = True, timeout: float = TIMEOUT_S) -> str:
    """Download ``url`` to ``dest`` and return the file's SHA-256 (hex).

    Skips the transfer when ``dest`` already exists and matches ``sha256`` (or when no ``sha256`` is given).
    A file that fails the check is removed and the error says so; a transfer that ends early keeps its
    ``.part`` so that the next call resumes it. With ``progress``, a tqdm bar goes to stderr when it is a
    terminal.
    """
    dest = Path(dest)
    expected_hash = sha256.lower() if sha256 else None
    if dest.is_file():
        actual = sha256_of(dest)
        if expected_hash is None or actual == expected_hash:
            return actual
        print(f"wsolbench: {dest} does not match its checksum; downloading it again", file=sys.stderr)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if resume and part.is_file() else 0

    response, offset, total = _start(url, dest, offset, timeout)
    with response:
        digest = hashlib.sha256()
        if offset:
            with open(part, "rb") as file:
                for chunk in iter(lambda: file.read(CHUNK_SIZE), b""):
                    digest.update(chunk)
        received = offset
        with open(part, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                disable=None if progress else True, file=sys.stderr, leave=False) as bar:
            try:
                for chunk in iter(lambda: response.read(CHUNK_SIZE), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:
                raise WsolbenchError(f"download of {url} to {dest} broke off after {received} bytes "
                                     f"({type(error).__name__}: {error}); rerun to resume from {part}") from None
    if total is not None and received < total:
        raise WsolbenchError(f"download of {url} to {dest} is truncated: got {received} of {total} bytes; "
                             f"rerun to resume from {part}")
    if total is not None and received > total:
        part.unlink()
        raise WsolbenchError(f"download of {url} to {dest} sent {received} bytes, more than the {total} announced; "
                             "the file was removed")
    actual = digest.hexdigest()
    if expected_hash is not None and actual != expected_hash:
        part.unlink()
        raise WsolbenchError(f"checksum mismatch for {dest} downloaded from {url}: expected sha256 {expected_hash}, "
                             f"got {actual}; the file was removed")
    os.replace(part, dest)
    return actual


def _start(url: str, dest: Path, offset: int, timeout: float):
    """Open the transfer; return ``(response, offset, total)``, where ``offset`` is where the body starts.

    A ``206`` for exactly the asked range resumes at ``offset``; any other answer means starting over at 0.
    ``total`` is the full file size when the server tells it, else None.
    """
    response = _open(url, dest, offset, timeout)
    if offset and (response.status or 200) == 206:
        start, total = _parse_content_range(response.headers.get("Content-Range"))
        if start == offset:
            return response, offset, total if total is not None else _announced(response, offset)
        response.close()  # another range than the one asked for: start over
        response = _open(url, dest, 0, timeout)
    return response, 0, _announced(response, 0)


def _announced(response, offset: int) -> int | None:
    """Total size implied by ``Content-Length`` for a body starting at ``offset``, or None."""
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _open(url: str, dest: Path, offset: int, timeout: float):
    """Open ``url``, asking for bytes from ``offset`` on; a 416 (the ``.part`` is not shorter than the file)
    restarts from 0."""
    headers = {"User-Agent": f"wsolbench/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return _open(url, dest, 0, timeout)
        raise WsolbenchError(f"cannot download {url} to {dest}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise WsolbenchError(f"cannot download {url} to {dest}: {error.reason}") from None
    except (OSError, http.client.HTTPException) as error:
        raise WsolbenchError(f"cannot download {url} to {dest}: {type(error).__name__}: {error}") from None


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not match:
        return None, None
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


# --- extraction ------------------------------------------------------------------------------------------

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Unpack ``archive`` into ``dest_dir`` (created) and return ``dest_dir``.

    A marker file ``dest_dir/.extracted-<archive name>`` records a finished extraction of an archive of
    that name and size; while it is there, a rerun returns at once.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if not archive.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise WsolbenchError(f"cannot extract {archive}: unknown archive type "
                             f"(expected {', '.join(ARCHIVE_SUFFIXES)})")
    marker = dest_dir / f".extracted-{archive.name}"
    stamp = f"{archive.name} {archive.stat().st_size}\n"
    if marker.is_file() and marker.read_text(encoding="utf-8") == stamp:
        return dest_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, dest_dir)
        else:
            _extract_tar(archive, dest_dir)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise WsolbenchError(f"cannot extract {archive} into {dest_dir}: {type(error).__name__}: {error}") from None
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(stamp, encoding="utf-8")
    os.replace(tmp, marker)
    return dest_dir


def _inside(dest_dir: Path, name: str) -> bool:
    root = os.path.realpath(dest_dir)
    target = os.path.realpath(os.path.join(root, name))
    return os.path.commonpath([root, target]) == root and not os.path.isabs(name)


def _refuse(archive: Path, name: str, dest_dir: Path, why: str):
    raise WsolbenchError(f"refusing to extract {archive}: member {name!r} {why} {dest_dir}")


def _extract_tar(archive: Path, dest_dir: Path) -> None:
    def checked(tar):
        for member in tar:
            if not _inside(dest_dir, member.name):
                _refuse(archive, member.name, dest_dir, "would be written outside")
            if member.issym() or member.islnk():
                link_base = os.path.dirname(member.name) if member.issym() else ""
                if os.path.isabs(member.linkname) or not _inside(dest_dir, os.path.join(link_base, member.linkname)):
                    _refuse(archive, member.name, dest_dir, "links outside")
            elif not (member.isfile() or member.isdir()):
                _refuse(archive, member.name, dest_dir, "is a device or special file, not allowed in")
            yield member

    with tarfile.open(archive, "r:*") as tar:
        if hasattr(tarfile, "data_filter"):
            try:
                tar.extractall(dest_dir, members=checked(tar), filter="data")
            except tarfile.FilterError as error:
                raise WsolbenchError(f"refusing to extract {archive} into {dest_dir}: {error}") from None
        else:  # Python without extraction filters: the checks above are all there is
            tar.extractall(dest_dir, members=checked(tar))


def _extract_zip(archive: Path, dest_dir: Path) -> None:
    with zipfile.ZipFile(archive) as zip_file:
        infos = zip_file.infolist()
        for info in infos:
            if not _inside(dest_dir, info.filename) or info.filename.startswith(("/", "\\")):
                _refuse(archive, info.filename, dest_dir, "would be written outside")
        for info in infos:
            target = dest_dir / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zip_file.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK_SIZE)
