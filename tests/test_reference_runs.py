"""Every method of the reference harness and both reference points run end to end from the command line on
a dataset folder wsolbench has never seen (one epoch, 32 px), and their records say what they learnt from."""

import json
import shutil

import pytest
from click.testing import CliRunner

from wsolbench.cli import cli
from wsolbench.data.synthetic import SynthParams, generate

METHODS = ("has", "adl", "cutmix", "acol", "spg", "fsl", "center")


@pytest.fixture(scope="module")
def never_seen_root(tmp_path_factory):
    params = SynthParams(variant="boxes", classes=2, train_per_class=2, val_per_class=2, test_per_class=2,
                         image_size=32, seed=7)
    root = generate(tmp_path_factory.mktemp("synth") / "boxes", params)
    for part in ("metadata", "dataset"):
        shutil.move(root / part / "SYNTHETIC", root / part / "FOLDER_X")
    return root


@pytest.mark.parametrize("method", METHODS)
def test_runs_on_a_never_seen_folder(method, never_seen_root, tmp_path):
    result = CliRunner().invoke(cli, [
        "run", "--method", method, "--dataset", "FOLDER_X", "--root", str(never_seen_root), "--backbone",
        "resnet18", "--no-pretrained", "--device", "cpu", "--epochs", "1", "--set", "image_size=32",
        "batch_size=2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["method"] == method and record["dataset"] == "FOLDER_X"
    training = record["training_data"]
    assert training["localization_labels"] is (method == "fsl")
    assert training["split"] == ("val" if method == "fsl" else "train")
    assert training["images"] == {"fsl": 2, "center": 4}.get(method, 4)
    classified = method not in ("fsl", "center")
    assert ("top1_cls" in record["scores"]["test"]) is classified
    assert [row["epoch"] for row in record["history"]] == ([0] if method == "center" else [0, 1])
