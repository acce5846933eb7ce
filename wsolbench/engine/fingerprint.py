"""The fingerprint of a run: everything that decides its result, checked before ``--resume`` continues it.

:func:`run_fingerprint` is a flat mapping, ``name -> value`` (JSON values), of
- ``config.<field>``: every resolved value of the :class:`~wsolbench.protocol.RunConfig` (hyperparameters
  as ``config.hparams.<name>``), the protocol files' fingerprint included;
- ``seed``, ``device`` (its type), ``world_size``, ``autocast`` and ``channels_last`` and ``compile``;
- ``dataset.<role>``: the sha256 of the split's metadata files and of the image ids the run uses
  (``train``, ``val``, ``test``; images themselves are not hashed, their list is);
- ``weights``: the sha256 of a ``--weights`` file;
- ``code.<distribution>``: the version of wsolbench and of the plugins that registered the method and
  backbone.

A checkpoint stores the fingerprint of the run that wrote it; :func:`first_difference` names the first key
whose value differs, which ``--resume`` reports in one line instead of continuing a different run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from wsolbench import __version__

_CHUNK = 1 << 20


def _flat(prefix: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flat(f"{prefix}.{key}", item, into)
    else:
        into[prefix] = value


def file_digest(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_digest(dataset) -> str:
    """The sha256 of a split's metadata files (by name, in name order) and of the image ids it serves."""
    digest = hashlib.sha256()
    folder = Path(dataset.metadata.folder)
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest.update(f"{path.name}\0{file_digest(path)}\n".encode())
    digest.update("\n".join(dataset.image_ids).encode())
    return digest.hexdigest()


def run_fingerprint(config, *, seed: int, splits: Mapping[str, Any], device: str, world_size: int,
                    autocast: str, channels_last: bool, compile: bool, weights_path: str | None,
                    code: Mapping[str, str]) -> dict[str, Any]:
    """The flat fingerprint described in :mod:`this module <wsolbench.engine.fingerprint>`."""
    fingerprint: dict[str, Any] = {}
    _flat("config", config.as_dict(), fingerprint)
    fingerprint.update(seed=seed, device=device, world_size=world_size, autocast=autocast,
                       channels_last=channels_last, compile=compile,
                       weights=file_digest(weights_path) if weights_path else None)
    for role, dataset in splits.items():
        fingerprint[f"dataset.{role}"] = split_digest(dataset)
    fingerprint["code.wsolbench"] = __version__
    for distribution, version in sorted(code.items()):
        fingerprint[f"code.{distribution}"] = version
    return json.loads(json.dumps(fingerprint))  # tuples as lists: what a checkpoint gives back


def first_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """``"<key> was <saved> and is now <current>"`` for the first key (in ``current``'s order, then keys
    only ``saved`` has) whose values differ; None when the fingerprints are equal."""
    absent = object()
    for key in [*current, *(k for k in saved if k not in current)]:
        before, now = saved.get(key, absent), current.get(key, absent)
        if before != now:
            return f"{key} was {_short(before, absent)} and is now {_short(now, absent)}"
    return None


def _short(value: Any, absent: object) -> str:
    if value is absent:
        return "(absent)"
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
