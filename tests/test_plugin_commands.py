"""``wsolbench plugins | methods | backbones | datasets``."""

import json
from dataclasses import dataclass

from click.testing import CliRunner

from fake_plugins import add_entry_points, fake_entry_point, method_plugin
from wsolbench import __version__
from wsolbench.cli import cli
from wsolbench.method import Method


class Spotlight(Method):
    name = "spotlight"
    paper = "Doe, A Spotlight on Parts, 2031"

    @dataclass(frozen=True)
    class Hparams:
        radius: float = 0.25
        warm_epochs: int = 5


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_plugins_lists_each_entry_point_with_what_it_registered():
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    listing = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert listing["cam"] == {"name": "cam", "distribution": "wsolbench", "version": __version__,
                              "hooks": ["wsolbench_register_methods"],
                              "registers": {"method": ["cam"], "dataset": [], "backbone": [], "metric": []}}
    assert listing["backbones"]["registers"]["backbone"] == [
        "inception_v3", "mobilenet_v2", "resnet18", "resnet50", "vgg16"]
    assert {"cub", "imagenet", "openimages", "synthetic", "synthetic-masks"} <= \
        set(listing["datasets"]["registers"]["dataset"])


def test_plugins_lists_a_plugin_that_failed_to_load_with_its_error(monkeypatch):
    def fail():
        raise ImportError("No module named 'missing_dependency'")

    add_entry_points(monkeypatch, fake_entry_point("broken", fail, "broken-dist"),
                     fake_entry_point("spot", lambda: method_plugin(Spotlight)))
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    listing = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert listing["broken"] == {"name": "broken", "distribution": "broken-dist",
                                 "error": "ImportError: No module named 'missing_dependency'"}
    assert listing["spot"]["registers"] == {"method": ["spotlight"], "dataset": [], "backbone": [], "metric": []}
    assert listing["spot"]["version"] == "1.2.3"


def test_methods_json_gives_paper_distribution_and_hyperparameter_defaults(monkeypatch):
    add_entry_points(monkeypatch, fake_entry_point("spot", lambda: method_plugin(Spotlight)))
    result = invoke("methods", "--json")
    assert result.exit_code == 0, result.output
    by_name = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert {"cam", "spotlight"} <= set(by_name)
    spot = by_name["spotlight"]
    assert (spot["paper"], spot["distribution"], spot["version"], spot["plugin"]) == \
        ("Doe, A Spotlight on Parts, 2031", "toy-dist", "1.2.3", "spot")
    assert spot["hparams"] == {"radius": 0.25, "warm_epochs": 5}
    assert by_name["cam"]["hparams"] == {} and by_name["cam"]["distribution"] == "wsolbench"


def test_methods_pattern_filters_the_table(monkeypatch):
    add_entry_points(monkeypatch, fake_entry_point("spot", lambda: method_plugin(Spotlight)))
    lines = invoke("methods", "spot*").stdout.splitlines()
    assert lines[0].split() == ["name", "paper", "distribution", "hyperparameters", "(defaults)"]
    assert len(lines) == 3  # header, rule, one row
    assert lines[2].startswith("spotlight") and "toy-dist 1.2.3" in lines[2]
    assert lines[2].endswith("radius=0.25, warm_epochs=5")
    c_rows = invoke("methods", "c*").stdout.splitlines()[2:]
    assert any(row.startswith("cam ") and row.endswith(" -") for row in c_rows)
    assert not any(row.startswith("spotlight") for row in c_rows)


def test_a_pattern_matching_nothing_says_so_and_lists_the_known_names():
    result = invoke("methods", "zz*")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip().startswith("wsolbench: no method matches 'zz*' (known: ")
    assert json.loads(invoke("methods", "zz*", "--json").stdout) == []


def test_backbones_pattern():
    entries = json.loads(invoke("backbones", "resnet*", "--json").stdout)
    assert [e["name"] for e in entries] == ["resnet18", "resnet50"]
    assert all(e["distribution"] == "wsolbench" and e["description"] for e in entries)


def test_datasets_table_and_json():
    entries = {e["name"]: e for e in json.loads(invoke("datasets", "--json").stdout)}
    cub = entries["cub"]
    assert (cub["folder"], cub["classes"], cub["annotation"]) == ("CUB", 200, "boxes")
    assert (entries["openimages"]["folder"], entries["openimages"]["annotation"]) == ("OpenImages", "masks")
    rows = invoke("datasets", "cub").stdout.splitlines()
    assert rows[0].split() == ["name", "folder", "classes", "annotation", "distribution", "description"]
    assert rows[2].split()[:5] == ["cub", "CUB", "200", "boxes", "wsolbench"]
