"""Protocol files -> the frozen configuration of one run.

A protocol is a folder of TOML files (the packaged ones live in the repository's ``protocols/<id>/``,
installed as the package ``wsolbench.protocols``)::

    protocol.toml          [protocol] id; [splits]; [selection] metric per annotation kind;
                           [model], [training], [evaluation]: a default for every setting
    datasets/<name>.toml   [dataset] name; [model], [training], [evaluation]: that dataset's defaults
    methods/<name>.toml    [method] name; [hparams] the method's hyperparameters under this protocol;
                           [<dataset>.<backbone>] settings, and an ``hparams`` sub-table, for one pair

:func:`resolve_run` merges them, later winning: ``protocol.toml`` < ``datasets/<dataset>.toml`` <
``methods/<method>.toml`` table ``[<dataset>.<backbone>]`` < overrides. The backbone is the one asked for,
else the dataset's default, else the protocol's. A dataset without a file (a folder wsolbench has never
seen) takes the protocol's defaults, and the config says so (``defaults_from="protocol"``).

Overrides are the ``--set KEY=VALUE`` pairs (:func:`parse_overrides`): a setting by its name
(``lr=0.001``, ``iou_thresholds=30,50,70``, ``eval_checkpoint=best``), a method hyperparameter always as
``method.<name>`` (a bare hyperparameter name is an error, so a setting and a hyperparameter can never be
confused). Any override makes the run off-protocol. Choosing the backbone is not an override.

The fingerprint is the sha256 of the canonical JSON (sorted keys, no spaces) of the parsed content the
resolution read: all of ``protocol.toml`` and of the dataset's file, and of the method's file its
``[method]`` and ``[hparams]`` tables and the ``[<dataset>.<backbone>]`` table used. Two machines with the
same values get the same fingerprint, whatever the comments, formatting or unrelated tables.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from wsolbench.data.spec import SPLITS, DatasetSpec
from wsolbench.errors import WsolbenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_PROTOCOL = "wsolevaluation"
PROTOCOL_FILE = "protocol.toml"
METHOD_PREFIX = "method."
#: metrics that may select checkpoints, per annotation kind of the dataset
SELECTION_METRICS = {"boxes": ("maxboxacc_v2", "maxboxacc"), "masks": ("pxap",)}


@dataclass(frozen=True)
class Setting:
    """One protocol setting: its file section, its type and a check of its value."""

    section: str  # "model", "training" or "evaluation"
    kind: type  # int, float, bool, str or tuple (of ints)
    check: Callable[[Any], bool] = lambda value: True
    requirement: str = ""  # what ``check`` demands, for error messages
    overridable: bool = True


SETTINGS: dict[str, Setting] = {
    "backbone": Setting("model", str, bool, "a backbone name", overridable=False),
    "pretrained": Setting("model", bool),
    "large_feature_map": Setting("model", bool),
    "epochs": Setting("training", int, lambda v: v >= 0, ">= 0"),
    "batch_size": Setting("training", int, lambda v: v >= 1, ">= 1"),
    "lr": Setting("training", float, lambda v: v > 0, "> 0"),
    "lr_decay_frequency": Setting("training", int, lambda v: v >= 1, ">= 1"),
    "lr_decay_factor": Setting("training", float, lambda v: 0 < v <= 1, "in (0, 1]"),
    "weight_decay": Setting("training", float, lambda v: v >= 0, ">= 0"),
    "momentum": Setting("training", float, lambda v: 0 <= v < 1, "in [0, 1)"),
    "nesterov": Setting("training", bool),
    "classifier_ratio": Setting("training", float, lambda v: v > 0, "> 0"),
    "image_size": Setting("training", int, lambda v: v >= 1, ">= 1"),
    "cam_curve_interval": Setting("evaluation", float, lambda v: 0 < v < 1, "in (0, 1)"),
    "iou_thresholds": Setting("evaluation", tuple, lambda v: len(v) > 0 and all(0 < t <= 100 for t in v),
                              "one or more integers in 1..100"),
    "multi_contour": Setting("evaluation", bool),
    "eval_checkpoint": Setting("evaluation", str, lambda v: v in ("last", "best"), "last or best"),
    "evaluate_epoch0": Setting("evaluation", bool),
}
SECTIONS = ("model", "training", "evaluation")


@dataclass(frozen=True)
class RunConfig:
    """Every resolved value of one run. ``hparams`` holds the method's hyperparameters (its ``Hparams``
    fields); ``overrides`` the ``--set`` pairs as given; ``method_table`` the ``[<dataset>.<backbone>]``
    table of the method file that applied (None: none did)."""

    protocol: str
    fingerprint: str
    method: str
    dataset: str
    backbone: str
    defaults_from: str  # "dataset" (the dataset has a file) or "protocol" (generic defaults)
    method_table: str | None
    train_split: str
    val_split: str
    test_split: str
    selection_metric: str
    pretrained: bool
    large_feature_map: bool
    epochs: int
    batch_size: int
    lr: float
    lr_decay_frequency: int
    lr_decay_factor: float
    weight_decay: float
    momentum: float
    nesterov: bool
    classifier_ratio: float
    image_size: int
    cam_curve_interval: float
    iou_thresholds: tuple[int, ...]
    multi_contour: bool
    eval_checkpoint: str
    evaluate_epoch0: bool
    hparams: Mapping[str, Any]
    overrides: Mapping[str, str]
    off_protocol: bool

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (tuples as lists, mappings as dicts), in field order."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


# --- overrides --------------------------------------------------------------------------------------------


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``["lr=0.001", "method.drop_rate=0.5"]`` -> ``{"lr": "0.001", ...}``; a pair without ``=``, with an
    empty key, or a key given twice is an error."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise WsolbenchError(f"--set {pair!r}: expected KEY=VALUE")
        if key in overrides:
            raise WsolbenchError(f"--set {key}: given twice ({overrides[key]!r} and {value!r})")
        overrides[key] = value
    return overrides


def _setting_from_text(key: str, text: str) -> Any:
    setting = SETTINGS[key]
    try:
        if setting.kind is bool:
            value = _bool_from_text(text)
        elif setting.kind is tuple:
            value = tuple(int(part) for part in text.split(","))
        else:
            value = setting.kind(text.strip())
    except ValueError:
        raise WsolbenchError(f"--set {key}={text}: {key} must be {_describe(setting)}") from None
    if not setting.check(value):
        raise WsolbenchError(f"--set {key}={text}: {key} must be {setting.requirement}")
    return value


def _bool_from_text(text: str) -> bool:
    words = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
             "off": False}
    if text.strip().lower() not in words:
        raise ValueError(text)
    return words[text.strip().lower()]


def _describe(setting: Setting) -> str:
    if setting.kind is tuple:
        return "comma-separated integers"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[setting.kind]


def _split_overrides(overrides: Mapping[str, str], method: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Overrides -> (settings, method hyperparameters), settings converted and checked."""
    settings, hparams = {}, {}
    for key, text in overrides.items():
        if key.startswith(METHOD_PREFIX):
            hparams[key[len(METHOD_PREFIX):]] = text
        elif key == "backbone":
            raise WsolbenchError("--set backbone: choose the backbone with --backbone (that is not an override)")
        elif key in SETTINGS:
            settings[key] = _setting_from_text(key, text)
        else:
            settable = ", ".join(name for name, setting in SETTINGS.items() if setting.overridable)
            raise WsolbenchError(f"--set {key}: unknown key; settings: {settable}; "
                                 f"method {method!r} hyperparameters are set as {METHOD_PREFIX}<name>")
    return settings, hparams


# --- protocol folders ---------------------------------------------------------------------------------------


def packaged_protocols() -> list[str]:
    """Ids of the protocols shipped inside wsolbench."""
    root = importlib.resources.files("wsolbench.protocols")
    return sorted(entry.name for entry in root.iterdir() if (entry / PROTOCOL_FILE).is_file())


class _ProtocolFolder:
    """A protocol folder (packaged resource or directory), its files parsed and checked on first read."""

    def __init__(self, protocol: str | os.PathLike):
        packaged = importlib.resources.files("wsolbench.protocols")
        if isinstance(protocol, str) and protocol in packaged_protocols():
            self.root, self.label = packaged / protocol, f"protocol {protocol!r}"
        elif Path(protocol).is_dir():
            self.root, self.label = Path(protocol), str(protocol)
            if not (self.root / PROTOCOL_FILE).is_file():
                raise WsolbenchError(f"protocol folder {protocol} holds no {PROTOCOL_FILE}")
        else:
            raise WsolbenchError(f"unknown protocol {str(protocol)!r}; packaged: {', '.join(packaged_protocols())} "
                                 f"(or give a folder holding {PROTOCOL_FILE})")

    def where(self, relative: str) -> str:
        """How error messages name a file of this protocol."""
        return f"{self.label}: {relative}"

    def read(self, relative: str) -> dict:
        path = self.root
        for part in relative.split("/"):
            path = path / part
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise WsolbenchError(f"{self.where(relative)} is not valid TOML: {error}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise WsolbenchError(f"cannot read {self.where(relative)}: {error}") from None

    def read_optional(self, folder: str, stem: str) -> tuple[str, dict] | None:
        """``<folder>/<stem>.toml`` parsed, or None; names are matched exactly (also on case-blind disks)."""
        directory = self.root / folder
        if not directory.is_dir():
            return None
        if f"{stem}.toml" not in {entry.name for entry in directory.iterdir() if entry.is_file()}:
            return None
        relative = f"{folder}/{stem}.toml"
        return relative, self.read(relative)


def _require_tables(document: dict, allowed: Iterable[str], where: str) -> None:
    for key, value in document.items():
        if key not in allowed:
            raise WsolbenchError(f"{where}: unknown table [{key}]; expected {', '.join(allowed)}")
        if not isinstance(value, dict):
            raise WsolbenchError(f"{where}: {key} must be a table")


def _require_keys(table: dict, allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise WsolbenchError(f"{where}: unknown key {extra[0]!r}; expected {', '.join(allowed)}")


def _name_entry(document: dict, table: str, expected: str, where: str) -> None:
    """The file's ``[table] name`` must equal the name it was looked up by."""
    entry = document.get(table)
    name = entry.get("name") if isinstance(entry, dict) else None
    if name != expected:
        raise WsolbenchError(f"{where}: [{table}] name must be {expected!r} (the file's name), got {name!r}")
    _require_keys(entry, ("name",), f"{where}: [{table}]")


def _setting_from_file(key: str, value: Any, where: str) -> Any:
    setting = SETTINGS[key]
    kind = setting.kind
    if kind is tuple and isinstance(value, list) and all(type(item) is int for item in value):
        value = tuple(value)
    elif kind is float and type(value) in (int, float):
        value = float(value)
    elif type(value) is not kind:
        raise WsolbenchError(f"{where}: {key} must be {_describe(setting)}, got {value!r}")
    if not setting.check(value):
        raise WsolbenchError(f"{where}: {key} must be {setting.requirement}, got {value!r}")
    return value


def _sectioned_settings(document: dict, where: str) -> dict[str, Any]:
    """The [model], [training] and [evaluation] tables of a protocol or dataset file, checked and flattened."""
    values = {}
    for section in SECTIONS:
        for key, value in document.get(section, {}).items():
            if key not in SETTINGS or SETTINGS[key].section != section:
                home = f" (it belongs in [{SETTINGS[key].section}])" if key in SETTINGS else ""
                raise WsolbenchError(f"{where}: [{section}] has unknown key {key!r}{home}")
            values[key] = _setting_from_file(key, value, f"{where}: [{section}]")
    return values


def _protocol_defaults(folder: _ProtocolFolder) -> tuple[dict, dict[str, Any]]:
    where = folder.where(PROTOCOL_FILE)
    document = folder.read(PROTOCOL_FILE)
    _require_tables(document, ("protocol", "splits", "selection", *SECTIONS), where)
    if not isinstance(document.get("protocol", {}).get("id"), str):
        raise WsolbenchError(f"{where}: [protocol] needs an id (a string)")
    _require_keys(document["protocol"], ("id", "description"), f"{where}: [protocol]")
    splits = document.get("splits", {})
    _require_keys(splits, ("train", "val", "test"), f"{where}: [splits]")
    for role in ("train", "val", "test"):
        if splits.get(role) not in SPLITS:
            raise WsolbenchError(f"{where}: [splits] {role} must be one of {', '.join(SPLITS)}, "
                                 f"got {splits.get(role)!r}")
    for annotation, metric in document.get("selection", {}).items():
        if metric not in SELECTION_METRICS.get(annotation, ()):
            known = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in SELECTION_METRICS.items())
            raise WsolbenchError(f"{where}: [selection] {annotation} = {metric!r} is not a selection metric ({known})")
    defaults = _sectioned_settings(document, where)
    missing = [key for key in SETTINGS if key not in defaults]
    if missing:
        raise WsolbenchError(f"{where}: [{SETTINGS[missing[0]].section}] lacks {missing[0]!r} "
                             "(protocol.toml gives every setting a default)")
    return document, defaults


def _dataset_defaults(folder: _ProtocolFolder, dataset: str) -> tuple[str, dict, dict[str, Any]] | None:
    found = folder.read_optional("datasets", dataset)
    if found is None:
        return None
    relative, document = found
    where = folder.where(relative)
    _require_tables(document, ("dataset", *SECTIONS), where)
    _name_entry(document, "dataset", dataset, where)
    return relative, document, _sectioned_settings(document, where)


def _method_tables(folder: _ProtocolFolder, method: str) -> tuple[str, dict] | None:
    """The method's file, every [<dataset>.<backbone>] table checked (a typo anywhere is an error)."""
    found = folder.read_optional("methods", method)
    if found is None:
        return None
    relative, document = found
    where = folder.where(relative)
    _name_entry(document, "method", method, where)
    for dataset, tables in document.items():
        if dataset in ("method", "hparams"):
            if not isinstance(tables, dict):
                raise WsolbenchError(f"{where}: {dataset} must be a table")
            continue
        if not isinstance(tables, dict) or not all(isinstance(table, dict) for table in tables.values()):
            raise WsolbenchError(f"{where}: [{dataset}] must hold only [{dataset}.<backbone>] tables")
        for backbone, table in tables.items():
            table_where = f"{where}: [{dataset}.{backbone}]"
            for key, value in table.items():
                if key == "hparams":
                    if not isinstance(value, dict):
                        raise WsolbenchError(f"{table_where}: hparams must be a table")
                elif key not in SETTINGS or not SETTINGS[key].overridable:
                    raise WsolbenchError(f"{table_where}: unknown key {key!r}")
                else:
                    _setting_from_file(key, value, table_where)
    return relative, document


def _method_hparams(method_class, values: dict, where: str) -> Any:
    try:
        return method_class.make_hparams(values)
    except WsolbenchError as error:
        raise WsolbenchError(f"{where}: {error}") from None


def fingerprint_of(content: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of parsed protocol content: sorted keys, no whitespace, UTF-8."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- resolution ------------------------------------------------------------------------------------------


def resolve_run(method: str, dataset: str | DatasetSpec, backbone: str | None = None,
                overrides: Mapping[str, str] | None = None,
                protocol: str | os.PathLike = DEFAULT_PROTOCOL) -> RunConfig:
    """The :class:`RunConfig` of ``method`` on ``dataset`` under ``protocol`` (a packaged id or a folder).

    ``dataset`` is a registered name or a :class:`DatasetSpec` (e.g. a never-seen layout folder's); method,
    dataset and backbone names are checked against the registries, whose errors name close matches.
    """
    from wsolbench.plugins import registry

    overrides = dict(overrides or {})
    method_class = registry("method").get(method)
    spec = dataset if isinstance(dataset, DatasetSpec) else registry("dataset").get(dataset)
    folder = _ProtocolFolder(protocol)

    protocol_document, values = _protocol_defaults(folder)
    content: dict[str, Any] = {PROTOCOL_FILE: protocol_document}
    dataset_found = _dataset_defaults(folder, spec.name)
    if dataset_found is not None:
        relative, document, dataset_values = dataset_found
        content[relative] = document
        values.update(dataset_values)

    backbone = backbone or values["backbone"]
    registry("backbone").get(backbone)
    values["backbone"] = backbone

    hparam_values: dict[str, Any] = {}
    method_table = None
    method_found = _method_tables(folder, method)
    if method_found is not None:
        relative, document = method_found
        where = folder.where(relative)
        _method_hparams(method_class, document.get("hparams", {}), f"{where}: [hparams]")
        hparam_values.update(document.get("hparams", {}))
        used = {"method": document["method"], "hparams": document.get("hparams", {})}
        table = document.get(spec.name, {}).get(backbone)
        if table is not None:
            method_table = f"{spec.name}.{backbone}"
            used["table"] = {method_table: table}
            table_hparams = table.get("hparams", {})
            _method_hparams(method_class, table_hparams, f"{where}: [{method_table}.hparams]")
            hparam_values.update(table_hparams)
            values.update({key: _setting_from_file(key, value, f"{where}: [{method_table}]")
                           for key, value in table.items() if key != "hparams"})
        content[relative] = used

    setting_overrides, hparam_overrides = _split_overrides(overrides, method)
    _method_hparams(method_class, hparam_overrides, "--set")
    values.update(setting_overrides)
    hparam_values.update(hparam_overrides)
    hparams = dataclasses.asdict(method_class.make_hparams(hparam_values))

    selection = protocol_document.get("selection", {})
    if spec.annotation not in selection:
        raise WsolbenchError(f"dataset {spec.name!r} has {spec.annotation!r} localization labels; protocol "
                             f"{protocol_document['protocol']['id']!r} selects checkpoints only for "
                             f"{', '.join(selection) or 'no'} labels")
    splits = protocol_document["splits"]
    return RunConfig(
        protocol=protocol_document["protocol"]["id"], fingerprint=fingerprint_of(content), method=method,
        dataset=spec.name, defaults_from="dataset" if dataset_found is not None else "protocol",
        method_table=method_table, train_split=splits["train"], val_split=splits["val"],
        test_split=splits["test"], selection_metric=selection[spec.annotation], **values,
        hparams=MappingProxyType(hparams), overrides=MappingProxyType(overrides), off_protocol=bool(overrides))
