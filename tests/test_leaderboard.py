"""``wsolbench leaderboard``: every format against a table written by hand from a handful of records, the
published rows and their marks, bad records skipped with one warning, escaping, and no torch import."""

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsolbench.cli import cli
from wsolbench.leaderboard.formats import render
from wsolbench.leaderboard.table import published_rows, reproduced_rows, select_rows
from wsolbench.results import RECORD_VERSION


def _record(method, seed, v2, per_iou, top1_loc=None, gt_known=None, top1_cls=None, *, dataset="synthetic",
            overrides=None, tuned=False, localization_labels=False):
    test = {"maxboxacc_v2": v2, "maxboxacc_v2_per_iou": dict(zip(("30", "50", "70"), per_iou))}
    for key, value in (("top1_loc", top1_loc), ("gt_known_loc", gt_known), ("top1_cls", top1_cls)):
        if value is not None:
            test[key] = value
    return {
        "version": RECORD_VERSION, "method": method, "backbone": "resnet18", "dataset": dataset,
        "protocol": {"id": "wsolevaluation", "fingerprint": "f" * 8}, "config": {"tuned": tuned},
        "overrides": overrides or {}, "off_protocol": bool(overrides), "seed": seed,
        "provenance": {"wsolbench": "0.1.0", "git": {"sha": "abcdef1234567", "dirty": False},
                       "command": f"wsolbench run --method {method} --dataset {dataset} --seed {seed}",
                       "date": f"2026-12-0{seed + 1}T10:00:00+00:00", "python": "3.11.7", "torch": "2.14.1",
                       "device": {"cpu": "a cpu", "cuda_devices": []}},
        "selected": {"epoch": 10, "criterion": "last"}, "scores": {"train_fullsup": {}, "test": test},
        "history": [], "wall_time_s": 1.0,
        "training_data": {"split": "val" if localization_labels else "train",
                          "localization_labels": localization_labels}}


def _write(folder: Path, name: str, record) -> Path:
    path = folder / name / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    return path


@pytest.fixture
def runs(tmp_path):
    _write(tmp_path, "cam-0", _record("cam", 0, 50.0, (90.0, 50.0, 10.0), 40.0, 45.0, 90.0))
    _write(tmp_path, "cam-1", _record("cam", 1, 54.0, (94.0, 56.0, 12.0), 44.0, 47.0, 92.0))
    _write(tmp_path, "fsl-0", _record("fsl", 0, 60.0, (95.0, 62.0, 23.0), gt_known=62.0, localization_labels=True))
    _write(tmp_path, "has-0", _record("has", 0, 20.0, (40.0, 15.0, 5.0), 10.0, 15.0, 70.0, overrides={"lr": "1"}))
    return tmp_path


def _rows(path, **options):
    from wsolbench.leaderboard.records import load_records

    records = [record for _, record in load_records([path], warn=print)]
    return select_rows(reproduced_rows(records), published_rows(), **options)


def test_github_table_by_hand(runs):
    # cam: mean (50 + 54) / 2 = 52, sample std sqrt(((50-52)^2 + (54-52)^2) / 1) = 2.83; has is off-protocol
    assert render(_rows(runs), "github").splitlines() == [
        "| #   | method   | backbone   | dataset   | runs   | MaxBoxAccV2   | @30/50/70      | Top-1 Loc   "
        "| GT-known Loc   | Top-1 Cls   | tier     | notes                                                       |",
        "|-----|----------|------------|-----------|--------|---------------|----------------|-------------"
        "|----------------|-------------|----------|-------------------------------------------------------------|",
        "| 1   | fsl      | resnet18   | synthetic | 1      | 60.0          | 95.0/62.0/23.0 | -           "
        "| 62.0           | -           | protocol | untuned; uses localization labels; seeds 0; wsolbench 0.1.0 |",
        "| 2   | cam      | resnet18   | synthetic | 2      | 52.0 ± 2.8    | 92.0/53.0/11.0 | 42.0 ± 2.8  "
        "| 46.0 ± 1.4     | 91.0 ± 1.4  | protocol | untuned; seeds 0,1; wsolbench 0.1.0                         |",
    ]


def test_off_protocol_rows_appear_with_all_and_sorting_follows_the_metric(runs):
    shown = _rows(runs, show_all=True, dataset="synthetic")
    assert [(row.method, row.tier) for row in shown] == [("fsl", "protocol"), ("cam", "protocol"),
                                                         ("has", "off-protocol")]
    by_top1 = _rows(runs, metric="top1_loc")
    assert [row.method for row in by_top1] == ["cam", "fsl"]  # fsl has no Top-1 Loc: last


def test_csv_and_json_carry_every_value_and_the_provenance(runs):
    rows = _rows(runs)
    lines = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    cam = next(line for line in lines if line["method"] == "cam")
    assert cam["maxboxacc_v2"] == "52.0000" and cam["maxboxacc_v2_std"] == "2.8284" and cam["seeds"] == "0 1"
    assert cam["maxboxacc_v2_iou70"] == "11.0000" and cam["pxap"] == "" and cam["runs"] == "2"
    entries = json.loads(render(rows, "json"))["rows"]
    fsl = next(entry for entry in entries if entry["method"] == "fsl")
    assert fsl["marks"] == ["untuned", "uses localization labels"] and fsl["seeds"] == [0]
    assert fsl["date"] == "2026-12-01T10:00:00+00:00" and fsl["code_version"] == "0.1.0 (abcdef1234)"
    assert fsl["environment"] == {"python": "3.11.7", "torch": "2.14.1", "cpu": "a cpu", "cuda_devices": []}
    assert {"task": "Weakly Supervised Object Localization", "dataset": "synthetic", "split": "test",
            "metric": "MaxBoxAccV2", "key": "maxboxacc_v2", "value": 60.0, "std": None} in fsl["results"]
    assert fsl["commands"] == ["wsolbench run --method fsl --dataset synthetic --seed 0"]


def test_latex_escapes_and_writes_plus_minus(runs):
    text = render(_rows(runs), "latex")
    assert r"52.0 $\pm$ 2.8" in text and r"GT-known Loc" in text and r"\#" in text
    assert "untuned; seeds 0,1" in text


def test_html_escapes_a_hostile_method_name(tmp_path):
    _write(tmp_path, "x", _record("<script>alert(1)</script>", 0, 1.0, (1.0, 1.0, 1.0)))
    page = render(_rows(tmp_path), "html")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<tr>") == 2  # the header and one row


def test_commands_print_each_seed_and_the_citations(runs):
    text = render(_rows(runs, dataset="synthetic"), "github", commands=True)
    assert "[2] `wsolbench run --method cam --dataset synthetic --seed 0`" in text
    assert "[2] `wsolbench run --method cam --dataset synthetic --seed 1`" in text


def test_published_rows_sit_beside_runs_of_their_dataset_with_tiers_and_marks(tmp_path):
    _write(tmp_path, "cam", _record("cam", 0, 61.0, (90.0, 65.0, 28.0), dataset="cub"))
    rows = _rows(tmp_path, dataset="cub", backbone="resnet50")
    cams = [row for row in rows if row.method == "cam"]
    assert [(row.kind, row.values["maxboxacc_v2"].mean) for row in cams] == [("published", 63.0)]
    fsl = next(row for row in rows if row.method == "fsl")
    assert fsl.values["maxboxacc_v2"].mean == 82.4 and "uses localization labels" in fsl.marks()
    assert next(row for row in rows if row.method == "has").values["maxboxacc_v2"].mean == 64.7  # 63.0 + 1.7
    assert {row.tier for row in _rows(tmp_path, dataset="cub")} == {"protocol", "protocol-data", "fixed-threshold"}
    assert not [row for row in _rows(tmp_path) if row.dataset == "synthetic"]


def test_bad_records_are_skipped_with_one_warning_each(runs):
    _write(runs, "half", '{"version": 1, "method": "ca')
    _write(runs, "list", "[1, 2]")
    _write(runs, "future", json.dumps({**_record("cam", 3, 1.0, (1.0, 1.0, 1.0)), "version": RECORD_VERSION + 1}))
    result = CliRunner().invoke(cli, ["leaderboard", str(runs), "--format", "csv"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("wsolbench: warning:")]
    assert len(warnings) == 3
    assert any("half/record.json is not valid JSON" in line for line in warnings)
    assert any("future/record.json has version" in line for line in warnings)
    assert len(list(csv.DictReader(io.StringIO(result.stdout)))) == 2


def test_a_missing_path_and_an_unknown_metric_are_one_line_errors(tmp_path):
    result = CliRunner().invoke(cli, ["leaderboard", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no such run record or folder" in result.stderr
    result = CliRunner().invoke(cli, ["leaderboard", str(tmp_path), "--metric", "accuracy"])
    assert result.exit_code == 2 and "unknown --metric 'accuracy'" in result.stderr


def test_the_leaderboard_does_not_import_torch(runs):
    code = ("import sys; from wsolbench.cli import cli; from click.testing import CliRunner; "
            f"r = CliRunner().invoke(cli, ['leaderboard', {str(runs)!r}]); "
            "assert r.exit_code == 0, r.output; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.fixture
def two_seeds(tmp_path):
    # mean (50 + 52) / 2 = 51, sample std sqrt(2) = 1.4 for every metric
    _write(tmp_path, "a", _record("my_cam", 0, 50.0, (90.0, 50.0, 10.0), 40.0, 45.0, 90.0))
    _write(tmp_path, "b", _record("my_cam", 1, 52.0, (92.0, 52.0, 12.0), 42.0, 47.0, 92.0))
    return tmp_path


def test_latex_table_by_hand(two_seeds):
    assert render(_rows(two_seeds), "latex").splitlines() == [
        r"\begin{tabular}{llllllllllll}",
        r"\hline",
        r" \#   & method   & backbone   & dataset   & runs   & MaxBoxAccV2    & @30/50/70      & Top-1 Loc      "
        r"& GT-known Loc   & Top-1 Cls      & tier     & notes                               \\",
        r"\hline",
        r" 1    & my\_cam  & resnet18   & synthetic & 2      & 51.0 $\pm$ 1.4 & 91.0/51.0/11.0 & 41.0 $\pm$ 1.4 "
        r"& 46.0 $\pm$ 1.4 & 91.0 $\pm$ 1.4 & protocol & untuned; seeds 0,1; wsolbench 0.1.0 \\",
        r"\hline",
        r"\end{tabular}",
    ]


def test_html_table_by_hand(two_seeds):
    from wsolbench.leaderboard.formats import html_fragment

    cells = re.findall(r"<td>(.*?)</td>", str(html_fragment(_rows(two_seeds))))
    assert cells == ["1", "my_cam", "resnet18", "synthetic", "2", "51.0 ± 1.4", "91.0/51.0/11.0", "41.0 ± 1.4",
                     "46.0 ± 1.4", "91.0 ± 1.4", "protocol", "untuned; seeds 0,1; wsolbench 0.1.0"]
    page = render(_rows(two_seeds), "html")
    assert page.startswith("<!DOCTYPE html>") and page.count("<table") == 1
