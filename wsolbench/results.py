"""The run record: one self-describing JSON file per run, written atomically.

Keys (:data:`RECORD_KEYS`)::

    version        RECORD_VERSION
    method, backbone, dataset
    protocol       {"id", "fingerprint"}
    config         RunConfig.as_dict(): every resolved value
    overrides      the --set pairs as given; off_protocol: whether there were any
    seed           int, or null
    provenance     see provenance(): versions, plugins, git sha, device, the reproducing command
    selected       {"epoch": int, "criterion": str}: the checkpoint the test scores are of
    scores         {"train_fullsup": {...}, "test": {...}}: metric name -> value (the engine's choice)
    history        [{"epoch": int, "phase": str, ...val scores..., "criteria": {...}, "loss", "logs": {...}}, ...]
    wall_time_s    seconds
    phases         [{"name", "epochs", "optimizers", "batch_size", "selectable"}, ...] (records of runs)
    acceleration   {"amp" (training autocast dtype or "off"), "evaluation_precision", "channels_last",
                    "compile", "sync_batchnorm", "world_size", "device"} (records of runs)
    training_data  {"split" (what the model learnt from), "localization_labels" (true: it trained on boxes
                    or masks, a fully supervised reference point, never a WSOL result), "images",
                    "selection", "selection_images"} (records of runs; absent in older ones: train-weaksup)
    scoremaps      {"folder", "class_scores", "extra"}: where the test maps, class scores and the method's
                    extra maps ({name: folder}) were kept, relative to the run folder (only with
                    ``--save-scoremaps``; class_scores null without class scores)

:func:`build_record` is where a run's record is made; :func:`new_record` is its part that the
configuration alone decides (``selected``, ``scores``, ``history`` and ``wall_time_s`` left empty).
Records on disk are complete: :func:`write_record` and :func:`read_record` check the same rules.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from wsolbench.atomic import write_text
from wsolbench.errors import WsolbenchError
from wsolbench.plugins import ENTRY_POINT_GROUP, LOAD_PLUGINS_ENV
from wsolbench.protocol import RunConfig

RECORD_VERSION = 1
#: record key -> (allowed JSON types, what it is) in record order
RECORD_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "version": ((int,), "an integer"),
    "method": ((str,), "a string"),
    "backbone": ((str,), "a string"),
    "dataset": ((str,), "a string"),
    "protocol": ((dict,), "an object"),
    "config": ((dict,), "an object"),
    "overrides": ((dict,), "an object"),
    "off_protocol": ((bool,), "true or false"),
    "seed": ((int, type(None)), "an integer or null"),
    "provenance": ((dict,), "an object"),
    "selected": ((dict,), "an object"),
    "scores": ((dict,), "an object"),
    "history": ((list,), "a list"),
    "wall_time_s": ((int, float), "a number"),
}
SCORE_SPLITS = ("train_fullsup", "test")


# --- provenance --------------------------------------------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def plugin_distributions() -> dict[str, str]:
    """``{distribution: version}`` of every installed distribution with a ``wsolbench`` entry point."""
    found = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.dist is not None:
            found[entry_point.dist.name] = entry_point.dist.version
    return dict(sorted(found.items()))


def git_sha(cwd: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """``{"sha": ..., "dirty": bool}`` of the git work tree at ``cwd`` (default: the current folder), or None
    where there is no repository or no git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"sha": sha, "dirty": dirty}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description() -> dict[str, Any]:
    """The machine without its name: CPU model and count, CUDA devices and the CUDA version torch uses."""
    import torch

    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return {"platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "cuda_devices": cuda, "cuda_version": torch.version.cuda}


def reproduce_command(argv: Sequence[str]) -> str:
    """The shell command that reruns ``argv`` (``sys.argv``): the program as ``wsolbench`` when it is
    wsolbench's script or ``python -m wsolbench``, and the plugin selection when it was restricted."""
    program, *args = argv
    if Path(program).name == "wsolbench" or Path(program).parts[-2:] == ("wsolbench", "__main__.py"):
        program = "wsolbench"
    command = shlex.join([program, *args])
    selection = os.environ.get(LOAD_PLUGINS_ENV)
    return command if selection is None else f"{LOAD_PLUGINS_ENV}={shlex.quote(selection)} {command}"


def provenance(argv: Sequence[str]) -> dict[str, Any]:
    """Where a run came from: versions, plugin distributions, git state of the current folder, device, the
    command that reproduces it (``argv`` is ``sys.argv``) and the UTC date-time the record was made. Holds no
    host name."""
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "wsolbench": _version("wsolbench"),
        "plugins": plugin_distributions(),
        "load_plugins": os.environ.get(LOAD_PLUGINS_ENV),
        "git": git_sha(),
        "device": device_description(),
        "command": reproduce_command(argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --- records ----------------------------------------------------------------------------------------------


def new_record(config: RunConfig, seed: int | None, argv: Sequence[str]) -> dict[str, Any]:
    """A record of ``config`` with provenance; ``selected``, ``scores``, ``history`` and ``wall_time_s``
    are left for the engine (None, None, [], None)."""
    return {
        "version": RECORD_VERSION,
        "method": config.method,
        "backbone": config.backbone,
        "dataset": config.dataset,
        "protocol": {"id": config.protocol, "fingerprint": config.fingerprint},
        "config": config.as_dict(),
        "overrides": dict(config.overrides),
        "off_protocol": config.off_protocol,
        "seed": seed,
        "provenance": provenance(argv),
        "selected": None,
        "scores": None,
        "history": [],
        "wall_time_s": None,
    }


def build_record(config: RunConfig, seed: int | None, argv: Sequence[str], *, selected: dict, history: list[dict],
                 phases: list[dict], scores: dict, acceleration: dict, training_data: dict,
                 wall_time_s: float, scoremaps: dict | None = None) -> dict[str, Any]:
    """The complete record of a finished run (checked by :func:`write_record`)."""
    record = new_record(config, seed, argv)
    record.update(selected=selected, scores=scores, history=history, wall_time_s=wall_time_s, phases=phases,
                  acceleration=acceleration, training_data=training_data)
    if scoremaps is not None:
        record["scoremaps"] = scoremaps
    return record


def record_problem(record: Any) -> str | None:
    """What makes ``record`` an invalid (or unfinished) run record, or None."""
    if not isinstance(record, dict):
        return "is not a JSON object"
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key, (types, what) in RECORD_KEYS.items():
        value = record[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"has {key} = {value!r:.60}; expected {what}"
    if record["version"] != RECORD_VERSION:
        return f"has version {record['version']}; this wsolbench reads version {RECORD_VERSION}"
    for key in ("id", "fingerprint"):
        if not isinstance(record["protocol"].get(key), str):
            return f"has no protocol {key} (a string)"
    selected = record["selected"]
    if not isinstance(selected.get("epoch"), int) or isinstance(selected.get("epoch"), bool) \
            or not isinstance(selected.get("criterion"), str):
        return "has selected without an integer epoch and a criterion string"
    for split in SCORE_SPLITS:
        if not isinstance(record["scores"].get(split), dict):
            return f"has no scores for {split} (an object)"
    if not all(isinstance(entry, dict) for entry in record["history"]):
        return "has a history entry that is not an object"
    if record["wall_time_s"] < 0:
        return f"has a negative wall_time_s {record['wall_time_s']}"
    return None


def _json_default(value: Any) -> Any:
    """numpy and torch scalars and arrays (anything with ``tolist``) become JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} value {value!r:.60} is not JSON serializable")


def write_record(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write ``record`` as JSON at ``path``: checked, serialized in full, then written to a temporary file in
    the same folder, fsynced and renamed over ``path``; on any failure no file is left behind."""
    path = Path(path)
    try:
        text = json.dumps(record, indent=2, allow_nan=False, default=_json_default) + "\n"
    except (TypeError, ValueError) as error:
        raise WsolbenchError(f"cannot write run record {path}: {error}") from None
    problem = record_problem(json.loads(text))
    if problem:
        raise WsolbenchError(f"cannot write run record {path}: the record {problem}")
    try:
        write_text(path, text, durable=True)
    except OSError as error:
        raise WsolbenchError(f"cannot write run record {path}: {error}") from None


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The record at ``path``; a missing, unreadable, malformed or incomplete file is a one-line error."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WsolbenchError(f"run record {path} is missing") from None
    except OSError as error:
        raise WsolbenchError(f"cannot read run record {path}: {error}") from None
    try:
        record = orjson.loads(data)  # 3x the standard library's parser: the leaderboard reads thousands
    except orjson.JSONDecodeError as error:  # also for text that is not UTF-8
        raise WsolbenchError(f"run record {path} is not valid JSON: {error}") from None
    problem = record_problem(record)
    if problem:
        raise WsolbenchError(f"run record {path} {problem}")
    return record
