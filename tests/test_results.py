"""The run record: provenance, new_record, atomic write, validated read."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from wsolbench import results
from wsolbench.errors import WsolbenchError
from wsolbench.protocol import resolve_run
from wsolbench.results import RECORD_VERSION, new_record, provenance, read_record, write_record

KEYS = ["version", "method", "backbone", "dataset", "protocol", "config", "overrides", "off_protocol", "seed",
        "provenance", "selected", "scores", "history", "wall_time_s"]


@pytest.fixture
def config():
    return resolve_run("cam", "synthetic", None, {"epochs": "2", "lr": "0.05"})


@pytest.fixture
def finished(config):
    record = new_record(config, 7, ["/somewhere/bin/wsolbench", "run", "--method", "cam"])
    record.update(selected={"epoch": 2, "criterion": "maxboxacc_v2"},
                  scores={"train_fullsup": {"maxboxacc_v2": 61.5, "top1": 90.0},
                          "test": {"maxboxacc_v2": 58.25,
                                   "maxboxacc_v2_per_iou": {"30": 90.0, "50": 60.0, "70": 24.75}}},
                  history=[{"epoch": 0, "maxboxacc_v2": 10.0}, {"epoch": 1, "maxboxacc_v2": 50.0},
                           {"epoch": 2, "maxboxacc_v2": 61.5}],
                  wall_time_s=12.5)
    return record


# --- provenance ---------------------------------------------------------------------------------------------


def test_provenance_versions_and_plugins():
    import torchvision

    info = provenance(["wsolbench", "run"])
    assert info["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert info["torch"] == torch.__version__ and info["torchvision"] == torchvision.__version__
    assert info["wsolbench"] == "0.1.0"
    assert info["plugins"]["wsolbench"] == "0.1.0"  # the built-in plugins' distribution
    assert json.loads(json.dumps(info)) == info


def test_provenance_device_has_no_host_name():
    info = provenance(["wsolbench"])
    device = info["device"]
    assert device["cpu_count"] == os.cpu_count()
    assert device["cuda_devices"] == ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                                      if torch.cuda.is_available() else [])
    assert isinstance(device["cpu"], str) and device["cpu"]
    hostname = socket.gethostname()
    if len(hostname) >= 4:
        assert hostname not in json.dumps(info)


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_git_sha_of_a_repository(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    sha = git(tmp_path, "rev-parse", "HEAD")
    assert len(sha) == 40
    assert results.git_sha(tmp_path) == {"sha": sha, "dirty": False}
    (tmp_path / "a.txt").write_text("b")
    assert results.git_sha(tmp_path) == {"sha": sha, "dirty": True}


def test_git_sha_without_a_repository_or_without_git(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert results.git_sha(tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable
    assert results.git_sha(tmp_path) is None
    monkeypatch.chdir(tmp_path)
    assert provenance(["wsolbench"])["git"] is None


@pytest.mark.parametrize("argv, expected", [
    (["/home/u/venv/bin/wsolbench", "run", "--method", "cam", "--set", "lr=0.1 x"],
     "wsolbench run --method cam --set 'lr=0.1 x'"),
    (["/home/u/src/wsolbench/__main__.py", "run", "--dataset", "synthetic"], "wsolbench run --dataset synthetic"),
    (["mytool", "run"], "mytool run"),
])
def test_reproduce_command(argv, expected, monkeypatch):
    monkeypatch.delenv("WSOLBENCH_LOAD_PLUGINS", raising=False)
    assert provenance(argv)["command"] == expected


def test_reproduce_command_keeps_a_plugin_selection(monkeypatch):
    monkeypatch.setenv("WSOLBENCH_LOAD_PLUGINS", "cam,datasets backbones")
    info = provenance(["wsolbench", "run"])
    assert info["command"] == "WSOLBENCH_LOAD_PLUGINS='cam,datasets backbones' wsolbench run"
    assert info["load_plugins"] == "cam,datasets backbones"


# --- new_record -----------------------------------------------------------------------------------------------


def test_new_record_fills_all_but_the_engine_part(config):
    record = new_record(config, 7, ["wsolbench", "run"])
    assert list(record) == KEYS
    assert record["version"] == RECORD_VERSION
    assert (record["method"], record["backbone"], record["dataset"]) == ("cam", "resnet18", "synthetic")
    assert record["protocol"] == {"id": "wsolevaluation", "fingerprint": config.fingerprint}
    assert record["config"]["epochs"] == 2 and record["config"]["lr"] == 0.05
    assert record["config"]["iou_thresholds"] == [30, 50, 70]
    assert record["overrides"] == {"epochs": "2", "lr": "0.05"} and record["off_protocol"] is True
    assert record["seed"] == 7
    assert record["provenance"]["command"] == "wsolbench run"
    assert (record["selected"], record["scores"], record["history"], record["wall_time_s"]) == (None, None, [], None)


# --- write / read ---------------------------------------------------------------------------------------------


def test_round_trip(tmp_path, finished):
    path = tmp_path / "runs" / "run.json"
    write_record(path, finished)
    assert read_record(path) == json.loads(json.dumps(finished))
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]


def test_numpy_and_torch_values_are_written_as_numbers(tmp_path, finished):
    finished["scores"]["test"].update(pxap=np.float32(0.5), curve=np.array([1, 2]), top1=torch.tensor(3.0))
    write_record(tmp_path / "r.json", finished)
    test = read_record(tmp_path / "r.json")["scores"]["test"]
    assert (test["pxap"], test["curve"], test["top1"]) == (0.5, [1, 2], 3.0)


@pytest.mark.parametrize("bad", [object(), {1, 2}, float("nan"), float("inf")])
def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path, finished, bad):
    path = tmp_path / "run.json"
    write_record(path, finished)
    before = path.read_bytes()
    broken = json.loads(json.dumps(finished))
    broken["scores"]["test"]["bad"] = bad
    with pytest.raises(WsolbenchError, match="cannot write run record .*run.json") as error:
        write_record(path, broken)
    assert "\n" not in str(error.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_failed_rename_leaves_no_temporary_file(tmp_path, finished, monkeypatch):
    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.os, "replace", fail)
    with pytest.raises(WsolbenchError, match="No space left on device"):
        write_record(tmp_path / "run.json", finished)
    assert list(tmp_path.iterdir()) == []


def test_an_unfinished_record_is_not_written(tmp_path, config):
    with pytest.raises(WsolbenchError, match="has selected = None; expected an object"):
        write_record(tmp_path / "run.json", new_record(config, 0, ["wsolbench"]))
    assert list(tmp_path.iterdir()) == []


def corrupt(record, change):
    record = json.loads(json.dumps(record))
    change(record)
    return record


@pytest.mark.parametrize("content, message", [
    ("{", "is not valid JSON: unexpected end of data: line 1 column 2"),
    ("[]", "is not a JSON object"),
    (lambda r: r.pop("scores") and r.pop("seed"), "lacks seed, scores"),
    (lambda r: r.update(version=RECORD_VERSION + 1), f"has version {RECORD_VERSION + 1}; this wsolbench reads"),
    (lambda r: r.update(off_protocol="no"), "has off_protocol = 'no'; expected true or false"),
    (lambda r: r.update(seed=True), "has seed = True; expected an integer or null"),
    (lambda r: r.update(wall_time_s="12"), "has wall_time_s = '12'; expected a number"),
    (lambda r: r.update(wall_time_s=-1), "negative wall_time_s"),
    (lambda r: r["protocol"].pop("fingerprint"), "has no protocol fingerprint"),
    (lambda r: r["selected"].update(epoch="2"), "selected without an integer epoch"),
    (lambda r: r["scores"].pop("test"), "has no scores for test"),
    (lambda r: r["history"].append(3), "history entry that is not an object"),
])
def test_read_errors_are_one_line_and_name_the_file(tmp_path, finished, content, message):
    path = tmp_path / "run.json"
    path.write_text(content if isinstance(content, str) else json.dumps(corrupt(finished, content)))
    with pytest.raises(WsolbenchError, match=message) as error:
        read_record(path)
    assert str(error.value).startswith(f"run record {path} ") and "\n" not in str(error.value)


def test_read_a_missing_record(tmp_path):
    with pytest.raises(WsolbenchError, match=f"run record {tmp_path / 'none.json'} is missing"):
        read_record(tmp_path / "none.json")

