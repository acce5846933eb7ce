"""The training API end to end on CPU: manual two-update steps, phases with their own optimizers, batch sizes
and samplers, method criteria and method state; each killed inside its last phase and resumed to the
uninterrupted record, and each under two gloo processes."""

import warnings

import pytest
import torch

import training_methods
from gloo import on_two_processes
from interruption import run_killed_at
from step_snapshots import states_after_each_step
from wsolbench.data.synthetic import SynthParams, generate
from wsolbench.engine import fit
from wsolbench.engine.loop import _method_batch_sampler
from wsolbench.method import Method
from wsolbench.optim import Schedule
from wsolbench.protocol import resolve_run

TINY = dict(classes=2, train_per_class=4, val_per_class=2, test_per_class=3, image_size=32, seed=3)
OVERRIDES = {"batch_size": "4", "image_size": "32", "lr": "0.01", "cam_curve_interval": "0.01"}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "boxes", SynthParams(variant="boxes", **TINY))


@pytest.fixture(autouse=True)
def test_methods():
    training_methods.register()
    training_methods.SAMPLED.clear()


def _config(method, **extra):
    return resolve_run(method, "synthetic", "resnet18", {**OVERRIDES, **extra})


# --- schedules --------------------------------------------------------------------------------------------


def test_step_schedule_is_wsolevaluations():
    schedule = Schedule(0.1, frequency=3)  # lr x 0.1 before every epoch e with e % 3 == 0
    assert [schedule.multiplier(e) for e in range(1, 8)] == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_multistep_schedule_follows_pytorch_multisteplr():
    schedule = Schedule(0.2, points=(41, 61))
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    reference = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[41, 61], gamma=0.2)
    for epoch in range(1, 71):
        assert schedule.multiplier(epoch) == pytest.approx(optimizer.param_groups[0]["lr"]), epoch
        optimizer.step()
        reference.step()
    assert schedule.multiplier(41) == 1.0 and schedule.multiplier(42) == pytest.approx(0.2)
    assert schedule.multiplier(62) == pytest.approx(0.04)


def test_protocol_decay_points_drive_the_default_optimizer(tiny_root, tmp_path):
    config = _config("cam", epochs="3", lr_decay_points="1,2", lr_decay_factor="0.5")
    optimizers, seen = [], []
    original_optimizers = Method.optimizers

    def keep(self, model, settings):
        made = original_optimizers(self, model, settings)
        optimizers.append(made["main"].optimizer)
        return made

    def record_lr(self, model, epoch):
        seen.append(round(optimizers[0].param_groups[0]["lr"], 10))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Method, "optimizers", keep)
        patch.setattr(Method, "on_train_epoch_end", record_lr)
        fit.run(config, out_dir=tmp_path / "run", root=tiny_root, device="cpu")
    assert seen == [0.01, 0.005, 0.0025]  # epochs 1, 2, 3: x0.5 after each point


# --- the manual two-update method -------------------------------------------------------------------------


def test_second_update_changes_only_the_classifier(tiny_root, monkeypatch):
    from wsolbench.method import TrainingSettings

    method = training_methods.TwoUpdates(backbone="resnet18", num_classes=2)
    settings = TrainingSettings(epochs=1, batch_size=4, lr=0.1)
    model, before, snapshots, _ = states_after_each_step(method, settings, tiny_root, monkeypatch)
    after_one, after_two = snapshots
    moved_by_one = {k for k in before if not torch.equal(before[k], after_one[k])}
    moved_by_two = {k for k in before if not torch.equal(after_one[k], after_two[k])}
    assert "layer1.0.conv1.weight" in moved_by_one and "bn1.running_mean" in moved_by_one
    assert moved_by_two == {"fc.weight", "fc.bias"}  # eval mode: no BN statistics; frozen: no body weights
    assert all(p.requires_grad for p in model.parameters())  # the step unfroze what it froze


def test_manual_method_record_survives_a_kill_in_its_last_epoch(tiny_root, tmp_path, monkeypatch):
    run = dict(config=_config("two_updates", epochs="2"), root=tiny_root, device="cpu", seed=2)
    full = fit.run(out_dir=tmp_path / "full", **run)
    assert [h["phase"] for h in full["history"]] == ["train"] * 3
    logs = full["history"][1]["logs"]
    assert set(logs) == {"stage_one", "stage_two"} and logs["stage_one"] == pytest.approx(full["history"][1]["loss"])
    run_killed_at(training_methods.TwoUpdates, 2, monkeypatch, out_dir=tmp_path / "cut", **run)
    assert not (tmp_path / "cut" / "record.json").exists()
    resumed = fit.run(out_dir=tmp_path / "cut", resume=True, **run)
    assert resumed["history"] == full["history"] and resumed["scores"] == full["scores"]


# --- the two-phase method ---------------------------------------------------------------------------------


def test_two_phase_run_records_phases_and_selects_by_the_method_criterion(tiny_root, tmp_path):
    config = _config("two_phase", selection="confidence", eval_checkpoint="best")
    record = fit.run(config, out_dir=tmp_path / "run", root=tiny_root, device="cpu")
    history = record["history"]
    assert [(h["epoch"], h["phase"]) for h in history] == [(0, "classifier"), (1, "classifier"), (2, "head"),
                                                           (3, "head")]
    assert [p["name"] for p in record["phases"]] == ["classifier", "head"]
    assert record["phases"][1] == {"name": "head", "epochs": 2, "optimizers": ["head"], "batch_size": 2,
                                   "selectable": True}
    confidences = [h["criteria"]["confidence"] for h in history]
    assert all(0.1 <= c <= 1 for c in confidences), confidences  # mean max-softmax over the 10 classes
    best = max((2, 3), key=lambda e: (confidences[e], -e))  # only the head phase may be selected
    assert record["selected"] == {"epoch": best,
                                  "criterion": "best confidence on train-fullsup (method criterion, label-free)"}
    # phase 1: 8 images in batches of 4 = steps 1, 2; the head phase: 4 class pairs per epoch = steps 3-6, 7-10
    assert [h["logs"]["steps_seen"] for h in history[1:]] == [1.5, 4.5, 8.5]
    # the sampler was told each epoch and drew a new class-balanced order every epoch
    assert [epoch for epoch, _ in training_methods.SAMPLED] == [2] * 4 + [3] * 4
    assert all(len(set(batch)) == 2 for _, batch in training_methods.SAMPLED)


def test_two_phase_record_survives_a_kill_in_its_last_phase(tiny_root, tmp_path, monkeypatch):
    run = dict(config=_config("two_phase"), root=tiny_root, device="cpu", seed=4)
    full = fit.run(out_dir=tmp_path / "full", **run)
    sampled_full = list(training_methods.SAMPLED)
    training_methods.SAMPLED.clear()
    run_killed_at(training_methods.TwoPhase, 3, monkeypatch, out_dir=tmp_path / "cut", **run)
    resumed = fit.run(out_dir=tmp_path / "cut", resume=True, **run)
    assert resumed["history"] == full["history"] and resumed["scores"] == full["scores"]
    # epoch 3's batches after the resume are those of the uninterrupted run, not a replay of epoch 2's
    assert [b for e, b in training_methods.SAMPLED if e == 3] == [b for e, b in sampled_full if e == 3]


def test_resume_at_a_phase_boundary_is_exact(tiny_root, tmp_path, monkeypatch):
    run = dict(config=_config("two_phase"), root=tiny_root, device="cpu", seed=5)
    full = fit.run(out_dir=tmp_path / "full", **run)
    run_killed_at(training_methods.TwoPhase, 2, monkeypatch, out_dir=tmp_path / "cut", **run)
    resumed = fit.run(out_dir=tmp_path / "cut", resume=True, **run)
    assert resumed["history"] == full["history"] and resumed["scores"] == full["scores"]


def test_the_last_phase_must_be_selectable_for_the_last_checkpoint(tiny_root, tmp_path, monkeypatch):
    from wsolbench.errors import WsolbenchError
    from wsolbench.method import Phase

    monkeypatch.setattr(training_methods.TwoPhase, "phases",
                        lambda self, settings: [Phase("classifier", 1), Phase("head", 1, selectable=False)])
    with pytest.raises(WsolbenchError, match="the last phase 'head' is not selectable"):
        fit.run(_config("two_phase"), out_dir=tmp_path / "run", root=tiny_root, device="cpu")


def test_an_unknown_selection_criterion_stops_before_training(tiny_root, tmp_path):
    from wsolbench.errors import WsolbenchError

    with pytest.raises(WsolbenchError, match="selection 'confidance' is neither a protocol metric for boxes nor a "
                                             "criterion of method 'two_phase'; choose from maxboxacc_v2, "
                                             "maxboxacc, confidence"):
        fit.run(_config("two_phase", selection="confidance", eval_checkpoint="best"), out_dir=tmp_path / "run",
                root=tiny_root, device="cpu")
    assert not (tmp_path / "run").exists()


# --- the batch sampler's signature --------------------------------------------------------------------------


def test_a_batch_sampler_of_the_old_form_gets_the_seed_with_a_deprecation_warning():
    class Old(Method):
        name = "old"

        def batch_sampler(self, dataset, batch_size, seed):
            return ("seed", seed)

    class New(Method):
        name = "new"

        def batch_sampler(self, dataset, batch_size, generator):
            return ("generator", generator)

    generator = torch.Generator()
    with pytest.warns(DeprecationWarning, match="batch_sampler.*seed.*deprecated"):
        assert _method_batch_sampler(Old(num_classes=2), None, 4, generator, 7) == ("seed", 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _method_batch_sampler(New(num_classes=2), None, 4, generator, 7) == ("generator", generator)


# --- two gloo processes -------------------------------------------------------------------------------------


def _ddp_run(root, out_dir, method):
    import training_methods as methods

    methods.register()
    config = _config(method, epochs="1") if method == "two_updates" else _config(method)
    return fit.run(config, out_dir=out_dir, root=root, device="cpu", seed=0)


@pytest.mark.parametrize("method", ["two_updates", "two_phase"])
def test_training_api_under_two_gloo_processes(tiny_root, tmp_path, method):
    record = on_two_processes(_ddp_run, tiny_root, tmp_path / "ddp", method)
    assert record["acceleration"]["world_size"] == 2
    assert record["acceleration"]["sync_batchnorm"] is False  # SyncBatchNorm runs on GPUs only
    assert record["scores"]["test"]["num_images"] == 6  # each test image once across the two shards
    assert all(h["loss"] is not None and h["loss"] > 0 for h in record["history"][1:])
    assert (tmp_path / "ddp" / "record.json").is_file()
