"""The minmaxcam plugin: the stage-II mask, CRR and FRR on tiny tensors against values computed by hand, the
class-balanced sampler, the two-stage update (stage II moves only the classifier; frozen_params_step),
the protocol tables, conformance and a short synthetic run."""

import pytest
import torch
from wsolbench_minmaxcam import MinMaxCam
from wsolbench_minmaxcam.regularizers import (
    class_sum_map,
    common_region,
    full_region,
    min_max,
    stage_two_mask,
)
from wsolbench import ClassBalancedBatches

from wsolbench.errors import WsolbenchError
from wsolbench.method import StepContext, TrainingSettings
from wsolbench.testing import check_method
from step_snapshots import states_after_each_step

# --- mask and regularizers --------------------------------------------------------------------------------


def test_the_mask_is_the_gt_class_channel_sum_min_maxed_and_upsampled():
    # 1 image, K=2 channels, 1x3 map; class 1's weights (2, -1): sum = 2*[1,2,3] - [0,1,5] = [2, 3, 1]
    features = torch.tensor([[[[1.0, 2.0, 3.0]], [[0.0, 1.0, 5.0]]]])
    weight = torch.tensor([[9.0, 9.0], [2.0, -1.0]])
    labels = torch.tensor([1])
    assert class_sum_map(features, weight, labels).tolist() == [[[2.0, 3.0, 1.0]]]  # a sum, not the mean
    assert min_max(class_sum_map(features, weight, labels)).flatten().tolist() == pytest.approx([0.5, 1.0, 0.0])
    mask = stage_two_mask(features, weight, labels, (4, 6))
    assert mask.shape == (1, 1, 4, 6)
    # bilinear, align_corners=False: each of the 3 columns doubles; rows are constant
    assert mask[0, 0, 0].tolist() == pytest.approx([0.5, 0.625, 0.875, 0.75, 0.25, 0.0])
    assert torch.equal(mask[0, 0, 0], mask[0, 0, 3])


def test_a_constant_map_gives_a_zero_mask_not_nan():
    assert min_max(torch.full((1, 2, 2), 3.0)).abs().max() == 0


def test_the_mask_is_differentiable_in_the_classifier_weight():
    weight = torch.tensor([[1.0, 0.0], [0.5, 0.5]], requires_grad=True)
    features = torch.rand(2, 2, 3, 3)
    stage_two_mask(features, weight, torch.tensor([0, 1]), (6, 6)).sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_crr_by_hand():
    # class 0: f = (0, 0), (2, 0), (0, 4): pair MSEs (4+0)/2=2, (0+16)/2=8, (4+16)/2=10 -> mean 20/3
    # class 1: f = (1, 1), (1, 3): one pair, (0+4)/2 = 2. CRR = (20/3 + 2) / 2
    masked = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [1.0, 3.0], [0.0, 4.0]])
    labels = torch.tensor([0, 1, 0, 1, 0])
    assert common_region(masked, labels).item() == pytest.approx((20 / 3 + 2) / 2)
    # a class with one image has no pair: left out
    assert common_region(masked[:2], labels[:2]).item() == 0.0


def test_frr_by_hand():
    masked = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
    original = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    # class 0: squares 0, 4, 4, 0 over S x D = 4 -> 2; class 1: 9, 0 over 2 -> 4.5; mean over classes 3.25
    assert full_region(masked, original, labels).item() == pytest.approx(3.25)


# --- the sampler ------------------------------------------------------------------------------------------


def _labels(classes=6, per_class=7):
    return [c for c in range(classes) for _ in range(per_class)][::-1]  # any order of the split


def test_every_batch_is_n_distinct_classes_of_s_distinct_images_class_major():
    labels = _labels()
    sampler = ClassBalancedBatches(labels, 3, 4, torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(sampler) == len(batches) == len(labels) // (3 * 4)  # floor(|train| / (S N)) = 3
    for batch in batches:
        assert len(batch) == 12 and len(set(batch)) == 12
        classes = [labels[i] for i in batch]
        runs = [classes[k:k + 4] for k in range(0, 12, 4)]
        assert all(len(set(run)) == 1 for run in runs)  # class-major
        assert len({run[0] for run in runs}) == 3  # distinct classes


def test_the_sequence_continues_from_a_restored_generator():
    labels = _labels()
    generator = torch.Generator().manual_seed(5)
    sampler = ClassBalancedBatches(labels, 3, 4, generator)
    first = list(sampler)
    state = generator.get_state()
    second = list(sampler)
    assert second != first  # each epoch draws anew
    restored = torch.Generator()
    restored.set_state(state)
    assert list(ClassBalancedBatches(labels, 3, 4, restored)) == second
    sampler.set_epoch(4)
    assert sampler.epoch == 4


def test_small_splits_cap_n_and_s_and_give_one_batch():
    sampler = ClassBalancedBatches([0, 0, 1, 1], 5, 5, torch.Generator().manual_seed(0))
    assert (sampler.classes, sampler.per_class, len(sampler)) == (2, 2, 1)
    assert sorted(next(iter(sampler))) == [0, 1, 2, 3]


def test_under_ddp_each_process_gets_whole_classes():
    labels = _labels()
    sampler = ClassBalancedBatches(labels, 4, 3, torch.Generator().manual_seed(1), world_size=2)
    for batch in sampler:
        for rank in range(2):
            part = [labels[i] for i in batch[rank::2]]
            assert [len(set(part[k:k + 3])) for k in (0, 3)] == [1, 1] and part[0] != part[3]
    with pytest.raises(WsolbenchError, match="3 classes per batch cannot be shared whole by 2 processes"):
        ClassBalancedBatches(labels, 3, 3, torch.Generator(), world_size=2)


# --- the method -------------------------------------------------------------------------------------------


def test_phase_batch_size_is_n_times_s_and_bad_hparams_are_one_line_errors():
    method = MinMaxCam(MinMaxCam.Hparams(classes_per_batch=4, per_class=3), num_classes=4)
    phases = method.phases(TrainingSettings(epochs=7, batch_size=32, lr=0.1))
    assert [(p.name, p.epochs, p.batch_size) for p in phases] == [("train", 7, 12)]
    with pytest.raises(WsolbenchError, match="minmaxcam: frozen_params_step must be skip or decay"):
        MinMaxCam.make_hparams({"frozen_params_step": "always"})
    with pytest.raises(WsolbenchError, match="minmaxcam: per_class must be >= 1"):
        MinMaxCam.make_hparams({"per_class": 0})


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from wsolbench.data.synthetic import SynthParams, generate

    params = SynthParams(variant="boxes", classes=2, train_per_class=4, val_per_class=2, test_per_class=2,
                         image_size=32, seed=1)
    return generate(tmp_path_factory.mktemp("synth") / "boxes", params)


def _stage_snapshots(tiny_root, monkeypatch, **hparams):
    """Model states before, after stage I and after stage II of one step."""
    torch.manual_seed(0)
    method = MinMaxCam(MinMaxCam.Hparams(classes_per_batch=2, per_class=2, **hparams), backbone="resnet18",
                       num_classes=2)
    settings = TrainingSettings(epochs=1, batch_size=4, lr=0.1, weight_decay=0.1)
    model, before, snapshots, result = states_after_each_step(method, settings, tiny_root, monkeypatch)
    assert all(p.requires_grad for p in model.parameters()) and model.training  # restored after stage II
    return before, *snapshots, result


def _moved(a, b):
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_stage_two_changes_only_the_classifier(tiny_root, monkeypatch):
    before, after_one, after_two, result = _stage_snapshots(tiny_root, monkeypatch, frozen_params_step="skip")
    assert "layer1.0.conv1.weight" in _moved(before, after_one) and "bn1.running_mean" in _moved(before, after_one)
    assert _moved(after_one, after_two) == {"fc.weight"}  # no BN statistics, no body weight, no fc bias gradient
    assert set(result.logs) == {"ce", "crr", "frr", "stage_two"}


def test_decay_reproduces_pytorch_1_and_moves_the_frozen_backbone(tiny_root, monkeypatch):
    _, after_one, after_two, _ = _stage_snapshots(tiny_root, monkeypatch, frozen_params_step="decay")
    moved = _moved(after_one, after_two)
    assert {"fc.weight", "fc.bias", "layer1.0.conv1.weight", "conv1.weight"} <= moved
    assert not any("running" in k for k in moved)  # eval mode all the same


def test_vertical_flip_is_drawn_per_image_from_the_steps_generator():
    method = MinMaxCam(num_classes=2)
    images = torch.arange(16.0).reshape(4, 1, 2, 2)
    context = StepContext(0, 0, torch.device("cpu"), 2, torch.Generator().manual_seed(3))
    flipped = method._flip(images, context)
    expected = torch.rand(4, generator=torch.Generator().manual_seed(3)) < 0.5
    for k in range(4):
        assert torch.equal(flipped[k], images[k].flip(1) if expected[k] else images[k])


def test_registered_defaults_conform():
    check_method("minmaxcam")


@pytest.mark.parametrize("hparams", [{"frozen_params_step": "decay", "vertical_flip": False}])
def test_variants_conform(hparams):
    check_method("minmaxcam", hparams=hparams)


def test_vgg16_stage_two_reaches_only_the_classifier():
    torch.manual_seed(0)
    method = MinMaxCam(num_classes=3, backbone="vgg16")
    model = method.build_model()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 0, 2, 2])
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("fc."))
    model.eval()
    loss, crr, frr = method.stage_two_loss(model, images, labels, model.classifier.weight)
    loss.backward()
    assert model.fc.weight.grad.abs().sum() > 0 and model.fc.bias.grad is None
    assert loss.item() == pytest.approx(crr.item() + frr.item())


# --- the protocol tables ----------------------------------------------------------------------------------


def test_published_cub_tables_are_the_official_defaults():
    from wsolbench.protocol import resolve_run

    for backbone, large in (("vgg16", False), ("resnet50", True), ("mobilenet_v2", False)):
        config = resolve_run("minmaxcam", "cub", backbone)
        assert (config.epochs, config.lr, config.lr * config.classifier_ratio) == (200, 1e-4, pytest.approx(1e-3))
        assert (config.lr_decay_points, config.lr_decay_factor, config.weight_decay) == ((50, 100), 0.1, 5e-4)
        assert (config.momentum, config.nesterov, config.large_feature_map) == (0.9, True, large)
        assert dict(config.hparams) == {"classes_per_batch": 5, "per_class": 5, "w_com": 1.0, "w_ori": 1.0,
                                        "frozen_params_step": "decay", "vertical_flip": True}
        assert config.tuned, backbone


def test_untuned_combinations_say_so():
    from wsolbench.protocol import resolve_run

    for dataset, backbone in (("cub", "resnet18"), ("synthetic", "resnet18"), ("imagenet", "vgg16")):
        assert not resolve_run("minmaxcam", dataset, backbone).tuned, (dataset, backbone)
    synthetic = resolve_run("minmaxcam", "synthetic", "resnet18")
    assert (synthetic.hparams["classes_per_batch"], synthetic.hparams["per_class"]) == (5, 4)


# --- a run ------------------------------------------------------------------------------------------------


def test_a_short_synthetic_run_trains_both_stages_and_resumes_exactly(tiny_root, tmp_path, monkeypatch):
    from interruption import run_killed_at

    from wsolbench.engine import fit
    from wsolbench.protocol import resolve_run

    config = resolve_run("minmaxcam", "synthetic", "resnet18", {"epochs": "3", "classes_per_batch": "2",
                                                                "per_class": "2", "image_size": "32",
                                                                "cam_curve_interval": "0.01"})
    run = {"config": config, "root": tiny_root, "device": "cpu", "seed": 3}
    full = fit.run(out_dir=tmp_path / "full", **run)
    assert [h["phase"] for h in full["history"]] == ["train"] * 4
    assert set(full["history"][1]["logs"]) == {"ce", "crr", "frr", "stage_two"}
    run_killed_at(MinMaxCam, 2, monkeypatch, out_dir=tmp_path / "cut", **run)
    resumed = fit.run(out_dir=tmp_path / "cut", resume=True, **run)
    assert resumed["history"] == full["history"] and resumed["scores"] == full["scores"]


def _ddp_run(root, out_dir):
    from wsolbench.engine import fit
    from wsolbench.protocol import resolve_run

    config = resolve_run("minmaxcam", "synthetic", "resnet18", {"epochs": "1", "classes_per_batch": "2",
                                                                "per_class": "2", "image_size": "32",
                                                                "cam_curve_interval": "0.01"})
    return fit.run(config, out_dir=out_dir, root=root, device="cpu", seed=0)


def test_two_gloo_processes_train_whole_classes_each(tiny_root, tmp_path):
    from engine.gloo import on_two_processes

    record = on_two_processes(_ddp_run, tiny_root, tmp_path / "ddp")
    assert record["acceleration"]["world_size"] == 2
    logs = record["history"][1]["logs"]
    assert logs["crr"] > 0 and logs["frr"] > 0  # each process saw a class's two images (one pair)
