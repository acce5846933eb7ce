"""Protocol files -> the frozen configuration of one run.

A protocol is a folder of TOML files (the packaged ones live in the repository's ``protocols/<id>/``, installed
as ``wsolbench.protocols``; plugins add files through ``wsolbench_register_protocol_files``, see
:mod:`wsolbench.protocol_files`)::

    protocol.toml          [protocol] id; [splits]; [selection] metric per annotation kind;
                           [model], [training], [evaluation]: a default for every setting
    datasets/<name>.toml   [dataset] name; [model], [training], [evaluation]: that dataset's defaults
    methods/<name>.toml    [method] name; [hparams] the method's hyperparameters under this protocol;
                           [<dataset>.<backbone>] settings, and an ``hparams`` sub-table, for one pair

:func:`resolve_run` merges them, later winning: ``protocol.toml`` < ``datasets/<dataset>.toml`` <
``methods/<method>.toml`` table ``[<dataset>.<backbone>]`` < overrides. The backbone is the one asked for,
else the dataset's default, else the protocol's. A dataset without a file (a folder wsolbench has never
seen) takes the protocol's defaults, and the config says so (``defaults_from="protocol"``).

Provenance: the [model], [training] and [evaluation] tables, and a method file's [hparams],
[<dataset>.<backbone>] and its ``hparams`` sub-table, may each hold ``provenance = "<text>"``, which applies to
every value of that table (a sub-table states its own). The text starts with ``"published, <source>"`` (the
authors' published values), ``"reported, <source>"`` (a third party's, e.g. a user's post) or ``"wsolbench
default, untuned"``. :attr:`RunConfig.provenance` maps every setting and every method hyperparameter
(``method.<name>``) to the text of the table its value came from (:data:`UNTUNED` when that table states none,
:data:`METHOD_DEFAULT` for a hyperparameter no file sets, :data:`CHOSEN` for a backbone asked for,
:data:`OVERRIDDEN` for an override); :attr:`RunConfig.tuned` says whether the run is a configuration the
authors published for this method, dataset and backbone.

Overrides are the ``--set KEY=VALUE`` pairs (:func:`parse_overrides`): a setting by its name (``lr=0.001``,
``iou_thresholds=30,50,70``, ``lr_decay_points=41,61``, ``lr_decay_points=`` for none,
``eval_checkpoint=best``); ``selection=<name>``, the checkpoint-selection criterion (a metric of
:data:`SELECTION_METRICS` for the dataset's labels, or a criterion the method offers, which the engine checks;
it needs ``eval_checkpoint=best``); a method hyperparameter as ``method.<name>``, or by its bare name when
that is not also a setting's name (a setting always wins the bare name). An unknown key is an error naming the
closest known one. Any override makes the run off-protocol. Choosing the backbone is not an override.

The fingerprint is the sha256 of the canonical JSON (sorted keys, no spaces) of the parsed content the
resolution read: all of ``protocol.toml`` and of the dataset's file, and of the method's file its
``[method]`` and ``[hparams]`` tables and the ``[<dataset>.<backbone>]`` table used (wherever each file came
from: the packaged folder or a plugin's). Two machines with the same values get the same fingerprint,
whatever the comments, formatting or unrelated tables.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from wsolbench.data.spec import SPLITS, DatasetSpec
from wsolbench.errors import WsolbenchError
from wsolbench.protocol_files import PROTOCOL_FILE, ProtocolFiles, open_protocol, packaged_protocols

__all__ = ["DEFAULT_PROTOCOL", "PROTOCOL_FILE", "SELECTION_METRICS", "SETTINGS", "RunConfig", "Setting",
           "fingerprint_of", "packaged_protocols", "parse_overrides", "resolve_run"]

DEFAULT_PROTOCOL = "wsolevaluation"
METHOD_PREFIX = "method."
SELECTION_KEY = "selection"
#: metrics that may select checkpoints, per annotation kind of the dataset
SELECTION_METRICS = {"boxes": ("maxboxacc_v2", "maxboxacc"), "masks": ("pxap",)}
PROVENANCE_KEY = "provenance"
UNTUNED = "wsolbench default, untuned"
PROVENANCE_PREFIXES = ("published, ", "reported, ", UNTUNED)
METHOD_DEFAULT = f"{UNTUNED} (the method's Hparams default)"
CHOSEN = "--backbone"
OVERRIDDEN = "--set (off-protocol)"
#: settings that no longer exist -> what to say to a file or --set still holding them
REMOVED = {"multi_contour": "multi_contour was removed: the [selection] metric decides "
                            "(maxboxacc_v2 all contours / maxboxacc largest contour)"}


@dataclass(frozen=True)
class Setting:
    """One protocol setting: its file section, its type and a check of its value."""

    section: str  # "model", "training" or "evaluation"
    kind: type  # int, float, bool, str or tuple (of ints)
    check: Callable[[Any], bool] = lambda value: True
    requirement: str = ""  # what ``check`` demands, for error messages
    overridable: bool = True


def _increasing_positive(points: tuple) -> bool:
    return all(point >= 1 for point in points) and all(a < b for a, b in zip(points, points[1:]))


MIN_IMAGE_SIZE = 32  #: the smallest crop (``image_size``) a run accepts

SETTINGS: dict[str, Setting] = {
    "backbone": Setting("model", str, bool, "a backbone name", overridable=False),
    "pretrained": Setting("model", bool),
    "large_feature_map": Setting("model", bool),
    "epochs": Setting("training", int, lambda v: v >= 0, ">= 0"),
    "batch_size": Setting("training", int, lambda v: v >= 1, ">= 1"),
    "lr": Setting("training", float, lambda v: v > 0, "> 0"),
    # lr x lr_decay_factor before every epoch e (1-based) with e % lr_decay_frequency == 0, unless
    # lr_decay_points is not empty: then after each point p, for every epoch e > p (MultiStep milestones)
    "lr_decay_frequency": Setting("training", int, lambda v: v >= 1, ">= 1"),
    "lr_decay_factor": Setting("training", float, lambda v: 0 < v <= 1, "in (0, 1]"),
    "lr_decay_points": Setting("training", tuple, _increasing_positive, "strictly increasing positive integers"),
    "weight_decay": Setting("training", float, lambda v: v >= 0, ">= 0"),
    "momentum": Setting("training", float, lambda v: 0 <= v < 1, "in [0, 1)"),
    "nesterov": Setting("training", bool),
    "classifier_ratio": Setting("training", float, lambda v: v > 0, "> 0"),
    # the crop side; below the backbones' output stride (32) a crop has no feature map to localise with
    "image_size": Setting("training", int, lambda v: v >= MIN_IMAGE_SIZE, f">= {MIN_IMAGE_SIZE}"),
    "cam_curve_interval": Setting("evaluation", float, lambda v: 0 < v < 1, "in (0, 1)"),
    "iou_thresholds": Setting("evaluation", tuple, lambda v: len(v) > 0 and all(0 < t <= 100 for t in v),
                              "one or more integers in 1..100"),
    # train-fullsup images per class used for selection (wsolevaluation's --num_val_sample_per_class; 0: all)
    "num_val_sample_per_class": Setting("evaluation", int, lambda v: v >= 0, ">= 0"),
    "eval_checkpoint": Setting("evaluation", str, lambda v: v in ("last", "best"), "last or best"),
    "evaluate_epoch0": Setting("evaluation", bool),
}
SECTIONS = ("model", "training", "evaluation")
#: sections whose values make a configuration tuned or not (the backbone aside: it names the method table)
TUNED_SECTIONS = ("model", "training")


@dataclass(frozen=True)
class RunConfig:
    """Every resolved value of one run. ``hparams`` holds the method's hyperparameters (its ``Hparams``
    fields); ``overrides`` the ``--set`` pairs as given; ``method_table`` the ``[<dataset>.<backbone>]``
    table of the method file that applied (None: none did); ``selection_metric`` the criterion that selects
    the checkpoint when ``eval_checkpoint`` is ``"best"`` (the protocol's metric, or ``--set selection``).

    ``provenance`` maps every setting name and every hyperparameter as ``method.<name>`` to where its value
    came from (see the module docstring). ``tuned`` is True when the method's ``[<dataset>.<backbone>]`` table
    applied and every model and training value (the backbone aside) and every method hyperparameter is
    ``"published, ..."``: a configuration the authors published for this pair, not a default or a report.
    """

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
    lr_decay_points: tuple[int, ...]
    weight_decay: float
    momentum: float
    nesterov: bool
    classifier_ratio: float
    image_size: int
    cam_curve_interval: float
    iou_thresholds: tuple[int, ...]
    num_val_sample_per_class: int
    eval_checkpoint: str
    evaluate_epoch0: bool
    hparams: Mapping[str, Any]
    overrides: Mapping[str, str]
    off_protocol: bool
    provenance: Mapping[str, str]
    tuned: bool

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
            value = tuple(int(part) for part in text.split(",")) if text.strip() else ()
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


@dataclass
class _Overrides:
    settings: dict[str, Any]
    hparams: dict[str, str]
    selection: str | None


def _split_overrides(overrides: Mapping[str, str], method_class) -> _Overrides:
    """Overrides -> settings (converted and checked), method hyperparameters (as text) and the selection."""
    hparam_names = [field.name for field in dataclasses.fields(method_class.Hparams)]
    split = _Overrides({}, {}, None)
    for key, text in overrides.items():
        if key.startswith(METHOD_PREFIX) or (key in hparam_names and key not in SETTINGS and key != SELECTION_KEY):
            name = key.removeprefix(METHOD_PREFIX)
            if name in split.hparams:
                raise WsolbenchError(f"--set {key}: hyperparameter {name!r} given twice ({name} and "
                                     f"{METHOD_PREFIX}{name})")
            split.hparams[name] = text
        elif key == "backbone":
            raise WsolbenchError("--set backbone: choose the backbone with --backbone (that is not an override)")
        elif key in REMOVED:
            raise WsolbenchError(f"--set {key}: {REMOVED[key]}")
        elif key == SELECTION_KEY:
            split.selection = text.strip()
        elif key in SETTINGS:
            split.settings[key] = _setting_from_text(key, text)
        else:
            settable = [name for name, setting in SETTINGS.items() if setting.overridable] + [SELECTION_KEY]
            close = difflib.get_close_matches(key, settable + hparam_names, n=1)
            if close:
                raise WsolbenchError(f"--set {key}={text}: unknown key; did you mean {close[0]}?")
            raise WsolbenchError(f"--set {key}={text}: unknown key; settings: {', '.join(settable)}; method "
                                 f"{method_class.name!r} hyperparameters: {', '.join(hparam_names) or 'none'} "
                                 f"(also as {METHOD_PREFIX}<name>)")
    return split


# --- protocol files ---------------------------------------------------------------------------------------


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


def _provenance(table: dict, where: str) -> str:
    """The table's ``provenance`` text (:data:`UNTUNED` when it has none), checked against the convention."""
    text = table.get(PROVENANCE_KEY, UNTUNED)
    if not isinstance(text, str) or not text.startswith(PROVENANCE_PREFIXES) or \
            text.rstrip() in ("published,", "reported,"):
        raise WsolbenchError(f"{where}: provenance must be a string starting with 'published, <source>', "
                             f"'reported, <source>' or '{UNTUNED}', got {text!r}")
    return text


def _values(table: dict) -> dict:
    """The table without its ``provenance`` key."""
    return {key: value for key, value in table.items() if key != PROVENANCE_KEY}


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


def _sectioned_settings(document: dict, where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The [model], [training] and [evaluation] tables of a protocol or dataset file, checked and flattened:
    (values, provenance of each value)."""
    values, provenance = {}, {}
    for section in SECTIONS:
        table = document.get(section, {})
        text = _provenance(table, f"{where}: [{section}]")
        for key, value in _values(table).items():
            if key in REMOVED:
                raise WsolbenchError(f"{where}: [{section}] {REMOVED[key]}")
            if key not in SETTINGS or SETTINGS[key].section != section:
                home = f" (it belongs in [{SETTINGS[key].section}])" if key in SETTINGS else ""
                raise WsolbenchError(f"{where}: [{section}] has unknown key {key!r}{home}")
            values[key] = _setting_from_file(key, value, f"{where}: [{section}]")
            provenance[key] = text
    return values, provenance


def _protocol_defaults(files: ProtocolFiles) -> tuple[dict, dict[str, Any], dict[str, str]]:
    where, document = files.read_protocol()
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
    defaults, provenance = _sectioned_settings(document, where)
    missing = [key for key in SETTINGS if key not in defaults]
    if missing:
        raise WsolbenchError(f"{where}: [{SETTINGS[missing[0]].section}] lacks {missing[0]!r} "
                             "(protocol.toml gives every setting a default)")
    return document, defaults, provenance


def _dataset_defaults(files: ProtocolFiles, dataset: str):
    """(relative path, parsed content, values, provenance) of the dataset's file, or None."""
    found = files.find("datasets", dataset)
    if found is None:
        return None
    relative, where, document = found
    _require_tables(document, ("dataset", *SECTIONS), where)
    _name_entry(document, "dataset", dataset, where)
    return (relative, document, *_sectioned_settings(document, where))


def _method_tables(files: ProtocolFiles, method: str) -> tuple[str, str, dict] | None:
    """The method's file, every [<dataset>.<backbone>] table checked (a typo anywhere is an error)."""
    found = files.find("methods", method)
    if found is None:
        return None
    relative, where, document = found
    _name_entry(document, "method", method, where)
    for dataset, tables in document.items():
        if dataset in ("method", "hparams"):
            if not isinstance(tables, dict):
                raise WsolbenchError(f"{where}: {dataset} must be a table")
            if dataset == "hparams":
                _provenance(tables, f"{where}: [hparams]")
            continue
        if not isinstance(tables, dict) or not all(isinstance(table, dict) for table in tables.values()):
            raise WsolbenchError(f"{where}: [{dataset}] must hold only [{dataset}.<backbone>] tables")
        for backbone, table in tables.items():
            table_where = f"{where}: [{dataset}.{backbone}]"
            _provenance(table, table_where)
            for key, value in _values(table).items():
                if key == "hparams":
                    if not isinstance(value, dict):
                        raise WsolbenchError(f"{table_where}: hparams must be a table")
                    _provenance(value, f"{where}: [{dataset}.{backbone}.hparams]")
                elif key in REMOVED:
                    raise WsolbenchError(f"{table_where}: {REMOVED[key]}")
                elif key not in SETTINGS or not SETTINGS[key].overridable:
                    raise WsolbenchError(f"{table_where}: unknown key {key!r}")
                else:
                    _setting_from_file(key, value, table_where)
    return relative, where, document


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


def _selection(selection: str, override: str | None, spec: DatasetSpec, eval_checkpoint: str) -> str:
    """The selection criterion: the protocol's, or ``--set selection`` (checked when it names a metric)."""
    if override is None:
        return selection
    if not override:
        raise WsolbenchError(f"--set {SELECTION_KEY}=: give a metric ({', '.join(SELECTION_METRICS[spec.annotation])})"
                             " or a criterion the method offers")
    for annotation, metrics in SELECTION_METRICS.items():
        if override in metrics and annotation != spec.annotation:
            raise WsolbenchError(f"--set {SELECTION_KEY}={override}: {override} needs {annotation} labels; dataset "
                                 f"{spec.name!r} has {spec.annotation} "
                                 f"({', '.join(SELECTION_METRICS[spec.annotation])})")
    if eval_checkpoint == "last":
        raise WsolbenchError(f"--set {SELECTION_KEY}={override}: the last checkpoint is tested (eval_checkpoint = "
                             "last), so nothing is selected; add eval_checkpoint=best")
    return override


def _tuned(method_table: str | None, provenance: Mapping[str, str], values: Mapping[str, Any]) -> bool:
    """Whether a method table applied and every value that trains the model is published (a step-decay
    frequency that decay points override does not count)."""
    ignored = {"backbone", *(("lr_decay_frequency",) if values.get("lr_decay_points") else ())}
    keys = [key for key, setting in SETTINGS.items() if setting.section in TUNED_SECTIONS and key not in ignored]
    keys += [key for key in provenance if key.startswith(METHOD_PREFIX)]
    return method_table is not None and all(provenance[key].startswith("published, ") for key in keys)


def resolve_run(method: str, dataset: str | DatasetSpec, backbone: str | None = None,
                overrides: Mapping[str, str] | None = None,
                protocol: str | os.PathLike = DEFAULT_PROTOCOL) -> RunConfig:
    """The :class:`RunConfig` of ``method`` on ``dataset`` under ``protocol`` (a packaged id, an id a plugin
    ships, or a folder).

    ``dataset`` is a registered name or a :class:`DatasetSpec` (e.g. a never-seen layout folder's); method,
    dataset and backbone names are checked against the registries, whose errors name close matches. The
    protocol's ``datasets/`` and ``methods/`` files come from its folder and from every folder plugins
    registered for its id.
    """
    from wsolbench import plugins as plugin_loader

    overrides = dict(overrides or {})
    loaded = plugin_loader.plugins()
    method_class = loaded.registries["method"].get(method)
    spec = dataset if isinstance(dataset, DatasetSpec) else loaded.registries["dataset"].get(dataset)
    files = open_protocol(protocol, loaded.protocol_folders)

    protocol_document, values, provenance = _protocol_defaults(files)
    files.attach(protocol_document["protocol"]["id"], loaded.protocol_folders)
    content: dict[str, Any] = {PROTOCOL_FILE: protocol_document}
    dataset_found = _dataset_defaults(files, spec.name)
    if dataset_found is not None:
        relative, document, dataset_values, dataset_provenance = dataset_found
        content[relative] = document
        values.update(dataset_values)
        provenance.update(dataset_provenance)

    if backbone:
        provenance["backbone"] = CHOSEN
    backbone = backbone or values["backbone"]
    loaded.registries["backbone"].get(backbone)
    values["backbone"] = backbone

    hparam_values: dict[str, Any] = {}
    hparam_provenance: dict[str, str] = {}
    method_table = None
    method_found = _method_tables(files, method)
    if method_found is not None:
        relative, where, document = method_found
        file_hparams = document.get("hparams", {})
        _method_hparams(method_class, _values(file_hparams), f"{where}: [hparams]")
        hparam_values.update(_values(file_hparams))
        hparam_provenance.update(dict.fromkeys(_values(file_hparams), _provenance(file_hparams, where)))
        used = {"method": document["method"], "hparams": file_hparams}
        table = document.get(spec.name, {}).get(backbone)
        if table is not None:
            method_table = f"{spec.name}.{backbone}"
            used["table"] = {method_table: table}
            table_hparams = table.get("hparams", {})
            _method_hparams(method_class, _values(table_hparams), f"{where}: [{method_table}.hparams]")
            hparam_values.update(_values(table_hparams))
            hparam_provenance.update(dict.fromkeys(_values(table_hparams), _provenance(table_hparams, where)))
            table_settings = {key: value for key, value in _values(table).items() if key != "hparams"}
            values.update({key: _setting_from_file(key, value, f"{where}: [{method_table}]")
                           for key, value in table_settings.items()})
            provenance.update(dict.fromkeys(table_settings, _provenance(table, where)))
        content[relative] = used

    split = _split_overrides(overrides, method_class)
    _method_hparams(method_class, split.hparams, "--set")
    values.update(split.settings)
    provenance.update(dict.fromkeys(split.settings, OVERRIDDEN))
    hparam_values.update(split.hparams)
    hparam_provenance.update(dict.fromkeys(split.hparams, OVERRIDDEN))
    hparams = dataclasses.asdict(method_class.make_hparams(hparam_values))
    provenance.update({f"{METHOD_PREFIX}{name}": hparam_provenance.get(name, METHOD_DEFAULT) for name in hparams})

    selection = protocol_document.get("selection", {})
    if spec.annotation not in selection:
        raise WsolbenchError(f"dataset {spec.name!r} has {spec.annotation!r} localization labels; protocol "
                             f"{protocol_document['protocol']['id']!r} selects checkpoints only for "
                             f"{', '.join(selection) or 'no'} labels")
    selection_metric = _selection(selection[spec.annotation], split.selection, spec, values["eval_checkpoint"])
    splits = protocol_document["splits"]
    provenance = {key: provenance[key] for key in (*SETTINGS, *(f"{METHOD_PREFIX}{name}" for name in hparams))}
    return RunConfig(
        protocol=protocol_document["protocol"]["id"], fingerprint=fingerprint_of(content), method=method,
        dataset=spec.name, defaults_from="dataset" if dataset_found is not None else "protocol",
        method_table=method_table, train_split=splits["train"], val_split=splits["val"],
        test_split=splits["test"], selection_metric=selection_metric, **values,
        hparams=MappingProxyType(hparams), overrides=MappingProxyType(overrides), off_protocol=bool(overrides),
        provenance=MappingProxyType(provenance), tuned=_tuned(method_table, provenance, values))
