"""The CamBackbone contract a backbone plugin implements: checked when a subclass is defined, when a class
is registered, and on what a factory function builds."""

import pytest
import torch
from torch import nn

from fake_plugins import add_entry_points, fake_entry_point
from wsolbench import plugins
from wsolbench.backbones import CamBackbone, ParamSplit, create_backbone
from wsolbench.errors import WsolbenchError
from wsolbench.registry import Registry


class TinyCam(CamBackbone):
    """The smallest complete backbone: two convs, GAP, fc. No adl_taps, no split_tap."""

    new_layers = ("fc",)
    reference_split = ParamSplit(boosted=("fc.*",))

    def __init__(self, num_classes, pretrained=True, weights_path=None, large_feature_map=False):
        super().__init__("tiny", num_classes, large_feature_map)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.fc = nn.Linear(5, num_classes)

    def stages(self):
        return [("conv1", self.conv1), ("conv2", self.conv2)]

    def logits(self, feature_map):
        return self.fc(feature_map.mean(dim=(2, 3)))

    def cam(self, feature_map, labels):
        return torch.einsum("bk,bkhw->bhw", self.fc.weight[labels], feature_map)

    @property
    def classifier(self):
        return self.fc

    def torchvision_key(self, key):
        return None


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_concrete_subclass_without_required_attributes_fails_when_defined():
    with pytest.raises(WsolbenchError) as error:
        class Bare(CamBackbone):  # noqa: F841 - defining it is the test
            stages = TinyCam.stages
            logits = TinyCam.logits
            cam = TinyCam.cam
            classifier = TinyCam.classifier
            torchvision_key = TinyCam.torchvision_key

    assert _one_line(error) == ("backbone class test_a_concrete_subclass_without_required_attributes_fails_when_"
                                "defined.<locals>.Bare does not define new_layers, reference_split (required "
                                "class attributes of wsolbench.backbones.CamBackbone; see its docstring)")


def test_a_wrongly_typed_attribute_fails_when_defined():
    with pytest.raises(WsolbenchError, match=r"reference_split must be a ParamSplit, got \('fc\.\*',\)"):
        class StringSplit(TinyCam):  # noqa: F841
            reference_split = ("fc.*",)
    with pytest.raises(WsolbenchError, match="split_tap must be a tap name, got 3"):
        class NumberTap(TinyCam):  # noqa: F841
            split_tap = 3


def test_an_abstract_intermediate_class_may_leave_attributes_to_its_subclasses():
    class GapBase(CamBackbone):
        def logits(self, feature_map):
            return feature_map.mean(dim=(2, 3))

    assert GapBase.__abstractmethods__ == {"stages", "cam", "classifier", "torchvision_key"}


def test_required_attributes_may_be_properties():
    class Computed(TinyCam):
        @property
        def new_layers(self):
            return ("fc", "conv2")

    assert Computed(3).new_layers_split.is_boosted("conv2.weight")


def test_a_missing_optional_tap_is_a_clear_error_when_asked_for():
    model = TinyCam(3)
    with pytest.raises(WsolbenchError) as error:
        model.adl_taps
    assert _one_line(error) == ("backbone 'tiny' (TinyCam) defines no adl_taps, which ADL-style methods "
                                "(modules inserted at three taps) need: set it on the class")
    with pytest.raises(WsolbenchError, match="'tiny' \\(TinyCam\\) defines no split_tap, which feature-erasing"):
        model.split_tap


def test_optional_taps_may_be_set_on_the_class_or_the_instance():
    class WithTaps(TinyCam):
        split_tap = "conv1"

    class PerInstance(TinyCam):
        def __init__(self, num_classes, **kwargs):
            super().__init__(num_classes, **kwargs)
            self.adl_taps = ("conv1", "conv1", "conv2")

    assert WithTaps(3).split_tap == "conv1"
    assert PerInstance(3).adl_taps == ("conv1", "conv1", "conv2")


class NotABackbone(nn.Module):
    def forward(self, x):
        return x


class HalfDone(CamBackbone):
    new_layers = ("fc",)
    reference_split = ParamSplit(boosted=("fc.*",))

    def stages(self):
        return []

    def logits(self, feature_map):
        return feature_map


@pytest.mark.parametrize("obj,problem", [
    (HalfDone, "backbone class HalfDone does not define cam, classifier, torchvision_key "
               "(abstract methods of wsolbench.backbones.CamBackbone)"),
    (NotABackbone, "class NotABackbone is not a subclass of wsolbench.backbones.CamBackbone"),
    ("resnet18", "'resnet18' is neither a CamBackbone subclass nor a factory function"),
])
def test_registering_a_class_that_breaks_the_contract_fails_at_registration(obj, problem):
    registry = plugins.new_registry("backbone")
    with pytest.raises(WsolbenchError) as error:
        registry.register("mine", obj, "toy-dist (plugin 'toy')")
    assert _one_line(error) == f"toy-dist (plugin 'toy') registered backbone 'mine', which breaks the contract: {problem}"
    assert "mine" not in registry


def test_complete_classes_and_factory_functions_register():
    registry = plugins.new_registry("backbone")
    registry.register("tiny", TinyCam, "x")
    registry.register("tiny-fn", lambda num_classes, **kwargs: TinyCam(num_classes), "x")
    assert registry.names() == ["tiny", "tiny-fn"]
    assert Registry("backbone").check is None and plugins.new_registry("method").check is None


def _backbone_plugin(**factories):
    import types

    module = types.ModuleType("toy_backbones")

    @plugins.hookimpl
    def wsolbench_register_backbones(register):
        for name, factory in factories.items():
            register(name, factory)

    module.wsolbench_register_backbones = wsolbench_register_backbones
    return module


def test_the_plugin_loader_checks_registered_backbones(monkeypatch):
    add_entry_points(monkeypatch, fake_entry_point("toy", lambda: _backbone_plugin(half=HalfDone)))
    with pytest.raises(WsolbenchError) as error:
        plugins.load_plugins()
    assert _one_line(error).startswith("toy-dist (plugin 'toy') registered backbone 'half', which breaks the "
                                       "contract: backbone class HalfDone does not define cam")


class WrongTap(TinyCam):
    split_tap = "conv9"


@pytest.mark.parametrize("factory,problem", [
    (lambda num_classes, **kwargs: nn.Linear(2, num_classes),
     "built Linear, which is not a wsolbench.backbones.CamBackbone"),
    (WrongTap, "built WrongTap: split_tap names no tap: 'conv9' (taps: conv1, conv2)"),
])
def test_create_backbone_checks_what_a_factory_builds(monkeypatch, factory, problem):
    add_entry_points(monkeypatch, fake_entry_point("toy", lambda: _backbone_plugin(mine=factory)))
    with pytest.raises(WsolbenchError) as error:
        create_backbone("mine", 3)
    assert _one_line(error) == f"backbone 'mine' (toy-dist (plugin 'toy')) {problem}"


def test_a_plugin_backbone_builds_and_runs_like_a_builtin(monkeypatch):
    add_entry_points(monkeypatch, fake_entry_point("toy", lambda: _backbone_plugin(tiny=TinyCam)))
    model = create_backbone("tiny", 3).eval()
    images = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = model(images, with_features=True, taps=("conv1",))
        torch.testing.assert_close(out.taps["conv1"], model.conv1(images))
        torch.testing.assert_close(out.features, model.conv2(model.conv1(images)))
        torch.testing.assert_close(out.logits, model.fc(out.features.mean(dim=(2, 3))))
        torch.testing.assert_close(model(images), out.logits)


def test_the_contract_is_re_exported_by_wsolbench_backbones():
    from wsolbench import backbone_contract, backbones

    for name in ("CamBackbone", "BackboneOutput", "ParamSplit", "Stage", "REQUIRED_ATTRIBUTES",
                 "OPTIONAL_ATTRIBUTES", "registration_problem", "built_problem"):
        assert getattr(backbones, name) is getattr(backbone_contract, name)
    assert issubclass(backbones.GapFcBackbone, backbone_contract.CamBackbone)


def test_the_contract_imports_neither_the_plugin_loader_nor_the_registry():
    import subprocess
    import sys

    code = ("import sys, wsolbench.backbone_contract; "
            "print(sorted(m for m in ('wsolbench.plugins', 'wsolbench.registry', 'wsolbench.backbones') "
            "if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout == "[]\n"


def test_importing_the_plugin_loader_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, wsolbench.plugins; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout == "False\n"
