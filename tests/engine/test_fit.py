"""The training run end to end on a tiny synthetic dataset: record, selection, resume, DDP, AMP path."""

import json

import pytest
import torch

from gloo import on_two_processes
from wsolbench.data.synthetic import SynthParams, generate
from wsolbench.engine import fit
from wsolbench.protocol import resolve_run

TINY = dict(classes=2, train_per_class=4, val_per_class=2, test_per_class=3, image_size=32, seed=3)
OVERRIDES = {"epochs": "2", "batch_size": "4", "image_size": "32", "lr": "0.01"}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "boxes", SynthParams(variant="boxes", **TINY))


def _config(**extra):
    return resolve_run("cam", "synthetic", "resnet18", {**OVERRIDES, **extra})


def test_run_writes_a_complete_record(tiny_root, tmp_path):
    record = fit.run(_config(), out_dir=tmp_path / "run", root=tiny_root, device="cpu", seed=0, argv=["x"])
    on_disk = json.loads((tmp_path / "run" / "record.json").read_text())
    assert on_disk["scores"] == json.loads(json.dumps(record["scores"]))
    assert [h["epoch"] for h in record["history"]] == [0, 1, 2]
    assert record["selected"] == {"epoch": 2, "criterion": "last"}  # the protocol reports the last checkpoint
    test = record["scores"]["test"]
    for key in ("maxboxacc_v2", "maxboxacc_v2_per_iou", "top1_loc", "gt_known_loc", "top1_cls"):
        assert key in test
    assert test["num_images"] == 6 and record["off_protocol"]
    assert record["scores"]["train_fullsup"]["num_images"] == 4


def test_best_checkpoint_is_the_argmax_of_the_selection_metric(tiny_root, tmp_path):
    record = fit.run(_config(eval_checkpoint="best"), out_dir=tmp_path / "run", root=tiny_root, device="cpu")
    values = [h["maxboxacc_v2"] for h in record["history"]]
    assert record["selected"]["epoch"] == values.index(max(values))  # earliest on ties
    assert record["scores"]["train_fullsup"]["maxboxacc_v2"] == max(values)


def test_resume_after_an_interruption_gives_the_same_record(tiny_root, tmp_path, monkeypatch):
    full = fit.run(_config(), out_dir=tmp_path / "full", root=tiny_root, device="cpu", seed=1)

    class Interrupted(Exception):
        pass

    from wsolbench.method import Method

    def crash_at_epoch_two(self, model, epoch):
        if epoch == 2:
            raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(Method, "on_train_epoch_start", crash_at_epoch_two)
        with pytest.raises(Interrupted):
            fit.run(_config(), out_dir=tmp_path / "cut", root=tiny_root, device="cpu", seed=1)
    assert not (tmp_path / "cut" / "record.json").exists()  # nothing half-done is recorded
    resumed = fit.run(_config(), out_dir=tmp_path / "cut", root=tiny_root, device="cpu", seed=1, resume=True)
    assert resumed["scores"] == full["scores"]
    assert resumed["history"] == full["history"]


def _ddp_run(root, out_dir, epochs):
    return fit.run(_config(epochs=str(epochs)), out_dir=out_dir, root=root, device="cpu", seed=0)


@pytest.mark.parametrize("epochs", [0, 1])
def test_two_gloo_processes(tiny_root, tmp_path, epochs):
    distributed = on_two_processes(_ddp_run, tiny_root, tmp_path / "ddp", epochs)
    assert distributed["acceleration"]["world_size"] == 2
    assert distributed["scores"]["test"]["num_images"] == 6  # each image once across the two shards
    if epochs == 0:  # same initial weights: sharded evaluation must give exactly the single-process scores
        single = fit.run(_config(epochs="0"), out_dir=tmp_path / "one", root=tiny_root, device="cpu", seed=0)
        assert distributed["scores"] == single["scores"]


def test_amp_and_channels_last_paths_run_on_cpu(tiny_root, tmp_path):
    record = fit.run(_config(epochs="1"), out_dir=tmp_path / "amp", root=tiny_root, device="cpu",
                     acceleration=fit.Acceleration(amp="on", channels_last="on"))
    assert record["acceleration"]["amp"] == "bfloat16" and record["acceleration"]["channels_last"]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in record["history"][1:])


def test_a_method_batch_sampler_drives_training(tiny_root, tmp_path, monkeypatch):
    from wsolbench.method import Method

    seen = []

    def class_balanced(self, dataset, batch_size, seed):
        by_class = {}
        for index in range(len(dataset)):
            by_class.setdefault(dataset.label(index), []).append(index)
        return [[by_class[0][k], by_class[1][k]] for k in range(2)]  # 2 batches, one image per class

    original_step = Method.training_step

    def recording_step(self, model, batch, context):
        seen.append(sorted(batch["label"].tolist()))
        return original_step(self, model, batch, context)

    monkeypatch.setattr(Method, "batch_sampler", class_balanced)
    monkeypatch.setattr(Method, "training_step", recording_step)
    fit.run(_config(epochs="1"), out_dir=tmp_path / "sampled", root=tiny_root, device="cpu")
    assert seen == [[0, 1], [0, 1]]


def test_tensorboard_logger_writes_every_epoch_and_the_test_scores(tiny_root, tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class FakeWriter:
        def __init__(self, log_dir):
            calls.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    fit.run(_config(epochs="1"), out_dir=tmp_path / "tb", root=tiny_root, device="cpu", loggers=("tensorboard",))
    assert calls[0] == ("dir", str(tmp_path / "tb" / "tensorboard")) and calls[-1] == ("close",)
    assert ("train_fullsup/maxboxacc_v2", 0) in calls and ("train_fullsup/maxboxacc_v2_per_iou/50", 1) in calls
    assert ("train_fullsup/loss", 1) in calls and ("test/top1_loc", 1) in calls


def test_tensorboard_without_the_package_is_a_one_line_error(tiny_root, tmp_path, monkeypatch):
    import sys

    from wsolbench.errors import WsolbenchError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(WsolbenchError, match=r"pip install 'wsolbench\[tensorboard\]'"):
        fit.run(_config(epochs="0"), out_dir=tmp_path / "tb", root=tiny_root, device="cpu", loggers=("tensorboard",))


def _compile_run(tiny_root, tmp_path):
    return fit.run(_config(epochs="1", cam_curve_interval="0.01"), out_dir=tmp_path / "compiled", root=tiny_root,
                   device="cpu", acceleration=fit.Acceleration(compile=True))


def test_compile_runs_end_to_end(tiny_root, tmp_path, monkeypatch):
    """--compile used to stop at the first evaluation ("OptimizedModule is not a CamBackbone"); the eager
    backend goes through the same torch.compile wrapper without the minute of C++ compilation."""
    compiled = []
    real_compile = torch.compile

    def eager_compile(model, **options):
        compiled.append(type(model).__name__)
        return real_compile(model, backend="eager", **options)

    monkeypatch.setattr(torch, "compile", eager_compile)
    record = _compile_run(tiny_root, tmp_path)
    assert compiled == ["ResNetCam"] and record["acceleration"]["compile"] is True
    assert record["scores"]["test"]["num_images"] == 6


@pytest.mark.slow
def test_compile_with_the_default_backend_runs_end_to_end(tiny_root, tmp_path):
    record = _compile_run(tiny_root, tmp_path)
    assert record["acceleration"]["compile"] is True and record["scores"]["test"]["num_images"] == 6


def test_training_log_means_reach_the_history(tiny_root, tmp_path):
    record = fit.run(_config(epochs="1"), out_dir=tmp_path / "logs", root=tiny_root, device="cpu")
    epoch = record["history"][1]
    assert epoch["phase"] == "train" and set(epoch["logs"]) == {"ce"}
    assert epoch["logs"]["ce"] == pytest.approx(epoch["loss"])  # CAM's logged ce is its loss


def test_evaluation_runs_in_full_precision_under_amp(tiny_root, tmp_path, monkeypatch):
    from wsolbench.method import Method

    dtypes = []
    original = Method.predict

    def recording_predict(self, model, images, labels):
        prediction = original(self, model, images, labels)
        dtypes.append(prediction.maps.dtype)
        return prediction

    monkeypatch.setattr(Method, "predict", recording_predict)
    record = fit.run(_config(epochs="1"), out_dir=tmp_path / "amp", root=tiny_root, device="cpu",
                     acceleration=fit.Acceleration(amp="on"))
    assert set(dtypes) == {torch.float32}
    assert record["acceleration"]["amp"] == "bfloat16" and record["acceleration"]["evaluation_precision"] == "float32"


def test_nothing_to_test_is_a_one_line_error_before_any_compute(tiny_root, tmp_path):
    from wsolbench.errors import WsolbenchError

    with pytest.raises(WsolbenchError, match="nothing to test"):
        fit.run(_config(epochs="0", evaluate_epoch0="false"), out_dir=tmp_path / "none", root=tiny_root,
                device="cpu")


def test_batchnorm_becomes_syncbatchnorm_under_ddp_on_gpus_only():
    from wsolbench.engine.distributed import Processes
    from wsolbench.engine.fit import _sync_batchnorm

    def model():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))

    converted, synced = _sync_batchnorm(model(), Processes(0, 2, torch.device("cuda", 0)))
    assert synced and isinstance(converted[1], torch.nn.SyncBatchNorm)
    for processes in (Processes(0, 1, torch.device("cuda", 0)), Processes(0, 2, torch.device("cpu"))):
        kept, synced = _sync_batchnorm(model(), processes)
        assert not synced and type(kept[1]) is torch.nn.BatchNorm2d
    assert _sync_batchnorm(torch.nn.Linear(2, 2), Processes(0, 2, torch.device("cuda", 0)))[1] is False


def test_a_checkpoint_of_the_old_format_is_a_one_line_error(tiny_root, tmp_path):
    from wsolbench.engine import checkpoint
    from wsolbench.errors import WsolbenchError

    checkpoint.save(tmp_path / "old" / "checkpoints" / checkpoint.LAST,
                    {"epoch": 1, "model": {}, "optimizer": {}, "scaler": {}, "history": [], "best": None})
    with pytest.raises(WsolbenchError, match="written by an older wsolbench"):
        fit.run(_config(), out_dir=tmp_path / "old", root=tiny_root, device="cpu", resume=True)


def test_training_keeps_the_last_partial_batch_and_selection_uses_the_reduced_train_fullsup(tiny_root, tmp_path,
                                                                                             monkeypatch):
    from wsolbench.method import Method

    sizes = []
    original = Method.training_step

    def recording_step(self, model, batch, context):
        sizes.append(len(batch["label"]))
        return original(self, model, batch, context)

    monkeypatch.setattr(Method, "training_step", recording_step)
    record = fit.run(_config(epochs="1", batch_size="3", num_val_sample_per_class="1"), out_dir=tmp_path / "run",
                     root=tiny_root, device="cpu")
    assert sizes == [3, 3, 2]  # 8 training images; the reference trains with drop_last=False
    assert record["scores"]["train_fullsup"]["num_images"] == 2  # 1 image of each of the 2 classes
    assert record["scores"]["test"]["num_images"] == 6  # the test split is never reduced
    assert record["config"]["provenance"]["batch_size"] == "--set (off-protocol)"
