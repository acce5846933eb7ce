"""Leaderboard rows: our runs (mean ± std over seeds) and the published numbers beside them.

A reproduced row groups the records of one method x backbone x dataset run under one configuration (the
protocol fingerprint and the overrides: runs with other ``--set`` values are other rows), one record per
seed; each metric is the mean over the seeds of the test score and its sample standard deviation (none for
one seed). A published row groups the numbers of one source for one method x backbone x dataset x tier
(``published.csv``: one line per number, with its citation).

Tiers say how a number was obtained: ``protocol`` (wsolevaluation's: thresholds swept, checkpoint the last
or selected on train-fullsup, test touched once), ``protocol-data`` (its data, selection unchecked),
``fixed-threshold`` (a fixed CAM threshold or test-split selection: not comparable), and ``off-protocol``
for our runs with overrides (hidden unless asked for). Marks: ``untuned`` (the configuration is not one the
authors published), ``localization labels`` (trained on boxes or masks: the few-shot baseline, never a WSOL
result). Torch-free.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from importlib import resources

#: the test scores a row shows, in column order, and how to read each from a record's test scores
METRICS = ("maxboxacc_v2", "maxboxacc_v2_iou30", "maxboxacc_v2_iou50", "maxboxacc_v2_iou70", "top1_loc",
           "gt_known_loc", "top1_cls", "pxap")
METRIC_NAMES = {"maxboxacc_v2": "MaxBoxAccV2", "maxboxacc_v2_iou30": "MaxBoxAccV2@30",
                "maxboxacc_v2_iou50": "MaxBoxAccV2@50", "maxboxacc_v2_iou70": "MaxBoxAccV2@70",
                "top1_loc": "Top-1 Loc", "gt_known_loc": "GT-known Loc", "top1_cls": "Top-1 Cls", "pxap": "PxAP"}
TIERS = ("protocol", "protocol-data", "fixed-threshold", "off-protocol")
PUBLISHED_FILE = "published.csv"
TASK = "Weakly Supervised Object Localization"


@dataclass(frozen=True)
class Value:
    """A metric of a row: the mean over its runs (or the published number) and the std over seeds."""

    mean: float
    std: float | None = None


@dataclass
class Row:
    """One leaderboard line. ``kind`` is ``"reproduced"`` (our records) or ``"published"``."""

    method: str
    backbone: str
    dataset: str
    kind: str
    tier: str
    values: dict[str, Value]
    untuned: bool = False
    localization_labels: bool = False
    seeds: list = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    source: str = ""
    citation: str = ""
    note: str = ""
    date: str | None = None
    code_version: str | None = None
    environment: dict = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return len(self.seeds)

    @property
    def off_protocol(self) -> bool:
        return self.tier == "off-protocol"

    def flags(self) -> list[str]:
        """``untuned`` and ``uses localization labels``, where they apply."""
        return [flag for flag, applies in (("untuned", self.untuned),
                                           ("uses localization labels", self.localization_labels)) if applies]

    def marks(self) -> list[str]:
        """What a reader must know before comparing the row: its tier when not the protocol's, and the flags."""
        return ([] if self.tier == "protocol" else [self.tier]) + self.flags()


def _test_values(test: dict) -> dict[str, float]:
    values = {key: test[key] for key in ("maxboxacc_v2", "top1_loc", "gt_known_loc", "top1_cls", "pxap")
              if isinstance(test.get(key), (int, float))}
    for delta, value in (test.get("maxboxacc_v2_per_iou") or {}).items():
        if f"maxboxacc_v2_iou{delta}" in METRICS:
            values[f"maxboxacc_v2_iou{delta}"] = value
    return values


def _code_version(provenance: dict) -> str | None:
    version = provenance.get("wsolbench")
    git = provenance.get("git") or {}
    if git.get("sha"):
        return f"{version} ({git['sha'][:10]}{', dirty' if git.get('dirty') else ''})"
    return version


def _environment(provenance: dict) -> dict:
    device = provenance.get("device") or {}
    return {"python": provenance.get("python"), "torch": provenance.get("torch"),
            "cpu": device.get("cpu"), "cuda_devices": device.get("cuda_devices", [])}


def reproduced_rows(records: list[dict]) -> list[Row]:
    """One row per method x backbone x dataset x configuration (fingerprint and overrides) of ``records``."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        key = (record["method"], record["backbone"], record["dataset"], record["protocol"]["fingerprint"],
               json.dumps(record["overrides"], sort_keys=True))
        groups.setdefault(key, []).append(record)
    rows = []
    for (method, backbone, dataset, _, _), group in groups.items():
        group.sort(key=lambda r: (r["seed"] is None, r["seed"] or 0))
        per_run = [_test_values(r["scores"]["test"]) for r in group]
        values = {}
        for metric in METRICS:
            series = [run[metric] for run in per_run if metric in run]
            if len(series) == len(per_run):
                values[metric] = Value(statistics.fmean(series), statistics.stdev(series) if len(series) > 1 else None)
        latest = max(group, key=lambda r: r["provenance"].get("date") or "")
        rows.append(Row(
            method=method, backbone=backbone, dataset=dataset, kind="reproduced",
            tier="off-protocol" if any(r["off_protocol"] for r in group) else "protocol", values=values,
            untuned=not all(r["config"].get("tuned", False) for r in group),
            localization_labels=any((r.get("training_data") or {}).get("localization_labels") for r in group),
            seeds=[r["seed"] for r in group], commands=[r["provenance"].get("command", "") for r in group],
            source=f"wsolbench {latest['provenance'].get('wsolbench') or ''}".strip(),
            date=latest["provenance"].get("date"), code_version=_code_version(latest["provenance"]),
            environment=_environment(latest["provenance"])))
    return rows


def published_rows() -> list[Row]:
    """The published numbers shipped with wsolbench (``wsolbench/leaderboard/published.csv``), one row per
    method x backbone x dataset x tier x citation."""
    text = resources.files("wsolbench.leaderboard").joinpath(PUBLISHED_FILE).read_text(encoding="utf-8")
    groups: dict[tuple, Row] = {}
    for line in csv.DictReader(text.splitlines()):
        key = (line["method"], line["backbone"], line["dataset"], line["tier"], line["citation"])
        row = groups.get(key)
        if row is None:
            row = groups[key] = Row(method=line["method"], backbone=line["backbone"], dataset=line["dataset"],
                                    kind="published", tier=line["tier"], values={},
                                    localization_labels=line["localization_labels"] == "true",
                                    citation=line["citation"])
        row.values[line["metric"]] = Value(float(line["value"]))
        for attribute, text_value in (("source", line["source"]), ("note", line["note"])):
            parts = [p for p in getattr(row, attribute).split("; ") if p]
            if text_value and text_value not in parts:
                setattr(row, attribute, "; ".join([*parts, text_value]))
    return list(groups.values())


def select_rows(reproduced: list[Row], published: list[Row], *, dataset: str | None = None,
                backbone: str | None = None, metric: str = "maxboxacc_v2", show_all: bool = False) -> list[Row]:
    """The rows to show, best first by ``metric`` (rows without it last): off-protocol runs only with
    ``show_all``; published rows of the datasets shown (of ``dataset`` when given; every published row when
    there are no runs or with ``show_all``); then filtered by ``dataset`` and ``backbone``."""
    rows = [row for row in reproduced if show_all or not row.off_protocol]
    datasets = {row.dataset for row in rows}
    rows += [row for row in published if show_all or not reproduced or row.dataset in datasets
             or row.dataset == dataset]
    rows = [row for row in rows if (dataset is None or row.dataset == dataset)
            and (backbone is None or row.backbone == backbone)]

    def order(row: Row):
        value = row.values.get(metric)
        return (row.dataset, value is None, -(value.mean if value else 0.0), row.kind != "reproduced", row.method)

    return sorted(rows, key=order)


#: the published rows a single run is shown beside besides its own method's: the baseline and the reference points
CONTEXT_METHODS = ("cam", "center", "fsl")


def context_rows(record: dict) -> list[Row]:
    """A run's row beside the published rows of its dataset and backbone for its method, CAM and the centre
    and few-shot reference points (what ``wsolbench report`` shows), best first by MaxBoxAccV2 (PxAP)."""
    methods = {record["method"], *CONTEXT_METHODS}
    published = [row for row in published_rows() if row.method in methods and row.dataset == record["dataset"]
                 and row.backbone == record["backbone"]]
    metric = "pxap" if "pxap" in record["scores"]["test"] else "maxboxacc_v2"
    return select_rows(reproduced_rows([record]), published, metric=metric, show_all=True)
