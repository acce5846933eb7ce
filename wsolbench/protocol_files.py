"""Where the files of a protocol come from, and reading them.

A protocol folder is laid out like wsolbench's own ``protocols/<protocol id>/``::

    protocol.toml           the protocol itself
    datasets/<dataset>.toml  a dataset's defaults under that protocol
    methods/<method>.toml    a method's hyperparameters and per-dataset/backbone tables

:func:`open_protocol` finds it: a packaged id (``wsolbench.protocols``, the repository's ``protocols/``) or a
folder given by path. :meth:`ProtocolFiles.find` looks a ``datasets/`` or ``methods/`` file up, the name
matched exactly (also on case-blind disks). Files are parsed TOML; what they hold is checked by
:mod:`wsolbench.protocol`.
"""

from __future__ import annotations

import importlib.resources
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wsolbench.errors import WsolbenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PROTOCOL_FILE = "protocol.toml"
FOLDERS = ("datasets", "methods")
PACKAGED_OWNER = "wsolbench (packaged)"


@dataclass(frozen=True)
class Source:
    """One protocol's folder: ``root`` holds ``protocol.toml`` / ``datasets/`` / ``methods/``; ``owner`` names
    who ships it, ``label`` prefixes its files in error messages."""

    root: Traversable
    owner: str
    label: str

    def where(self, relative: str) -> str:
        """How error messages name one file of this source."""
        return f"{self.label}: {relative}"

    def holds(self, folder: str, name: str) -> bool:
        """Whether ``<folder>/<name>`` (``folder`` "" for the root) is a file here, the name matched exactly."""
        directory = self.root / folder if folder else self.root
        return directory.is_dir() and name in {entry.name for entry in directory.iterdir() if entry.is_file()}

    def read(self, relative: str) -> dict:
        """``relative`` (``"datasets/cub.toml"``) parsed; unreadable or invalid TOML is a one-line error."""
        path = self.root
        for part in relative.split("/"):
            path = path / part
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise WsolbenchError(f"{self.where(relative)} is not valid TOML: {error}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise WsolbenchError(f"cannot read {self.where(relative)}: {error}") from None

    def check_layout(self) -> None:
        """Only ``protocol.toml``, ``datasets/`` and ``methods/`` (names starting with ``_`` or ``.`` and
        non-TOML files aside), so that a misspelled folder is an error rather than silently unread."""
        for entry in self.root.iterdir():
            name = entry.name
            if name.startswith(("_", ".")) or name == PROTOCOL_FILE or (name in FOLDERS and entry.is_dir()):
                continue
            if entry.is_dir() or name.endswith(".toml"):
                shown = name + ("/" if entry.is_dir() else "")
                raise WsolbenchError(f"{self.label}: unexpected {shown} (a protocol folder holds {PROTOCOL_FILE}, "
                                     f"{'/ and '.join(FOLDERS)}/)")


def packaged_root() -> Traversable:
    """The packaged protocols folder (``protocols/`` of the repository, installed as ``wsolbench.protocols``)."""
    try:
        return importlib.resources.files("wsolbench.protocols")
    except ModuleNotFoundError:
        raise WsolbenchError("wsolbench's packaged protocols are missing (an editable install older than the "
                             "protocols/ folder?): reinstall wsolbench, e.g. pip install -e .") from None


def packaged_protocols() -> list[str]:
    """Ids of the protocols shipped inside wsolbench."""
    return sorted(entry.name for entry in packaged_root().iterdir()
                  if entry.is_dir() and (entry / PROTOCOL_FILE).is_file())


class ProtocolFiles:
    """The files of one protocol, all in ``primary``, the folder holding its ``protocol.toml``."""

    def __init__(self, primary: Source):
        self.primary = primary
        primary.check_layout()

    def read_protocol(self) -> tuple[str, dict]:
        """(how errors name it, parsed content) of ``protocol.toml``."""
        return self.primary.where(PROTOCOL_FILE), self.primary.read(PROTOCOL_FILE)

    def find(self, folder: str, stem: str) -> tuple[str, str, dict] | None:
        """``<folder>/<stem>.toml`` as (relative path, how errors name it, parsed content), or None."""
        relative = f"{folder}/{stem}.toml"
        if not self.primary.holds(folder, f"{stem}.toml"):
            return None
        return relative, self.primary.where(relative), self.primary.read(relative)


def open_protocol(protocol: str | os.PathLike) -> ProtocolFiles:
    """The protocol named ``protocol``: a packaged id or a folder holding ``protocol.toml``. Unknown is a
    one-line error listing the packaged ids."""
    packaged = packaged_protocols()
    if isinstance(protocol, str) and protocol in packaged:
        return ProtocolFiles(Source(packaged_root() / protocol, PACKAGED_OWNER, f"protocol {protocol!r}"))
    if Path(protocol).is_dir():
        if not (Path(protocol) / PROTOCOL_FILE).is_file():
            raise WsolbenchError(f"protocol folder {protocol} holds no {PROTOCOL_FILE}")
        return ProtocolFiles(Source(Path(protocol), f"folder {protocol}", str(protocol)))
    raise WsolbenchError(f"unknown protocol {str(protocol)!r}; packaged: {', '.join(packaged)} "
                         f"(or give a folder holding {PROTOCOL_FILE})")
