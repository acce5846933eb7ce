"""A run is never lost, never mislabelled, and a stranger's checkpoint never runs code (issue 13).

Resume refuses a checkpoint of another run (naming the first difference of the fingerprint), a run stopped
before its first epoch ended starts again and ends with the uninterrupted record, one writer holds a run
folder, temporaries of killed writers are removed, and a crafted pickle is refused without running.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from interruption import run_killed_at
from wsolbench import run_model_weights
from wsolbench.backbones import create_backbone
from wsolbench.data.synthetic import SynthParams, generate
from wsolbench.engine import checkpoint, fit
from wsolbench.engine.fingerprint import first_difference
from wsolbench.errors import WsolbenchError
from wsolbench.lock import FolderLock
from wsolbench.method import Method
from wsolbench.protocol import resolve_run

TINY = dict(classes=2, train_per_class=4, val_per_class=2, test_per_class=3, image_size=32, seed=3)
OVERRIDES = {"epochs": "2", "batch_size": "4", "image_size": "32", "lr": "0.01"}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "boxes", SynthParams(variant="boxes", **TINY))


@pytest.fixture(scope="module")
def uninterrupted(tiny_root, tmp_path_factory):
    """The record of the run the tests interrupt, run once without interruption (seed 1)."""
    return fit.run(_config(), out_dir=tmp_path_factory.mktemp("full") / "run", root=tiny_root, device="cpu",
                   seed=1)


@pytest.fixture(scope="module")
def cut_after_epoch_one(tiny_root, tmp_path_factory):
    """A run folder holding the checkpoint of epoch 1 of the seed-1 run (it stopped in epoch 2)."""
    out = tmp_path_factory.mktemp("cut") / "run"
    with pytest.MonkeyPatch.context() as patch:
        run_killed_at(Method, 2, patch, config=_config(), out_dir=out, root=tiny_root, device="cpu", seed=1)
    return out


def _config(**extra):
    return resolve_run("cam", "synthetic", "resnet18", {**OVERRIDES, **extra})


def _copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "copy")


@pytest.mark.parametrize("change, difference", [
    (dict(config_extra={"epochs": "3"}), "config.epochs was 2 and is now 3"),
    (dict(seed=5), "seed was 1 and is now 5"),
    (dict(config_extra={"lr": "0.02"}), "config.lr was 0.01 and is now 0.02"),
])
def test_resume_refuses_a_checkpoint_of_another_run(cut_after_epoch_one, tiny_root, tmp_path, change, difference):
    out = _copy(cut_after_epoch_one, tmp_path)
    before = (out / "checkpoints" / checkpoint.LAST).read_bytes()
    with pytest.raises(WsolbenchError) as caught:
        fit.run(_config(**change.get("config_extra", {})), out_dir=out, root=tiny_root, device="cpu",
                seed=change.get("seed", 1), resume=True)
    assert str(caught.value) == (f"--resume: {out / 'checkpoints' / checkpoint.LAST} belongs to another run: "
                                 f"{difference}; resume with the command that started it, or choose another --out")
    assert (out / "checkpoints" / checkpoint.LAST).read_bytes() == before  # untouched
    assert not (out / "record.json").exists()


def test_resume_with_the_same_command_finishes_the_uninterrupted_record(cut_after_epoch_one, uninterrupted,
                                                                       tiny_root, tmp_path):
    out = _copy(cut_after_epoch_one, tmp_path)
    resumed = fit.run(_config(), out_dir=out, root=tiny_root, device="cpu", seed=1, resume=True)
    assert resumed["scores"] == uninterrupted["scores"] and resumed["history"] == uninterrupted["history"]


def test_a_run_stopped_before_its_first_epoch_ended_starts_again(uninterrupted, tiny_root, tmp_path, capfd):
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:  # stopped in epoch 1: the epoch-0 evaluation ran, no last.pt
        run_killed_at(Method, 1, patch, config=_config(), out_dir=out, root=tiny_root, device="cpu", seed=1)
    assert not (out / "checkpoints" / checkpoint.LAST).exists()
    resumed = fit.run(_config(), out_dir=out, root=tiny_root, device="cpu", seed=1, resume=True)
    assert "starting it from the beginning" in capfd.readouterr().err
    assert resumed["scores"] == uninterrupted["scores"] and resumed["history"] == uninterrupted["history"]


def test_resume_refuses_a_finished_run_and_a_folder_where_no_run_started(uninterrupted, tiny_root, tmp_path):
    finished = tmp_path / "finished"
    fit.run(_config(epochs="0"), out_dir=finished, root=tiny_root, device="cpu", seed=1)
    with pytest.raises(WsolbenchError, match="record.json exists: the run is finished; nothing to resume"):
        fit.run(_config(epochs="0"), out_dir=finished, root=tiny_root, device="cpu", seed=5, resume=True)
    assert json.loads((finished / "record.json").read_text())["seed"] == 1  # not relabelled
    with pytest.raises(WsolbenchError, match="no run was started in"):
        fit.run(_config(), out_dir=tmp_path / "typo", root=tiny_root, device="cpu", resume=True)
    assert not (tmp_path / "typo").exists()


def test_first_difference_names_the_first_differing_key():
    saved = {"config.backbone": "resnet18", "seed": 0, "code.wsolbench": "0.1.0"}
    assert first_difference(saved, dict(saved)) is None
    assert first_difference(saved, {**saved, "config.backbone": "vgg16", "seed": 3}) == \
        "config.backbone was 'resnet18' and is now 'vgg16'"
    assert first_difference(saved, {"config.backbone": "resnet18", "seed": 0}) == \
        "code.wsolbench was '0.1.0' and is now (absent)"


def test_the_fingerprint_covers_dataset_metadata(cut_after_epoch_one, tiny_root, tmp_path):
    root = shutil.copytree(tiny_root, tmp_path / "root")
    labels = root / "metadata" / "SYNTHETIC" / "test" / "class_labels.txt"
    lines = labels.read_text().splitlines()
    first_id, label = lines[0].split(",")
    labels.write_text("\n".join([f"{first_id},{1 - int(label)}", *lines[1:]]) + "\n")  # one label relabelled
    out = _copy(cut_after_epoch_one, tmp_path)
    with pytest.raises(WsolbenchError, match="belongs to another run: dataset.test was"):
        fit.run(_config(), out_dir=out, root=root, device="cpu", seed=1, resume=True)


class _Payload:
    """Unpickling this runs ``os.system``: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_never_runs(cut_after_epoch_one, tiny_root, tmp_path):
    out = _copy(cut_after_epoch_one, tmp_path)
    marker = tmp_path / "pwned"
    state = torch.load(out / "checkpoints" / checkpoint.LAST, weights_only=True)
    torch.save({**state, "extra": _Payload(marker)}, out / "checkpoints" / checkpoint.LAST)
    with pytest.raises(WsolbenchError, match="cannot be read as a checkpoint"):
        fit.run(_config(), out_dir=out, root=tiny_root, device="cpu", seed=1, resume=True)
    with pytest.raises(WsolbenchError, match="cannot be read as a checkpoint"):
        run_model_weights(out / "checkpoints" / checkpoint.LAST)
    torch.save({"conv1.weight": _Payload(marker)}, tmp_path / "weights.pth")
    with pytest.raises(WsolbenchError, match="cannot read weights file"):
        create_backbone("resnet18", 2, weights_path=tmp_path / "weights.pth")
    assert not marker.exists()
    torch.load(out / "checkpoints" / checkpoint.LAST, weights_only=False)  # the payload is real: it runs here
    assert marker.exists()


def test_a_second_writer_is_refused_naming_the_holder(tiny_root, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from wsolbench.lock import FolderLock
        with FolderLock({str(out)!r}, "--out"):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WsolbenchError, match=rf"--out {out} is in use by pid {holder.pid} on "):
            fit.run(_config(), out_dir=out, root=tiny_root, device="cpu")
    finally:
        holder.kill()
        holder.wait()
    with FolderLock(out, "--out"):  # the killed holder's lock is gone with it
        pass


def test_a_folder_lock_refuses_a_second_taker_in_one_process_and_cleans_up_after_itself(tmp_path):
    folder = tmp_path / "new"
    with FolderLock(folder):
        with pytest.raises(WsolbenchError, match="is in use by pid"):
            FolderLock(folder).acquire()
    assert not folder.exists()  # it created the folder and nothing else was written there
    (tmp_path / "file").write_text("x")
    with pytest.raises(WsolbenchError, match=r"folder .*file/run cannot be written: Not a directory"):
        FolderLock(tmp_path / "file" / "run").acquire()


def test_temporaries_of_killed_writers_are_removed_when_a_run_takes_its_folder(cut_after_epoch_one, tiny_root,
                                                                              tmp_path):
    from wsolbench.atomic import temporary_path

    out = _copy(cut_after_epoch_one, tmp_path)
    stale = [temporary_path(out / "checkpoints" / checkpoint.LAST), temporary_path(out / "record.json")]
    for path in stale:
        path.write_bytes(b"half written")
    keep = out / "notes.tmp"
    keep.write_text("not ours")
    fit.run(_config(), out_dir=out, root=tiny_root, device="cpu", seed=1, resume=True)
    assert not any(path.exists() for path in stale) and keep.exists()
