"""``wsolbench run`` from the command line: a never-seen dataset folder, overrides, bad input."""

import json
import shutil

from click.testing import CliRunner

from wsolbench.cli import cli
from wsolbench.data.synthetic import SynthParams, generate

TINY = dict(classes=2, train_per_class=2, val_per_class=1, test_per_class=2, image_size=32, seed=5)


def _never_seen_root(tmp_path):
    root = generate(tmp_path / "synth", SynthParams(variant="boxes", **TINY))
    for part in ("metadata", "dataset"):
        shutil.move(root / part / "SYNTHETIC", root / part / "MINE")
    return root


def test_run_on_a_never_seen_folder_records_overrides(tmp_path):
    root = _never_seen_root(tmp_path)
    result = CliRunner().invoke(cli, [
        "run", "--method", "cam", "--dataset", "MINE", "--root", str(root), "--backbone", "resnet18",
        "--no-pretrained", "--device", "cpu", "--epochs", "1", "--set", "image_size=32", "batch_size=2",
        "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "OFF-PROTOCOL" in result.stdout and "MaxBoxAccV2" in result.stdout
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["dataset"] == "MINE" and record["off_protocol"]
    assert record["overrides"] == {"image_size": "32", "batch_size": "2", "epochs": "1", "pretrained": "false"}
    assert record["config"]["defaults_from"] == "protocol"


def test_unknown_override_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--method", "cam", "--dataset", "synthetic", "--set", "lrr=0.1",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "lrr" in result.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_method_suggests(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--method", "camm", "--dataset", "synthetic"])
    assert result.exit_code == 2 and "unknown method 'camm'; did you mean cam" in result.stderr
