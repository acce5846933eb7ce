"""``wsolbench run`` refuses bad or contradictory input in one line, before any training (issue 13)."""

import shutil

import pytest
from click.testing import CliRunner

from wsolbench.cli import cli
from wsolbench.data.synthetic import SynthParams, generate
from wsolbench.errors import WsolbenchError

TINY = dict(classes=2, train_per_class=3, val_per_class=1, test_per_class=1, image_size=32, seed=5)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("synth") / "synth", SynthParams(variant="boxes", **TINY))
    for part in ("metadata", "dataset"):
        shutil.move(root / part / "SYNTHETIC", root / part / "MINE")
    return root


def _run(root, out, *args, debug=False):
    command = ["--debug"] if debug else []
    command += ["run", "--method", "cam", "--dataset", "MINE", "--root", str(root), "--backbone", "resnet18",
                "--device", "cpu", "--out", str(out), *args]
    return CliRunner().invoke(cli, command)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "1", "--set", "epochs=2"], "--epochs 1 and --set epochs=2 contradict each other; give one"),
    (["--set", "image_size=1"], "--set image_size=1: image_size must be >= 32"),
    (["--no-pretrained", "--set", "batch_size=7"],
     "phase 'train': batch size 7 exceeds the 6 training images; choose --set batch_size=N with N <= 6"),
])
def test_bad_settings_are_refused_before_training(root, tmp_path, args, message):
    result = _run(root, tmp_path / "run", *args)
    assert result.exit_code == 2
    assert result.stderr == f"wsolbench: error: {message}\n"
    assert not (tmp_path / "run").exists()


def test_weights_for_a_model_trained_from_random_weights_are_refused(root, tmp_path):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"garbage")
    result = _run(root, tmp_path / "run", "--weights", str(weights), "--set", "pretrained=false")
    assert result.exit_code == 2
    assert result.stderr == (f"wsolbench: error: --weights {weights}: the protocol trains resnet18 on MINE from "
                             "random weights (pretrained = false); add --set pretrained=true to start from the file\n")
    result = _run(root, tmp_path / "run", "--weights", str(weights), "--no-pretrained")
    assert "--weights and --no-pretrained exclude each other" in result.stderr
    result = _run(root, tmp_path / "run", "--weights", str(weights), "--set", "pretrained=true", "batch_size=2")
    assert result.exit_code == 2 and result.stderr.startswith(f"wsolbench: error: cannot read weights file {weights}")


def test_an_out_folder_that_cannot_be_written_is_refused_before_the_epoch0_evaluation(root, tmp_path):
    (tmp_path / "file").write_text("x")
    result = _run(root, tmp_path / "file" / "run", "--no-pretrained")
    assert result.exit_code == 2
    assert result.stderr == f"wsolbench: error: --out {tmp_path / 'file' / 'run'} cannot be written: Not a directory\n"


def test_debug_shows_the_error_with_its_traceback(root, tmp_path):
    result = _run(root, tmp_path / "run", "--set", "image_size=1", debug=True)
    assert result.exit_code == 1 and isinstance(result.exception, WsolbenchError)
    assert "image_size must be >= 32" in str(result.exception)
