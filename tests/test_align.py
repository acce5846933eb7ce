"""The align plugin: every map and loss on tiny tensors against values computed by hand (Kim et al., CVPR 2022,
Eq. 2-9), the two-branch network, the phases, the map variants; conformance and a short synthetic run."""

import math

import pytest
import torch

from interruption import run_killed_at
from wsolbench.errors import WsolbenchError
from wsolbench.method import StepContext, TrainingSettings
from wsolbench.testing import check_method
from wsolbench_align import Align
from wsolbench_align.maps import (attentive_drop_mask, class_similarity, drop_loss, masked_mean, norm_loss, norm_map,
                                  normalize_per_image, region_similarity, similarity_loss, similarity_maps)


def _row(*values):
    """A (1, 1, W) map from values."""
    return torch.tensor([[list(values)]], dtype=torch.float64)


def test_norm_map_and_its_normalisation():
    features = torch.tensor([[[[3.0, 0.0, 1.0]], [[4.0, 0.0, 0.0]]]])  # (1, 2, 1, 3): norms 5, 0, 1
    assert norm_map(features).tolist() == [[[5.0, 0.0, 1.0]]]
    assert normalize_per_image(norm_map(features)).flatten().tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert normalize_per_image(torch.full((1, 2, 2), 3.0)).abs().max() == 0  # constant: 0, not NaN


def test_similarity_maps_are_cosines_with_every_class_weight():
    features = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # locations (1, 0) and (0, 2)
    weight = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-3.0, 0.0]])
    s = similarity_maps(features, weight)
    r = 1 / math.sqrt(2)
    assert s.shape == (1, 3, 1, 2)
    assert s.flatten().tolist() == pytest.approx([1.0, 0.0, r, r, -1.0, 0.0])
    assert class_similarity(features, weight[[1]]).flatten().tolist() == pytest.approx([r, r])


def test_masked_mean_of_an_empty_region_is_zero():
    values = _row(2.0, 4.0, 6.0)
    assert masked_mean(values, _row(1, 0, 1).bool()).item() == pytest.approx(4.0)
    assert masked_mean(values, _row(0, 0, 0).bool()).item() == 0.0


def test_similarity_loss_by_hand():
    s, n_hat = _row(0.9, 0.5, -0.2, 0.1), _row(1.0, 0.7, 0.05, 0.3)
    # foreground 𝓕̂ > 0.6: {0, 1}, mean 0.7; background 𝓕̂ < 0.1: {2}, mean -0.2; 0.3 is in neither
    assert similarity_loss(s, n_hat, 0.6, 0.1).item() == pytest.approx(-0.2 - 0.7)
    # no foreground: that term is 0; background everywhere
    assert similarity_loss(s, _row(0.05, 0.05, 0.05, 0.05), 0.6, 0.1).item() == pytest.approx(0.325)


def test_norm_loss_by_hand_and_its_gradient_reaches_the_norm_map():
    regions, n_hat = _row(0.5, -0.3, 0.0, 0.2), _row(1.0, 0.2, 0.4, 0.6).requires_grad_()
    loss = norm_loss(regions, n_hat)  # fg s > 0: {0, 3} mean 0.8; bg s < 0: {1} 0.2; s == 0: neither
    assert loss.item() == pytest.approx(0.2 - 0.8)
    loss.backward()
    assert n_hat.grad.flatten().tolist() == pytest.approx([-0.5, 1.0, 0.0, -0.5])


def test_any_class_regions_take_the_maximum_over_classes():
    similarity = torch.tensor([[[[-0.5, -0.2]], [[0.3, -0.1]]]])  # (1, 2 classes, 1, 2)
    labels = torch.tensor([0])
    assert region_similarity(similarity, labels, any_class=False).flatten().tolist() == pytest.approx([-0.5, -0.2])
    assert region_similarity(similarity, labels, any_class=True).flatten().tolist() == pytest.approx([0.3, -0.1])


def test_attentive_drop_threshold_is_strict_and_relative_to_each_samples_max():
    activation = torch.tensor([[1.0, 0.8, 0.79, 0.2]]).reshape(1, 1, 1, 4).repeat(2, 3, 1, 1)
    activation[1] *= 10  # the second sample: same shape, ten times larger, same relative threshold
    keep = attentive_drop_mask(activation, gamma=0.8, p=1.0, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (2, 1, 1, 4)
    assert keep[:, 0, 0].tolist() == [[0, 1, 1, 1], [0, 1, 1, 1]]  # 0.8 is not > 0.8 * 1.0
    never = attentive_drop_mask(activation, gamma=0.8, p=0.0, generator=torch.Generator().manual_seed(0))
    assert never.min() == 1


def test_attentive_drop_draws_once_per_location():
    activation = torch.ones(1, 2, 10, 10)  # every location exceeds gamma * max
    keep = attentive_drop_mask(activation, gamma=0.5, p=0.5, generator=torch.Generator().manual_seed(7))
    draws = torch.rand((1, 10, 10), generator=torch.Generator().manual_seed(7))
    assert torch.equal(keep[:, 0], (draws >= 0.5).float())
    assert 0 < keep.mean() < 1  # some locations dropped, some kept


def test_drop_loss_is_the_mean_absolute_difference_with_gradient_into_both_sides():
    features = torch.tensor([1.0, 2.0]).requires_grad_()
    dropped = torch.tensor([0.0, 4.0]).requires_grad_()
    loss = drop_loss(features, dropped)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert features.grad.tolist() == [0.5, -0.5] and dropped.grad.tolist() == [-0.5, 0.5]


# --- the network and the method -----------------------------------------------------------------------------


def _net(p=0.5, backbone="resnet18"):
    return Align(Align.Hparams(p=p), backbone=backbone, num_classes=3).build_model()


def test_branches_share_weights_and_without_dropping_they_agree():
    torch.manual_seed(0)
    net = _net(p=0.0).eval()
    images = torch.randn(2, 3, 32, 32)
    output = net(images, drop_generator=torch.Generator().manual_seed(0))
    assert torch.equal(output.features, output.dropped)
    assert torch.allclose(output.logits, net(images))
    assert output.similarity.shape == (2, 3, *output.features.shape[2:])


def test_the_erasing_point_is_the_backbones_split_tap():
    assert _net().backbone.split_tap == "layer4.0"
    assert _net(backbone="vgg16").backbone.split_tap == "conv4_3"


@pytest.mark.parametrize("variant", ["cam", "norm", "sim"])
def test_map_variants(variant):
    torch.manual_seed(0)
    method = Align(Align.Hparams(map=variant), backbone="resnet18", num_classes=3)
    net = method.build_model().eval()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([2, 0])
    with torch.no_grad():
        maps = method.predict(net, images, labels).maps
        features = net.backbone.features(images)
        weight = net.backbone.fc.weight
        expected = {"cam": torch.einsum("bk,bkhw->bhw", weight[labels], features) / features.shape[1],
                    "norm": features.norm(dim=1),
                    "sim": similarity_maps(features, weight)[torch.arange(2), labels]}[variant]
    assert torch.allclose(maps, expected, atol=1e-6)


def test_warm_stage_trains_ce_and_drop_only_then_the_full_loss():
    torch.manual_seed(0)
    method = Align(Align.Hparams(warm_epochs=2, warm_batch_size=16), backbone="resnet18", num_classes=3)
    phases = method.phases(TrainingSettings(epochs=5, batch_size=32, lr=0.1))
    assert [(p.name, p.epochs, p.batch_size) for p in phases] == [("warm", 2, 16), ("align", 3, None)]
    net = method.build_model()
    batch = {"image": torch.randn(2, 3, 32, 32), "label": torch.tensor([0, 1])}
    context = StepContext(1, 0, torch.device("cpu"), 3, torch.Generator().manual_seed(0), phase="warm")
    warm = method.training_step(net, batch, context)
    assert set(warm.logs) == {"ce", "drop"}
    assert warm.loss.item() == pytest.approx(float(warm.logs["ce"] + 3.0 * warm.logs["drop"]), rel=1e-6)
    context.phase = "align"
    full = method.training_step(net, batch, context)
    logs = full.logs
    expected = logs["ce"] + 3.0 * logs["drop"] + 0.5 * logs["sim"] + 0.15 * logs["norm"]
    assert full.loss.item() == pytest.approx(float(expected), rel=1e-6)


def test_bad_hyperparameters_are_one_line_errors():
    with pytest.raises(WsolbenchError, match="align: norm_region must be gt_class or any_class"):
        Align.make_hparams({"norm_region": "all"})
    with pytest.raises(WsolbenchError, match="align: map must be one of cam, norm, sim"):
        Align.make_hparams({"map": "grad"})
    with pytest.raises(WsolbenchError, match=r"warm_epochs \(20\) exceeds the run's epochs \(10\)"):
        Align(num_classes=2).phases(TrainingSettings(epochs=10, batch_size=4, lr=0.1))


@pytest.mark.parametrize("hparams", [{"map": "sim", "norm_region": "any_class"}, {"map": "norm"}])
def test_variants_conform(hparams):
    check_method("align", hparams=hparams)


# --- the protocol tables --------------------------------------------------------------------------------------


def test_published_configurations_resolve_to_the_official_values():
    from wsolbench.protocol import resolve_run

    cub = resolve_run("align", "cub", "vgg16")
    assert (cub.epochs, cub.batch_size, cub.lr, cub.lr * cub.classifier_ratio) == (70, 64, 0.004, 0.02)
    assert (cub.lr_decay_points, cub.lr_decay_factor, cub.weight_decay) == ((41, 61), 0.2, 5e-4)
    assert dict(cub.hparams) == dict(lambda_sim=0.5, lambda_norm=0.15, lambda_drop=3.0, tau_fg=0.6, tau_bg=0.1,
                                     gamma=0.8, p=0.5, norm_region="any_class", warm_epochs=20, warm_batch_size=32,
                                     map="cam")
    resnet = resolve_run("align", "cub", "resnet50")
    assert resnet.large_feature_map and (resnet.lr, resnet.classifier_ratio, resnet.batch_size) == (0.002, 10.0, 32)
    assert (resnet.hparams["lambda_norm"], resnet.hparams["tau_fg"], resnet.hparams["p"]) == (0.05, 0.4, 0.25)
    imagenet = resolve_run("align", "imagenet", "resnet50")
    assert (imagenet.epochs, imagenet.hparams["warm_epochs"], imagenet.lr_decay_points) == (30, 14, (21, 31))
    assert imagenet.hparams["norm_region"] == "gt_class" and imagenet.hparams["lambda_sim"] == 8.0
    # every value of these is published, the step-decay frequency that decay points replace aside
    assert cub.tuned and resnet.tuned and imagenet.tuned
    assert cub.provenance["lr"].startswith("published, ejkim47/bridging-gap-wsol configs")


def test_untuned_combinations_say_so():
    from wsolbench.protocol import resolve_run

    for dataset, backbone in (("cub", "resnet18"), ("openimages", "vgg16"), ("synthetic", "resnet18")):
        config = resolve_run("align", dataset, backbone)
        assert not config.tuned, (dataset, backbone)
    openimages = resolve_run("align", "openimages", "vgg16")
    assert openimages.provenance["lr"].startswith("wsolbench default, untuned")
    assert openimages.provenance["method.lambda_norm"].startswith("published, Kim et al. CVPR 2022 appendix C.5")


# --- runs -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from wsolbench.data.synthetic import SynthParams, generate

    params = SynthParams(variant="boxes", classes=2, train_per_class=4, val_per_class=2, test_per_class=2,
                         image_size=32, seed=1)
    return generate(tmp_path_factory.mktemp("synth") / "boxes", params)


def _align_config():
    from wsolbench.protocol import resolve_run

    return resolve_run("align", "synthetic", "resnet18", {"epochs": "3", "warm_epochs": "2", "warm_batch_size": "8",
                                                          "batch_size": "4", "image_size": "32",
                                                          "cam_curve_interval": "0.01"})


@pytest.mark.parametrize("killed_at", [2, 3])  # inside the warm stage; in the alignment stage after it
def test_an_interrupted_align_run_resumes_to_the_uninterrupted_record(tiny_root, tmp_path, monkeypatch, killed_at):
    from wsolbench.engine import fit

    run = dict(config=_align_config(), root=tiny_root, device="cpu", seed=3)
    full = fit.run(out_dir=tmp_path / "full", **run)
    assert [h["phase"] for h in full["history"]] == ["warm", "warm", "warm", "align"]
    assert set(full["history"][1]["logs"]) == {"ce", "drop"} and set(full["history"][3]["logs"]) >= {"sim", "norm"}

    run_killed_at(Align, killed_at, monkeypatch, out_dir=tmp_path / "cut", **run)
    resumed = fit.run(out_dir=tmp_path / "cut", resume=True, **run)
    assert resumed["history"] == full["history"] and resumed["scores"] == full["scores"]
