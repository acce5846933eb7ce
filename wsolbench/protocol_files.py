"""Where the files of a protocol come from, and reading them.

Every source of protocol files is a folder laid out like wsolbench's own ``protocols/`` folder::

    <source>/<protocol id>/protocol.toml           the protocol itself
    <source>/<protocol id>/datasets/<dataset>.toml  a dataset's defaults under that protocol
    <source>/<protocol id>/methods/<method>.toml    a method's hyperparameters and per-dataset/backbone tables

The sources are the packaged folder (``wsolbench.protocols``, the repository's ``protocols/``), the folders
plugins register with ``wsolbench_register_protocol_files(register)``, and, for a protocol given by path, that
folder itself (it holds ``protocol.toml`` directly).

:func:`open_protocol` finds the one ``protocol.toml`` of a protocol: a packaged id's, a folder's, or else the
one a plugin ships for a new id (a plugin may not ship one for a packaged id; two plugins shipping one for the
same id is an error naming both). :meth:`ProtocolFiles.attach` then adds, for the protocol's id, every
registered folder's ``<id>/``, and :meth:`ProtocolFiles.find` looks a ``datasets/`` or ``methods/`` file up in
all of them: a name is matched exactly (also on case-blind disks), and a file shipped by two sources is an
error naming both. Files are parsed TOML; what they hold is checked by :mod:`wsolbench.protocol`.
"""

from __future__ import annotations

import importlib.resources
import os
import sys
from collections.abc import Sequence
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
#: (owner, folder) as plugins register them: owner names the distribution and plugin
Registered = Sequence[tuple[str, "Traversable"]]


@dataclass(frozen=True)
class Source:
    """One protocol's folder in one source: ``root`` holds ``protocol.toml`` / ``datasets/`` / ``methods/``;
    ``owner`` names who ships it (in duplicate errors), ``label`` prefixes its files in error messages."""

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


def _plugin_sources(protocol_id: str, registered: Registered) -> list[Source]:
    """Every registered folder's ``<protocol_id>/``, as sources."""
    return [Source(folder / protocol_id, owner, f"protocol {protocol_id!r} of {owner}")
            for owner, folder in registered if (folder / protocol_id).is_dir()]


def _shipping_protocol_file(sources: list[Source]) -> list[Source]:
    return [source for source in sources if source.holds("", PROTOCOL_FILE)]


def _plugin_protocols(registered: Registered) -> list[str]:
    """Ids a plugin ships a ``protocol.toml`` for (packaged ids aside)."""
    packaged = set(packaged_protocols())
    return sorted({entry.name for _, folder in registered for entry in folder.iterdir()
                   if entry.name not in packaged and entry.is_dir() and (entry / PROTOCOL_FILE).is_file()})


class ProtocolFiles:
    """The files of one protocol: ``primary`` holds its ``protocol.toml``; after :meth:`attach`,
    ``sources`` are every source of its ``datasets/`` and ``methods/`` files, ``primary`` first."""

    def __init__(self, primary: Source, packaged_id: bool):
        self.primary = primary
        self.packaged_id = packaged_id
        self.sources = [primary]
        primary.check_layout()

    def attach(self, protocol_id: str, registered: Registered) -> None:
        """Add the registered folders' ``<protocol_id>/``. A plugin's ``protocol.toml`` there is an error for
        a packaged id (a plugin adds datasets/ and methods/ files to it); a folder given by path replaces it."""
        for source in _plugin_sources(protocol_id, registered):
            if source == self.primary:  # the plugin that ships this protocol's protocol.toml
                continue
            source.check_layout()
            if self.packaged_id and source.holds("", PROTOCOL_FILE):
                raise WsolbenchError(f"{source.owner} ships {protocol_id}/{PROTOCOL_FILE}, but protocol "
                                     f"{protocol_id!r} is wsolbench's own: a plugin may add only "
                                     f"{'/ and '.join(FOLDERS)}/ files to it")
            self.sources.append(source)

    def read_protocol(self) -> tuple[str, dict]:
        """(how errors name it, parsed content) of ``protocol.toml``."""
        return self.primary.where(PROTOCOL_FILE), self.primary.read(PROTOCOL_FILE)

    def find(self, folder: str, stem: str) -> tuple[str, str, dict] | None:
        """``<folder>/<stem>.toml`` from the one source shipping it, as (relative path, how errors name it,
        parsed content); None if no source does; two sources shipping it is an error naming both."""
        relative = f"{folder}/{stem}.toml"
        shipping = [source for source in self.sources if source.holds(folder, f"{stem}.toml")]
        if not shipping:
            return None
        if len(shipping) > 1:
            raise WsolbenchError(f"{self.primary.label}: {relative} is shipped twice: by {shipping[0].owner} "
                                 f"and by {shipping[1].owner}")
        return relative, shipping[0].where(relative), shipping[0].read(relative)


def open_protocol(protocol: str | os.PathLike, registered: Registered = ()) -> ProtocolFiles:
    """The protocol named ``protocol``: a packaged id, an id a plugin ships a ``protocol.toml`` for, or a folder
    holding ``protocol.toml``. Unknown is a one-line error listing the known ids."""
    packaged = packaged_protocols()
    if isinstance(protocol, str) and protocol in packaged:
        return ProtocolFiles(Source(packaged_root() / protocol, PACKAGED_OWNER, f"protocol {protocol!r}"), True)
    if isinstance(protocol, str):
        shipping = _shipping_protocol_file(_plugin_sources(protocol, registered))
        if len(shipping) > 1:
            raise WsolbenchError(f"protocol {protocol!r}: {PROTOCOL_FILE} is shipped twice: by {shipping[0].owner} "
                                 f"and by {shipping[1].owner}")
        if shipping:
            return ProtocolFiles(shipping[0], False)
    if Path(protocol).is_dir():
        if not (Path(protocol) / PROTOCOL_FILE).is_file():
            raise WsolbenchError(f"protocol folder {protocol} holds no {PROTOCOL_FILE}")
        return ProtocolFiles(Source(Path(protocol), f"folder {protocol}", str(protocol)), False)
    from_plugins = _plugin_protocols(registered)
    also = f"; from plugins: {', '.join(from_plugins)}" if from_plugins else ""
    raise WsolbenchError(f"unknown protocol {str(protocol)!r}; packaged: {', '.join(packaged)}{also} "
                         f"(or give a folder holding {PROTOCOL_FILE})")
