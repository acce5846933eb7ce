"""Every registered method passes the same conformance check (generated from the registry, as timm's
suite is); the Method base class's hyperparameter handling and registration; and the check itself
catching broken methods."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fake_plugins import add_entry_points, fake_entry_point, method_plugin
from wsolbench import plugins
from wsolbench.errors import WsolbenchError
from wsolbench.method import Method, Prediction, StepOutput
from wsolbench.registry import DuplicateNameError
from wsolbench.testing import check_method, tiny_dataset


@pytest.mark.parametrize("name", plugins.registry("method").names())
def test_registered_method_trains_and_predicts(name):
    check_method(name)


class TinyNet(nn.Module):
    """A GAP classifier small enough for the checks to run in a blink."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def features(self, images):
        return F.relu(self.conv(images))

    def forward(self, images):
        return self.fc(self.features(images).mean((2, 3)))


class Toy(Method):
    """A method with its own model, parameter groups and prediction."""

    name = "toy"
    paper = "nobody, 2026"

    @dataclass(frozen=True)
    class Hparams:
        p: float = 0.5
        steps: int = 3
        flag: bool = False
        mode: str = "a"

    def build_model(self):
        return TinyNet(self.num_classes)

    def param_groups(self, model, lr):
        return [{"params": list(model.parameters()), "lr": lr}]

    def predict(self, model, images, labels):
        features = model.features(images)
        maps = torch.einsum("bkhw,bk->bhw", features, model.fc.weight[labels])
        return Prediction(model.fc(features.mean((2, 3))), maps)


def test_make_hparams_converts_values_to_the_defaults_types():
    hp = Toy.make_hparams({"p": "0.25", "steps": "7", "flag": "yes"})
    assert hp == Toy.Hparams(p=0.25, steps=7, flag=True, mode="a")
    assert Toy.make_hparams({"steps": 2.0, "flag": 0}) == Toy.Hparams(steps=2, flag=False)
    assert Toy.make_hparams({}) == Toy.Hparams()


@pytest.mark.parametrize("values, message", [
    ({"q": 1}, "method 'toy' has no hyperparameter 'q'; known: p, steps, flag, mode"),
    ({"steps": "many"}, "method 'toy': hyperparameter 'steps' must be int, got 'many'"),
    ({"steps": 2.5}, "method 'toy': hyperparameter 'steps' must be int, got 2.5"),
    ({"steps": True}, "method 'toy': hyperparameter 'steps' must be int, got True"),
    ({"flag": "maybe"}, "method 'toy': hyperparameter 'flag' must be bool, got 'maybe'"),
    ({"p": "half"}, "method 'toy': hyperparameter 'p' must be float, got 'half'"),
])
def test_make_hparams_rejects_unknown_keys_and_bad_values_in_one_line(values, message):
    with pytest.raises(WsolbenchError) as error:
        Toy.make_hparams(values)
    assert str(error.value) == message


def test_register_takes_the_name_from_the_class(monkeypatch):
    add_entry_points(monkeypatch, fake_entry_point("toy", lambda: method_plugin(Toy)))
    loaded = plugins.load_plugins()
    assert loaded.registries["method"].get("toy") is Toy
    assert loaded.registries["method"].source("toy") == "toy-dist (plugin 'toy')"
    assert {"toy", "cam"} <= set(loaded.registries["method"].names())


def test_a_method_name_taken_twice_is_an_error_naming_both_distributions(monkeypatch):
    class OtherCam(Method):
        name = "cam"

    add_entry_points(monkeypatch, fake_entry_point("other", lambda: method_plugin(OtherCam), "other-cam"))
    with pytest.raises(DuplicateNameError, match=r"method 'cam' is registered twice: by wsolbench \(plugin 'cam'\) "
                                                 r"and by other-cam \(plugin 'other'\)"):
        plugins.load_plugins()


def test_check_method_accepts_a_class_and_leaves_the_global_random_state_alone():
    before = torch.get_rng_state()
    check_method(Toy, hparams={"p": 0.1}, steps=1)
    assert torch.equal(torch.get_rng_state(), before)


def test_check_method_draws_batches_from_the_methods_batch_sampler():
    seen = []

    class ClassPairs(Toy):
        def batch_sampler(self, dataset, batch_size, seed):
            return [[0, 2], [1, 3]]  # train ids are listed class by class: 0, 0, 1, 1

        def training_step(self, model, batch, context):
            seen.append(batch["label"].tolist())
            return super().training_step(model, batch, context)

    check_method(ClassPairs, steps=3)
    assert seen == [[0, 1], [0, 1], [0, 1]]


def test_tiny_dataset_is_a_two_class_32_px_dataset_generated_once(tmp_path):
    root = tiny_dataset(tmp_path)
    ids = (root / "metadata/SYNTHETIC/train/image_ids.txt").read_text().split()
    labels = {line.split(",")[1] for line in (root / "metadata/SYNTHETIC/train/class_labels.txt").read_text().split()}
    assert len(ids) == 4 and labels == {"0", "1"}
    from PIL import Image
    assert Image.open(root / "dataset/SYNTHETIC" / ids[0]).size == (32, 32)
    assert tiny_dataset(tmp_path) == root


# --- the check catches broken methods ---------------------------------------------------------------


class NanLoss(Toy):
    def training_step(self, model, batch, context):
        return StepOutput(model(batch["image"]).sum() * float("nan"))


class DetachedLoss(Toy):
    def training_step(self, model, batch, context):
        return StepOutput(F.cross_entropy(model(batch["image"]).detach(), batch["label"]))


class ZeroGradient(Toy):
    def training_step(self, model, batch, context):
        return StepOutput(0.0 * model(batch["image"]).sum())


class FlatMaps(Toy):
    def predict(self, model, images, labels):
        return Prediction(model(images), torch.zeros(len(images), 1, 1))


class WrongLogits(Toy):
    def predict(self, model, images, labels):
        return Prediction(model(images)[:, :1], torch.zeros(len(images), 4, 4))


class ForeignParameters(Toy):
    def param_groups(self, model, lr):
        return [{"params": list(nn.Linear(2, 2).parameters()), "lr": lr}]


class NoBatches(Toy):
    def batch_sampler(self, dataset, batch_size, seed):
        return []


class BadName(Toy):
    name = "Hide Center"


class RequiredHparam(Toy):
    @dataclass
    class Hparams:
        p: float


@pytest.mark.parametrize("method, message", [
    (NanLoss, "training step 1: the loss is nan, not finite"),
    (DetachedLoss, "training step 1: .*the loss does not depend on any trainable parameter"),
    (ZeroGradient, "training step 1: every gradient of the optimized parameters is zero or missing"),
    (FlatMaps, r"predict: maps have shape \(4, 1, 1\), expected \(4, h, w\) with h, w > 1"),
    (WrongLogits, r"predict: logits have shape \(4, 1\), expected \(4, 2\)"),
    (ForeignParameters, "param_groups holds parameters that are not the model's"),
    (NoBatches, "the training loader gives no batch"),
    (BadName, r"name must match \[a-z\]\[a-z0-9_-\]\*"),
    (RequiredHparam, "every field of Hparams needs a default"),
])
def test_check_method_reports_a_broken_contract(method, message):
    with pytest.raises(AssertionError, match=message):
        check_method(method, steps=1)
