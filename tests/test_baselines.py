"""The reference points: the centre-Gaussian map and the few-shot localiser's targets and loss by hand,
the held-out partition of train-fullsup, evaluation without class scores, and short runs of both whose
records say what they learnt from."""

import math

import pytest
import torch
from wsolbench_baselines.center import CentreGaussian, CentreGaussianMap
from wsolbench_baselines.fewshot import FewShotLocaliser, box_targets, foreground_loss, foreground_targets

from wsolbench.data.datasets import hold_out_per_class, open_dataset
from wsolbench.errors import MethodContractError, WsolbenchError
from wsolbench.method import Method, Phase, StepContext
from wsolbench.run_command import summary_table

# --- the centre map ------------------------------------------------------------------------------------


def test_the_centre_map_by_hand():
    # 4x4, sigma 0.25: pixel (0, 0) is at u = v = 0.5 / 4 - 0.5 = -0.375, so exp(-2 * 0.375**2 / (2 * 0.0625))
    gaussian = CentreGaussianMap(0.25)(torch.zeros(1, 3, 4, 4))[0]
    assert gaussian[0, 0].item() == pytest.approx(math.exp(-2.25))
    # (1, 2): u = 2.5/4 - 0.5 = 0.125, v = 1.5/4 - 0.5 = -0.125
    assert gaussian[1, 2].item() == pytest.approx(math.exp(-(0.125 ** 2 * 2) / 0.125))


def test_the_centre_map_peaks_at_the_centre_and_is_symmetric():
    gaussian = CentreGaussianMap(0.3)(torch.zeros(2, 3, 7, 7))
    assert gaussian.shape == (2, 7, 7) and torch.equal(gaussian[0], gaussian[1])
    assert gaussian[0, 3, 3] == 1.0 and gaussian[0].argmax() == 3 * 7 + 3
    for mirrored in (gaussian[0].flip(0), gaussian[0].flip(1), gaussian[0].T):
        assert torch.allclose(mirrored, gaussian[0])
    # rows away from the centre only decrease
    assert (gaussian[0, 3, :4].diff() > 0).all() and (gaussian[0, 3, 3:].diff() < 0).all()


def test_an_even_map_has_its_four_central_pixels_equal_and_maximal():
    gaussian = CentreGaussianMap(0.25)(torch.zeros(1, 3, 6, 6))[0]
    centre = gaussian[2:4, 2:4]
    assert torch.allclose(centre, centre[0, 0].expand(2, 2)) and gaussian.max() == centre[0, 0]


def test_center_has_nothing_to_train_and_no_class_scores():
    method = CentreGaussian(num_classes=3)
    model = method.build_model()
    assert list(model.parameters()) == [] and method.optimizers(model, None) == {}
    assert method.phases(None) == [Phase("untrained", 0, optimizers=())]
    prediction = method.predict(model, torch.zeros(2, 3, 8, 8), torch.tensor([0, 1]))
    assert prediction.logits is None and prediction.maps.shape == (2, 8, 8)
    with pytest.raises(WsolbenchError, match="sigma must be > 0"):
        CentreGaussian.make_hparams({"sigma": 0})


# --- the few-shot localiser ----------------------------------------------------------------------------


def test_box_targets_fill_the_union_of_inclusive_boxes_clipped_to_the_grid():
    boxes = [torch.tensor([[1, 0, 2, 1], [2, 2, 9, 9]]), torch.zeros(0, 4, dtype=torch.int64)]
    targets = box_targets(boxes, size=4)
    assert targets[0].tolist() == [[0, 1, 1, 0],
                                   [0, 1, 1, 0],
                                   [0, 0, 1, 1],
                                   [0, 0, 1, 1]]
    assert targets[1].sum() == 0


def test_mask_targets_leave_the_ignore_pixels_out():
    mask = torch.tensor([[[1, 0], [255, 1]]], dtype=torch.uint8)
    target, valid = foreground_targets({"mask": mask, "image": torch.zeros(1, 3, 2, 2)})
    assert target.tolist() == [[[1.0, 0.0], [0.0, 1.0]]]
    assert valid.tolist() == [[[True, True], [False, True]]]
    with pytest.raises(WsolbenchError, match="neither boxes nor masks"):
        foreground_targets({"image": torch.zeros(1, 3, 2, 2)})


def test_the_loss_is_the_bce_over_the_valid_pixels_of_the_upsampled_map():
    # a constant logit z upsamples to z everywhere: BCE(z, 1) = log(1 + e^-z), BCE(z, 0) = log(1 + e^z)
    z = 0.5
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    valid = torch.tensor([[[True, True], [False, True]]])
    loss = foreground_loss(torch.full((1, 1, 1), z), target, valid)
    expected = (2 * math.log(1 + math.exp(-z)) + math.log(1 + math.exp(z))) / 3
    assert loss.item() == pytest.approx(expected)


def test_the_classifier_is_frozen_left_out_of_the_groups_and_the_head_is_boosted():
    method = FewShotLocaliser(num_classes=2, classifier_ratio=10.0)
    model = method.build_model()
    groups = method.param_groups(model, 0.1)
    grouped = {id(p) for group in groups for p in group["params"]}
    assert all(id(p) not in grouped and not p.requires_grad for p in model.backbone.classifier.parameters())
    assert groups[1]["lr"] == pytest.approx(1.0)
    assert {id(p) for p in model.head.parameters()} <= {id(p) for p in groups[1]["params"]}
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 2, 2)  # resnet18 at stride 16 on 32 px


def test_a_flipped_image_trains_against_a_flipped_target():
    method = FewShotLocaliser(num_classes=2)
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, images):
            seen["images"] = images
            return images[:, 0, ::8, ::8]  # any (B, h, w) map

    images = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    batch = {"image": images, "boxes": [torch.tensor([[0, 0, 3, 223]])] * 2, "label": torch.tensor([0, 1])}
    generator = torch.Generator().manual_seed(0)
    flips = torch.rand(2, generator=torch.Generator().manual_seed(0)) < 0.5
    context = StepContext(epoch=1, step=0, device=torch.device("cpu"), num_classes=2, generator=generator)
    method.training_step(Recorder(), batch, context)
    for index, flipped in enumerate(flips.tolist()):
        expected = images[index].flip(-1) if flipped else images[index]
        assert torch.equal(seen["images"][index], expected)


# --- the held-out part of train-fullsup ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from wsolbench.data.synthetic import SynthParams, generate

    params = SynthParams(variant="boxes", classes=2, train_per_class=4, val_per_class=3, test_per_class=2,
                         image_size=32, seed=1)
    return generate(tmp_path_factory.mktemp("synth") / "boxes", params)


def _val(root):
    return open_dataset("synthetic", root, "val", train=False, image_size=32)


def test_hold_out_draws_per_class_disjoint_and_reproducible(tiny_root):
    dataset = _val(tiny_root)
    rest, held_out = hold_out_per_class(dataset, 1, seed=3)
    assert sorted(held_out.metadata.class_labels.values()) == [0, 1]
    assert set(rest.image_ids) | set(held_out.image_ids) == set(dataset.image_ids)
    assert not set(rest.image_ids) & set(held_out.image_ids) and len(rest) == 4
    assert hold_out_per_class(dataset, 1, seed=3)[1].image_ids == held_out.image_ids
    assert list(held_out.metadata.boxes) == list(held_out.image_ids)  # metadata restricted to the part


def test_a_class_too_small_to_hold_out_trains_on_all_its_images(tiny_root):
    with pytest.raises(WsolbenchError, match="no class has more than 3 image"):
        hold_out_per_class(_val(tiny_root), 3, seed=0)
    rest, held_out = hold_out_per_class(_val(tiny_root), 2, seed=0)
    assert len(held_out) == 4 and len(rest) == 2
    with pytest.raises(WsolbenchError, match="positive integer"):
        hold_out_per_class(_val(tiny_root), 0, seed=0)


def _config(method, **values):
    from wsolbench.protocol import resolve_run

    settings = {"image_size": "32", "cam_curve_interval": "0.01", "batch_size": "2", **values}
    return resolve_run(method, "synthetic", "resnet18", {k: str(v) for k, v in settings.items()})


def test_fsl_trains_on_train_fullsup_selects_on_its_held_out_images_and_says_so(tiny_root, tmp_path):
    from wsolbench.engine import fit

    record = fit.run(_config("fsl", epochs=2, num_val_sample_per_class=1), out_dir=tmp_path, root=tiny_root,
                     device="cpu", seed=0)
    assert record["training_data"] == {"split": "val", "localization_labels": True, "images": 2,
                                       "selection": "val, held out of training", "selection_images": 2}
    test = record["scores"]["test"]
    assert "top1_cls" not in test and "top1_loc" not in test and 0 <= test["gt_known_loc"] <= 100
    assert [row["epoch"] for row in record["history"]] == [0, 1, 2]
    assert "USES LOCALIZATION LABELS" in summary_table(record)


def test_center_is_evaluated_once_at_epoch_0_without_class_scores(tiny_root, tmp_path):
    from wsolbench.engine import fit

    record = fit.run(_config("center"), out_dir=tmp_path, root=tiny_root, device="cpu", seed=0)
    assert record["selected"] == {"epoch": 0, "criterion": "last"}
    assert record["phases"] == [{"name": "untrained", "epochs": 0, "optimizers": [], "batch_size": 2,
                                 "selectable": True}]
    assert record["training_data"]["localization_labels"] is False and record["training_data"]["images"] == 8
    assert "top1_cls" not in record["scores"]["test"] and "maxboxacc_v2" in record["scores"]["test"]
    assert "| -" in summary_table(record)


def test_a_phase_that_trains_without_an_optimizer_is_a_contract_error(tiny_root, tmp_path):
    from wsolbench.engine.fit import _checked_phases
    from wsolbench.method import TrainingSettings

    class NoOptimizer(Method):
        name = "no-optimizer"

        def phases(self, settings):
            return [Phase("train", 1, optimizers=())]

    config = _config("cam")
    with pytest.raises(MethodContractError, match="trains 1 epochs but steps no optimizer"):
        _checked_phases(NoOptimizer(num_classes=2), TrainingSettings.from_config(config), config)


def test_an_unknown_training_split_is_a_contract_error(tiny_root):
    from wsolbench.engine.fit import _splits

    class Odd(Method):
        name = "odd"
        training_split = "test"

    with pytest.raises(MethodContractError, match="training_split must be"):
        _splits(Odd(num_classes=2), "synthetic", tiny_root, _config("cam"), 0)


def test_the_published_counts_are_the_papers():
    from wsolbench.protocol import resolve_run

    for dataset, count in (("imagenet", 10), ("cub", 5), ("openimages", 5)):
        for backbone in ("vgg16", "resnet50", "inception_v3"):
            config = resolve_run("fsl", dataset, backbone)
            assert config.num_val_sample_per_class == count
            assert config.provenance["num_val_sample_per_class"].startswith("published, Choe et al.")
    assert resolve_run("center", "cub", "vgg16").hparams["sigma"] == 0.25


def test_the_flip_draws_come_from_the_step_generator():
    # the same generator state gives the same flips: what makes a resumed run identical
    method = FewShotLocaliser(num_classes=2)
    batch = {"image": torch.rand(4, 3, 32, 32), "boxes": [torch.tensor([[0, 0, 100, 100]])] * 4}
    model = method.build_model()
    losses = []
    for _ in range(2):
        context = StepContext(epoch=1, step=0, device=torch.device("cpu"), num_classes=2,
                              generator=torch.Generator().manual_seed(5))
        losses.append(method.training_step(model, batch, context).loss.item())
    assert losses[0] == losses[1] and math.isfinite(losses[0])
