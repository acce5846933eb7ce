"""weightmap / weightmap-siamese (Shaharabany & Wolf): S and the losses by hand, the generator's shape, the
frozen f of phase 2, f from a finished run, the protocol tables, conformance and short runs that resume."""

import math

import numpy as np
import pytest
import torch

from wsolbench.errors import WsolbenchError
from wsolbench.method import unwrap
from wsolbench.testing import check_method
from wsolbench_weightmap import SiameseWeightMap, WeightMap
from wsolbench_weightmap.box_mass import box_mass, box_mass_score, box_mass_scores, thresholded
from wsolbench_weightmap.losses import (area, inner_outer, invariance, soft_cross_entropy, triplet,
                                        triplet_partners)

# --- the box-mass score S (Eq. 5-6) ------------------------------------------------------------------------


def test_a_box_holding_all_the_mass_scores_one():
    weights = np.zeros((8, 8))
    weights[2:5, 3:7] = np.arange(12).reshape(3, 4) + 1.0
    assert box_mass(weights, (3, 2, 6, 4)) == 1.0


def test_a_uniform_map_gives_the_box_area_fraction():
    weights = np.full((8, 8), 0.3)
    assert box_mass(weights, (0, 0, 3, 1)) == pytest.approx(8 / 64)  # 4 x 2 pixels, corners inclusive
    assert box_mass(weights, (2, 2, 2, 2)) == pytest.approx(1 / 64)


def test_s_boxes_the_largest_blob_and_ignores_values_below_a_tenth_of_the_max():
    weights = np.full((12, 12), 0.05)  # below tau = 1.0 / 10: set to zero
    weights[1:4, 1:4] = 1.0  # 9 pixels, the largest contour
    weights[8:10, 8:10] = 1.0  # 4 pixels outside its box
    assert thresholded(weights)[0, 0] == 0.0 and thresholded(weights)[1, 1] == 1.0
    assert box_mass_score(weights) == pytest.approx(9 / 13)


def test_s_of_a_single_blob_a_uniform_map_and_an_empty_map():
    one = np.zeros((10, 10))
    one[2:6, 3:8] = 0.8
    assert box_mass_score(one) == pytest.approx(1.0)
    assert box_mass_score(np.full((10, 10), 0.4)) == pytest.approx(1.0)  # the whole image is one box
    assert box_mass_score(np.zeros((10, 10))) == 0.0


def test_s_is_one_value_per_map_of_a_batch():
    maps = torch.zeros(3, 12, 12)
    maps[0, 1:4, 1:4] = 1.0
    maps[0, 8:10, 8:10] = 1.0
    maps[1] = 0.5
    values = box_mass_scores(maps)
    assert values.dtype == torch.float64 and values.tolist() == pytest.approx([9 / 13, 1.0, 0.0])


# --- the losses ----------------------------------------------------------------------------------------------


def test_method_one_discrepancy_by_hand():
    reference = torch.tensor([[0.0, math.log(3.0)]])  # softmax: (1/4, 3/4)
    masked = torch.tensor([[0.0, 0.0]])  # log-softmax: (-ln 2, -ln 2)
    labels = torch.tensor([1])
    assert invariance(reference, masked, labels, "soft").item() == pytest.approx(math.log(2.0))
    masked = torch.tensor([[math.log(3.0), 0.0]])  # p(label 1) = 1/4
    assert invariance(reference, masked, labels, "label").item() == pytest.approx(math.log(4.0))
    # soft target: -(1/4 ln 3/4 + 3/4 ln 1/4)
    assert invariance(reference, masked, labels, "soft").item() == pytest.approx(
        -(0.25 * math.log(0.75) + 0.75 * math.log(0.25)))


def test_the_soft_target_is_detached():
    reference = torch.tensor([[0.0, 1.0]], requires_grad=True)
    masked = torch.tensor([[1.0, 0.0]], requires_grad=True)
    invariance(reference, masked, torch.tensor([0]), "soft").backward()
    assert reference.grad is None and masked.grad.abs().sum() > 0


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot_targets():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    expected = (-math.log(math.exp(-1) / (math.exp(2) + math.exp(-1) + math.exp(0.5)))
                - math.log(math.exp(3) / (2 + math.exp(3)))) / 2
    assert soft_cross_entropy(logits, one_hot).item() == pytest.approx(expected)


def test_the_regulariser_is_the_mean_weight():
    assert area(torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])).item() == pytest.approx(0.625)


def test_triplet_by_hand():
    anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    positive = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    negative = torch.tensor([[0.0, 1.0], [3.0, 4.0]])
    assert triplet(anchor, positive, negative, 1.0).tolist() == pytest.approx([5 - 1 + 1, 0.0])
    assert triplet(anchor, positive, negative, 4.5).tolist() == pytest.approx([8.5, 0.5])


def test_partners_are_another_image_of_the_class_and_an_image_of_another_class():
    labels = torch.tensor([0, 1, 0, 1, 2, 1])
    for seed in range(5):
        positive, negative, valid = triplet_partners(labels, torch.Generator().manual_seed(seed))
        assert valid.tolist() == [True, True, True, True, False, True]  # class 2 has one image
        for anchor in (0, 1, 2, 3, 5):
            assert positive[anchor] != anchor and labels[positive[anchor]] == labels[anchor]
            assert labels[negative[anchor]] != labels[anchor]
    assert positive[0] == 2 and positive[2] == 0  # class 0's only pair


def test_inner_and_outer_losses_by_hand():
    labels = torch.tensor([0, 0, 1, 1])
    reference = torch.zeros(4, 2)
    foreground = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    background = 3 * foreground
    inner, outer = inner_outer(reference, foreground, background, labels, torch.Generator().manual_seed(0), 1.0)
    assert inner.item() == 0.0  # max(d(f(I), f(J^f)) - d(f(I), f(J^b)) + 1, 0) = max(1 - 3 + 1, 0)
    # each anchor: its positive (the other image of its class) at 2, either negative at sqrt(2)
    assert outer.item() == pytest.approx(2 - math.sqrt(2.0) + 1)
    swapped, _ = inner_outer(reference, background, foreground, labels, torch.Generator().manual_seed(0), 1.0)
    assert swapped.item() == pytest.approx(3 - 1 + 1)  # the background is the closer one


# --- the generator ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["resnet18", "vgg16", "mobilenet_v2"])
def test_the_generator_gives_a_sigmoid_map_at_the_input_size(backbone):
    method = WeightMap(backbone=backbone, num_classes=3)
    model = method.build_model().eval()
    with torch.no_grad():
        prediction = method.predict(model, torch.randn(2, 3, 48, 40), torch.tensor([0, 2]))
    assert prediction.maps.shape == (2, 48, 40) and prediction.logits.shape == (2, 3)
    assert 0 < prediction.maps.min() and prediction.maps.max() < 1


def test_the_generator_has_a_skip_from_every_resolution_and_five_up_blocks_on_resnet():
    generator = WeightMap(backbone="resnet18", num_classes=2).build_model().generator
    # the harness's ResNet (wsolevaluation's): layer4 at stride 16 like layer3, so skips at 1/4 and 1/8
    assert generator.skip_names == ["layer1.1", "layer2.1"] and generator.last_stage == "layer4.1"
    assert len(generator.skip_blocks) + len(generator.refine_blocks) == 4  # x16 -> x1 in four up-blocks
    head = {id(p) for p in generator.encoder.classifier.parameters()}
    assert not any(id(p) in head for p in generator.trainable_parameters())


# --- phases, the frozen f, f from a run -----------------------------------------------------------------


def test_phases_name_the_optimizers_and_only_the_generator_phase_is_selectable():
    from wsolbench.method import TrainingSettings

    method = WeightMap(WeightMap.make_hparams({"generator_epochs": 3, "generator_batch_size": 8}), num_classes=2)
    phases = method.phases(TrainingSettings(epochs=2, batch_size=4, lr=0.1))
    assert [(p.name, p.epochs, p.optimizers, p.batch_size, p.selectable) for p in phases] == [
        ("classifier", 2, ("classifier",), None, False), ("generator", 3, ("generator",), 8, True)]


class _Watched(WeightMap):
    """Records f's and g's states when the generator phase starts and after each of its epochs."""

    states: list = []

    def on_phase_start(self, model, phase, context):
        super().on_phase_start(model, phase, context)
        if phase.name == "generator":
            _Watched.states.append(self._snapshot(model))

    def on_train_epoch_end(self, model, epoch):
        if unwrap(model).f_frozen:
            _Watched.states.append(self._snapshot(model))

    @staticmethod
    def _snapshot(model):
        return {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}


def test_f_does_not_change_in_the_generator_phase_and_g_does():
    _Watched.states = []
    check_method(_Watched, steps=2)
    start, end = _Watched.states[0], _Watched.states[-1]
    f_keys = [k for k in start if k.startswith("classifier.")]
    assert any("running_mean" in k for k in f_keys)  # batch-norm statistics are part of what stays
    assert all(torch.equal(start[k], end[k]) for k in f_keys)
    assert not torch.equal(start["generator.head.weight"], end["generator.head.weight"])


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from wsolbench.data.synthetic import SynthParams, generate

    params = SynthParams(variant="boxes", classes=2, train_per_class=4, val_per_class=2, test_per_class=2,
                         image_size=32, seed=1)
    return generate(tmp_path_factory.mktemp("synth") / "boxes", params)


def _config(method, **values):
    from wsolbench.protocol import resolve_run

    settings = {"image_size": "32", "cam_curve_interval": "0.01", "batch_size": "4", **values}
    return resolve_run(method, "synthetic", "resnet18", {k: str(v) for k, v in settings.items()})


@pytest.fixture(scope="module")
def cam_run(tiny_root, tmp_path_factory):
    from wsolbench.engine import fit

    out = tmp_path_factory.mktemp("cam")
    fit.run(_config("cam", epochs=1), out_dir=out, root=tiny_root, device="cpu", seed=0)
    return out


def test_f_comes_from_a_finished_cam_run_and_the_classifier_phase_is_skipped(cam_run, tiny_root, tmp_path):
    from wsolbench.engine import checkpoint, fit
    from wsolbench.method import TrainingSettings

    # the runs take the synthetic dataset's 10 classes from its spec (the tiny folder holds 2 of them)
    method = WeightMap(WeightMap.make_hparams({"classifier_checkpoint": str(cam_run)}), num_classes=10)
    assert [p.name for p in method.phases(TrainingSettings(epochs=5, batch_size=4, lr=0.1))] == ["generator"]
    model = method.build_model()
    tested = torch.load(cam_run / "checkpoints" / "last.pt", weights_only=True)["model"]  # the record: "last"
    assert all(torch.equal(model.classifier.state_dict()[k], v) for k, v in tested.items())

    record = fit.run(_config("weightmap", classifier_checkpoint=cam_run, generator_epochs=1,
                             generator_batch_size=4), out_dir=tmp_path / "wm", root=tiny_root, device="cpu", seed=0)
    assert [h["phase"] for h in record["history"]] == ["generator", "generator"]
    assert record["history"][0]["top1_cls"] == pytest.approx(
        next(h for h in json_history(cam_run) if h["epoch"] == 1)["top1_cls"])  # the same f, the same classes
    again = checkpoint.run_model_weights(tmp_path / "wm")  # a weight-map run's f serves again
    second = WeightMap(WeightMap.make_hparams({"classifier_checkpoint": str(tmp_path / "wm" / "checkpoints" / "last.pt")}),
                       num_classes=10).build_model()
    assert all(torch.equal(second.classifier.state_dict()[k[len("classifier."):]], v)
               for k, v in again.items() if k.startswith("classifier."))


def json_history(run_dir):
    import json

    return json.loads((run_dir / "record.json").read_text())["history"]


def test_a_checkpoint_that_is_not_f_is_a_one_line_error(cam_run, tmp_path):
    siamese = SiameseWeightMap(SiameseWeightMap.make_hparams({"classifier_checkpoint": str(cam_run)}), num_classes=2)
    with pytest.raises(WsolbenchError, match=r"not a resnet18 network with 200 outputs.*size mismatch"):
        siamese.build_model()
    with pytest.raises(WsolbenchError, match="does not exist"):
        WeightMap.make_hparams({"classifier_checkpoint": str(tmp_path / "missing")})
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(WsolbenchError, match="no record.json"):
        WeightMap(WeightMap.make_hparams({"classifier_checkpoint": str(tmp_path / "unfinished")}),
                  num_classes=2).build_model()


@pytest.mark.parametrize("values, message", [
    ({"target": "probabilities"}, "target must be soft or label"),
    ({"lam": -1}, "lam = -1.0 is out of range"),
    ({"generator_epochs": 0}, "generator_epochs = 0 is out of range"),
])
def test_bad_hyperparameters_are_one_line_errors(values, message):
    with pytest.raises(WsolbenchError, match=message):
        WeightMap.make_hparams(values)


def test_siamese_batches_need_two_classes_of_per_class_images():
    from wsolbench.method import TrainingSettings

    with pytest.raises(WsolbenchError, match="per_class >= 2"):
        SiameseWeightMap.make_hparams({"per_class": 1})
    method = SiameseWeightMap(SiameseWeightMap.make_hparams({"per_class": 3}), num_classes=4)
    with pytest.raises(WsolbenchError, match="batches of 5 hold fewer than 2 classes of 3 images"):
        method.phases(TrainingSettings(epochs=1, batch_size=5, lr=0.1))


def test_siamese_scores_are_minus_the_distance_to_each_class_mean():
    from wsolbench_weightmap.network import ClassCentroids

    centroids = ClassCentroids(3, 2)
    centroids.add(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]), torch.tensor([0, 0, 1]))
    scores = centroids.scores(torch.tensor([[1.0, 0.0]]))
    # class 0's mean (1, 0) at 0, class 1's (0, 4) at sqrt(17), class 2 unseen: below both
    assert scores[0, :2].tolist() == pytest.approx([0.0, -math.sqrt(17.0)]) and scores[0, 2] < scores[0, 1]
    centroids.reset()
    assert centroids.counts.sum() == 0


# --- protocol tables, conformance, runs -------------------------------------------------------------------


def test_the_published_tables_hold_the_papers_values():
    from wsolbench.protocol import resolve_run

    for name in ("weightmap", "weightmap-siamese"):
        config = resolve_run(name, "cub", "resnet18")
        assert (config.epochs, config.batch_size, config.lr, config.weight_decay) == (200, 16, 0.001, 1e-4)
        assert (config.lr_decay_frequency, config.lr_decay_factor, config.pretrained) == (80, 0.1, True)
        hp = config.hparams
        assert (hp["lam"], hp["generator_epochs"], hp["generator_batch_size"], hp["generator_lr"]) == (
            1.0, 100, 128, 1e-4)
        # the paper states neither g's momentum nor its weight decay: the configuration is not fully published
        assert config.provenance["method.generator_momentum"].startswith("wsolbench default")
        assert config.provenance["method.generator_weight_decay"].startswith("wsolbench default")
        assert not config.tuned and not resolve_run(name, "synthetic", "resnet18").tuned
    assert resolve_run("weightmap", "cub", "resnet18").hparams["target"] == "soft"
    assert resolve_run("weightmap-siamese", "cub", "resnet18").hparams["embedding_dim"] == 200


@pytest.mark.parametrize("name, hparams", [("weightmap", {}), ("weightmap", {"target": "label"}),
                                           ("weightmap-siamese", {})])
def test_conformance(name, hparams):
    check_method(name, hparams=hparams)


@pytest.mark.parametrize("name, logs", [("weightmap", {"discrepancy", "area"}),
                                        ("weightmap-siamese", {"inner", "outer", "area"})])
def test_a_short_run_records_s_every_epoch_selects_by_it_and_resumes_exactly(name, logs, tiny_root, tmp_path,
                                                                             monkeypatch):
    from interruption import run_killed_at

    from wsolbench.engine import fit
    from wsolbench.plugins import registry

    config = _config(name, epochs=1, generator_epochs=2, generator_batch_size=4, selection="box_mass",
                     eval_checkpoint="best")
    run = {"config": config, "root": tiny_root, "device": "cpu", "seed": 3}
    full = fit.run(out_dir=tmp_path / "full", **run)
    history = full["history"]
    assert [h["phase"] for h in history] == ["classifier", "classifier", "generator", "generator"]
    assert all(0 <= h["criteria"]["box_mass"] <= 1 for h in history)
    assert set(history[2]["logs"]) == logs
    generator_epochs = [h for h in history if h["phase"] == "generator"]
    best = max(generator_epochs, key=lambda h: h["criteria"]["box_mass"])  # ties: the earliest
    assert full["selected"] == {"epoch": best["epoch"],
                                "criterion": "best box_mass on train-fullsup (method criterion, label-free)"}
    run_killed_at(registry("method").get(name), 3, monkeypatch, out_dir=tmp_path / "cut", **run)
    resumed = fit.run(out_dir=tmp_path / "cut", resume=True, **run)
    assert resumed["history"] == full["history"] and resumed["scores"] == full["scores"]
