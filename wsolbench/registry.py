"""The generic name -> object registry (one per kind: methods, datasets, backbones, metrics) and its errors.

A name identifies a result on the leaderboard, so registering a name twice is an error that names both
distributions (unlike timm, which only warns). Lookups accept fnmatch patterns (``names("resnet*")``).
A registry may check each object as it is registered (``Registry(kind, check=...)``); this module knows
no kind: :mod:`wsolbench.plugins` builds the registries and gives each kind its check (backbones: the
:class:`~wsolbench.backbones.CamBackbone` contract's ``registration_problem``).
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Generic, TypeVar

from wsolbench.errors import WsolbenchError

T = TypeVar("T")


class DuplicateNameError(WsolbenchError):
    """Two plugins registered the same name in one registry."""


class UnknownNameError(WsolbenchError):
    """A name that no loaded plugin registered."""


class Registry(Generic[T]):
    """Registered objects of one kind (``"method"``, ``"dataset"``, ...), each with its source distribution.

    ``check(obj)``, when given, runs on every registered object and returns why it cannot be registered
    (one line) or None; a reason is a :class:`WsolbenchError` naming the source, the kind and the name.
    """

    def __init__(self, kind: str, check: Callable[[T], str | None] | None = None):
        self.kind = kind
        self.check = check
        self._entries: dict[str, tuple[T, str]] = {}

    def register(self, name: str, obj: T, source: str) -> None:
        """Add ``obj`` under ``name``; ``source`` is the distribution (or plugin) registering it."""
        if not name or not isinstance(name, str):
            raise WsolbenchError(f"{source} registered a {self.kind} with an invalid name {name!r}")
        if name in self._entries:
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by {self._entries[name][1]} and by {source}")
        problem = self.check(obj) if self.check is not None else None
        if problem:
            raise WsolbenchError(f"{source} registered {self.kind} {name!r}, which breaks the contract: {problem}")
        self._entries[name] = (obj, source)

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name is an error suggesting close names."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(self.names()) or 'none'}"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}")
        return self._entries[name][0]

    def source(self, name: str) -> str:
        """The distribution that registered ``name``."""
        self.get(name)
        return self._entries[name][1]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching an fnmatch ``pattern``."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
