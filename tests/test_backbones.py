"""Backbones: shapes against grids computed by hand, CAM against a naive weighted channel mean, taps,
weight-key mapping, parameter groups, and the offline / version-mismatch errors.

Grids by hand at a 224 input:
- vgg16: pools 1-4 halve 224 -> 112 -> 56 -> 28 -> 14, pool5 removed: 14 (pool4 removed too: 28).
- resnet50/18: stem /4 -> 56, layer2 /2 -> 28, layer3 /2 -> 14, layer4 stride 1: 14 (layer3 stride 1: 28).
- inception_v3: Conv2d_1a s2 p1 -> 112, 2a -> 110, 2b -> 110, pool 3/2 p1 ceil -> 56, 4a -> 54,
  pool 3/2 p1 ceil -> 28, Mixed_5* keep 28, extra pool 3/2 ceil -> 14, Mixed_6a stride 1: 14 (no extra
  pool: 28).
- mobilenet_v2: stem /2 -> 112, 24-ch stage /2 -> 56, 32-ch stage /2 -> 28, 64/160-ch stages stride 1: 28.
The same arithmetic at 64 px gives 4 (large 8) for vgg16, resnets and inception_v3 (64 -> 32 -> 30 -> 30 ->
16 -> 14 -> 8 -> 4), and 8 for mobilenet_v2.
"""

import copy
import importlib.abc
import sys
from urllib.error import URLError

import pytest
import torch
from torch import nn
from torchvision import models

from wsolbench import backbones
from wsolbench._torchvision import torchvision_models
from wsolbench.backbones import ParamSplit, create_backbone, param_groups, wsolbench_register_backbones
from wsolbench.errors import WsolbenchError
from wsolbench.plugins import registry

NAMES = ["vgg16", "resnet50", "resnet18", "inception_v3", "mobilenet_v2"]
CHANNELS = {"vgg16": 1024, "resnet50": 2048, "resnet18": 512, "inception_v3": 1024, "mobilenet_v2": 1280}
GRID_64 = {"vgg16": 4, "resnet50": 4, "resnet18": 4, "inception_v3": 4, "mobilenet_v2": 8}
GRID_64_LARGE = {"vgg16": 8, "resnet50": 8, "resnet18": 8, "inception_v3": 8}
GRID_224 = {"vgg16": 14, "resnet50": 14, "resnet18": 14, "inception_v3": 14, "mobilenet_v2": 28}
GRID_224_LARGE = {"vgg16": 28, "resnet50": 28, "resnet18": 28, "inception_v3": 28}
ADL_TAPS = {"vgg16": ("pool3", "conv4_3", "conv5_3"), "resnet50": ("layer3.0", "layer4.0", "layer4.2"),
            "resnet18": ("layer3.0", "layer4.0", "layer4.1"), "inception_v3": ("Mixed_5d", "Mixed_6e", "head_conv2"),
            "mobilenet_v2": ("body.7", "body.14", "body.18")}
SPLIT_TAPS = {"vgg16": "conv4_3", "resnet50": "layer4.0", "resnet18": "layer4.0", "inception_v3": "Mixed_6e",
              "mobilenet_v2": "body.14"}


@pytest.fixture(scope="module")
def built():
    """One eval-mode, randomly initialised 3-class model per name (tests that modify one copy it)."""
    torch.manual_seed(0)
    return {name: create_backbone(name, 3, pretrained=False).eval() for name in NAMES}


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64)


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def test_registers_the_five_builtin_backbones():
    assert sorted(registry("backbone").names()) == sorted(NAMES)  # through the entry point
    registered = {}
    wsolbench_register_backbones(lambda name, factory: registered.setdefault(name, factory))
    assert sorted(registered) == sorted(NAMES)
    model = registered["resnet18"](5, pretrained=False, weights_path=None, large_feature_map=True)
    assert model.fc.out_features == 5


def test_unknown_name_and_bad_class_count_are_errors():
    with pytest.raises(WsolbenchError, match="unknown backbone 'resnet34'"):
        create_backbone("resnet34", 3, pretrained=False)
    with pytest.raises(WsolbenchError, match="num_classes"):
        create_backbone("resnet18", 0, pretrained=False)
    with pytest.raises(WsolbenchError, match="no large_feature_map variant"):
        create_backbone("mobilenet_v2", 3, pretrained=False, large_feature_map=True)


@pytest.mark.parametrize("name", NAMES)
def test_logits_and_feature_grid_at_64px(built, images, name):
    model = built[name]
    with torch.no_grad():
        feature_map = model.features(images)
        logits = model(images)
    grid = GRID_64[name]
    assert feature_map.shape == (2, CHANNELS[name], grid, grid)
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits, model.logits(feature_map))


@pytest.mark.parametrize("name", ["vgg16", "resnet18", "inception_v3"])  # resnet50 shares resnet18's code
def test_large_feature_map_grid_at_64px(images, name):
    model = create_backbone(name, 3, pretrained=False, large_feature_map=True).eval()
    with torch.no_grad():
        feature_map = model.features(images)
    assert feature_map.shape[1:] == (CHANNELS[name], GRID_64_LARGE[name], GRID_64_LARGE[name])


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "resnet18"])
def test_feature_grid_at_224(built, name):
    with torch.no_grad():
        feature_map = built[name].features(torch.randn(1, 3, 224, 224))
    assert feature_map.shape == (1, CHANNELS[name], GRID_224[name], GRID_224[name])


@pytest.mark.parametrize("name,large", [(n, False) for n in NAMES] + [(n, True) for n in GRID_224_LARGE])
def test_feature_grid_at_224_shape_only(name, large):
    """Every variant at 224, shapes only (meta tensors: no arithmetic)."""
    with torch.device("meta"):
        model = create_backbone(name, 3, pretrained=False, large_feature_map=large).eval()
    feature_map = model.features(torch.empty(1, 3, 224, 224, device="meta"))
    grid = (GRID_224_LARGE if large else GRID_224)[name]
    assert feature_map.shape == (1, CHANNELS[name], grid, grid)


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "resnet18", "mobilenet_v2"])
def test_cam_is_the_fc_weighted_channel_mean(built, name):
    model = built[name]
    torch.manual_seed(2)
    feature_map = torch.randn(2, CHANNELS[name], 3, 4)
    labels = torch.tensor([2, 0])
    weight, bias = model.fc.weight.detach(), model.fc.bias.detach()
    channels = feature_map.shape[1]
    expected = torch.zeros(2, 3, 4)
    for b in range(2):
        for k in range(channels):
            expected[b] += weight[labels[b], k] * feature_map[b, k]
    expected /= channels
    with torch.no_grad():
        cam = model.cam(feature_map, labels)
        logits = model.logits(feature_map)
    torch.testing.assert_close(cam, expected, rtol=1e-4, atol=1e-6)
    assert model.classifier is model.fc
    # GAP then fc: logit of class c = mean over space of (sum_k w[c,k] F[k]) + bias[c]
    for b in range(2):
        for c in range(3):
            by_hand = sum(weight[c, k] * feature_map[b, k].mean() for k in range(channels)) + bias[c]
            torch.testing.assert_close(logits[b, c], by_hand, rtol=1e-4, atol=1e-5)


def test_inception_cam_is_the_label_channel_of_the_class_conv(built):
    model = built["inception_v3"]
    torch.manual_seed(3)
    feature_map = torch.randn(2, 1024, 3, 3)
    labels = torch.tensor([1, 2])
    weight, bias = model.class_conv.weight.detach()[:, :, 0, 0], model.class_conv.bias.detach()
    class_maps = torch.zeros(2, 3, 3, 3)
    for b in range(2):
        for c in range(3):
            class_maps[b, c] = bias[c]
            for k in range(1024):
                class_maps[b, c] += weight[c, k] * feature_map[b, k]
    with torch.no_grad():
        cam = model.cam(feature_map, labels)
        logits = model.logits(feature_map)
    torch.testing.assert_close(cam, class_maps[torch.arange(2), labels], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, class_maps.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)
    assert model.classifier is model.class_conv


@pytest.mark.parametrize("name", NAMES)
def test_taps_compose_into_features(built, images, name):
    model = built[name]
    assert set(ADL_TAPS[name]) <= set(model.taps) and model.adl_taps == ADL_TAPS[name]
    assert model.split_tap == SPLIT_TAPS[name] and model.split_tap in model.taps
    with torch.no_grad():
        expected = model.features(images)
        split = model.forward_to(images, model.split_tap)
        torch.testing.assert_close(model.forward_from(split, model.split_tap), expected)
        torch.testing.assert_close(model.forward_to(images, model.taps[-1]), expected)


@pytest.mark.parametrize("name", NAMES)
def test_a_module_inserted_at_the_split_tap_runs_in_the_forward(built, images, name):
    model = copy.deepcopy(built[name])
    with torch.no_grad():
        before = model.features(images)
        model.insert_after(model.split_tap, Zero())
        after = model.features(images)
    # everything about the input is erased at the split, so both images give the same (new) map
    torch.testing.assert_close(after[0], after[1])
    assert not torch.allclose(after, before)
    assert any(isinstance(m, Zero) for m in model.modules())


@pytest.mark.parametrize("name", ["vgg16", "inception_v3"])
def test_a_module_inserted_at_the_last_tap_rewrites_the_feature_map(built, images, name):
    model = copy.deepcopy(built[name])
    model.insert_after(model.taps[-1], Zero())
    with torch.no_grad():
        assert torch.count_nonzero(model.features(images)) == 0


def test_bad_taps_are_errors(built):
    model = copy.deepcopy(built["resnet18"])
    with pytest.raises(WsolbenchError, match="resnet18 has no tap 'layer4.2'"):
        model.insert_after("layer4.2", Zero())
    model.insert_after("layer3.0", Zero())
    with pytest.raises(WsolbenchError, match="already holds Zero"):
        model.insert_after("layer3.0", nn.Identity())
    with pytest.raises(WsolbenchError, match="no tap"):
        model.forward_to(torch.zeros(1, 3, 32, 32), "conv5_3")


@pytest.mark.parametrize("name", NAMES)
def test_forward_with_features_and_taps_is_one_pass_of_the_same_values(built, images, name):
    model = built[name]
    asked = (model.split_tap, model.taps[0])
    with torch.no_grad():
        plain = model(images)
        expected_features = model.features(images)
        out = model(images, with_features=True, taps=asked)
        features_only = model(images, with_features=True)
    assert isinstance(plain, torch.Tensor)
    torch.testing.assert_close(plain, model.logits(expected_features))
    assert isinstance(out, backbones.BackboneOutput) and list(out.taps) == list(asked)
    torch.testing.assert_close(out.features, expected_features)
    torch.testing.assert_close(out.logits, plain)
    for tap in asked:
        torch.testing.assert_close(out.taps[tap], model.forward_to(images, tap))
    torch.testing.assert_close(features_only.features, expected_features)
    assert features_only.taps == {}


def test_taps_are_read_after_the_inserted_module(built, images):
    model = copy.deepcopy(built["resnet18"])
    model.insert_after("layer3.0", Zero())
    with torch.no_grad():
        out = model(images, taps=["layer3.0", "layer2.1"])
        expected_layer2 = model.forward_to(images, "layer2.1")
    assert torch.count_nonzero(out.taps["layer3.0"]) == 0  # Zero ran before the activation was kept
    torch.testing.assert_close(out.taps["layer2.1"], expected_layer2)
    assert torch.count_nonzero(expected_layer2) > 0
    torch.testing.assert_close(out.features, model.features(images))


def test_asking_for_an_unknown_tap_or_a_bare_string_is_an_error(built, images):
    model = built["resnet18"]
    with pytest.raises(WsolbenchError, match="resnet18 has no tap 'conv5_3'"):
        model(images, taps=("conv5_3",))
    with pytest.raises(WsolbenchError, match="taps must be a sequence of tap names, not the string 'layer4.0'"):
        model(images, taps="layer4.0")


def test_backbone_output_is_a_pytree_so_ddp_and_compile_see_its_tensors():
    from torch.utils import _pytree

    logits, features, tap = torch.zeros(1, 2), torch.ones(1, 3, 2, 2), torch.full((1, 4), 2.0)
    leaves, spec = _pytree.tree_flatten(backbones.BackboneOutput(logits, features, {"t": tap}))
    assert len(leaves) == 3 and {id(leaf) for leaf in leaves} == {id(logits), id(features), id(tap)}
    rebuilt = _pytree.tree_unflatten(leaves, spec)
    assert isinstance(rebuilt, backbones.BackboneOutput) and rebuilt.taps["t"] is tap


def test_features_reach_the_loss_through_ddp_with_the_same_gradients(tmp_path):
    """One gloo process: DDP's only door is forward, so the features come back through it."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(3)
    model = create_backbone("resnet18", 3, pretrained=False).eval()
    reference = copy.deepcopy(model)
    images = torch.randn(2, 3, 32, 32)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(model, find_unused_parameters=True)
        out = wrapped(images, with_features=True, taps=("layer4.0",))
        (out.logits.sum() + out.features.mean() + out.taps["layer4.0"].mean()).backward()
    finally:
        dist.destroy_process_group()
    features = reference.features(images)
    loss = reference.logits(features).sum() + features.mean() + reference.forward_to(images, "layer4.0").mean()
    loss.backward()
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, msg=name)


def test_vgg_large_map_has_no_pool4_tap():
    model = create_backbone("vgg16", 3, pretrained=False, large_feature_map=True)
    assert "pool4" not in model.taps and "conv4_3" in model.taps
    assert "pool4" in create_backbone("vgg16", 3, pretrained=False).taps


# --- weights ---------------------------------------------------------------------------------------


def _random_torchvision_state_dict(builder, **kwargs):
    """The state dict of a torchvision model, filled with random values (built on meta: no init cost).
    VGG's 120M-parameter classifier, which is dropped by name, is shrunk to keep the file small."""
    with torch.device("meta"):
        model = builder(weights=None, **kwargs)
    if builder is models.vgg16:
        model.classifier = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Dropout(), nn.Linear(1, 1), nn.ReLU(),
                                         nn.Dropout(), nn.Linear(1, 1))
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(4)
    state = model.state_dict()
    for value in state.values():
        if value.is_floating_point():
            value.copy_(torch.randn(value.shape, generator=generator))
        else:
            value.zero_()
    return state


# name -> (torchvision builder, kwargs, [(torchvision key, our key)])
MAPPED_KEYS = {
    "vgg16": (models.vgg16, {}, [("features.0.weight", "body.0.weight"), ("features.21.bias", "body.21.bias"),
                                 ("features.28.weight", "body.28.weight")]),
    "resnet50": (models.resnet50, {}, [("conv1.weight", "conv1.weight"), ("bn1.running_var", "bn1.running_var"),
                                       ("layer4.0.downsample.0.weight", "layer4.0.downsample.0.weight"),
                                       ("layer4.2.conv3.weight", "layer4.2.conv3.weight")]),
    "resnet18": (models.resnet18, {}, [("layer4.1.conv2.weight", "layer4.1.conv2.weight")]),
    "inception_v3": (models.inception_v3, {"aux_logits": True, "init_weights": False},
                     [("Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.conv.weight"),
                      ("Mixed_6a.branch3x3dbl_3.conv.weight", "Mixed_6a.branch3x3dbl_3.conv.weight"),
                      ("Mixed_6e.branch_pool.bn.running_mean", "Mixed_6e.branch_pool.bn.running_mean")]),
    "mobilenet_v2": (models.mobilenet_v2, {}, [("features.0.0.weight", "body.0.0.weight"),
                                               ("features.14.conv.1.0.weight", "body.14.conv.1.0.weight"),
                                               ("features.18.1.running_mean", "body.18.1.running_mean")]),
}


@pytest.mark.parametrize("name", NAMES)
def test_weights_path_maps_torchvision_keys(tmp_path, name):
    builder, kwargs, pairs = MAPPED_KEYS[name]
    source = _random_torchvision_state_dict(builder, **kwargs)
    path = tmp_path / f"{name}.pth"
    torch.save(source, path)
    model = create_backbone(name, 3, weights_path=path)
    ours = model.state_dict()
    for theirs, mine in pairs:
        torch.testing.assert_close(ours[mine], source[theirs])
    # the new classifier is not loaded: it keeps its fresh zero bias
    assert torch.count_nonzero(model.classifier.bias) == 0


def test_resnet_keeps_the_imagenet_fc_for_1000_classes(tmp_path):
    source = _random_torchvision_state_dict(models.resnet18)
    torch.save(source, tmp_path / "r18.pth")
    model = create_backbone("resnet18", 1000, weights_path=tmp_path / "r18.pth")
    torch.testing.assert_close(model.fc.weight, source["fc.weight"])


def test_weights_of_another_architecture_are_an_error(tmp_path):
    torch.save(_random_torchvision_state_dict(models.resnet18), tmp_path / "r18.pth")
    with pytest.raises(WsolbenchError) as error:
        create_backbone("vgg16", 3, weights_path=tmp_path / "r18.pth")
    message = str(error.value)
    assert "r18.pth does not fit vgg16" in message and "unexpected keys" in message and "missing keys" in message
    assert "\n" not in message


def test_wrong_shapes_are_an_error(tmp_path):
    source = _random_torchvision_state_dict(models.resnet18)
    source["layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(source, tmp_path / "r18.pth")
    expected = r"wrong shapes layer1\.0\.conv1\.weight \(1, 1, 1, 1\) vs \(64, 64, 3, 3\)"
    with pytest.raises(WsolbenchError, match=expected):
        create_backbone("resnet18", 3, weights_path=tmp_path / "r18.pth")


def test_unreadable_weights_files_are_errors(tmp_path):
    with pytest.raises(WsolbenchError, match="does not exist"):
        create_backbone("resnet18", 3, weights_path=tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(WsolbenchError, match="cannot read weights file"):
        create_backbone("resnet18", 3, weights_path=tmp_path / "junk.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(WsolbenchError, match="is not a state dict"):
        create_backbone("resnet18", 3, weights_path=tmp_path / "list.pth")
    with pytest.raises(WsolbenchError, match="given for a model built from random weights"):
        create_backbone("resnet18", 3, pretrained=False, weights_path=tmp_path / "list.pth")


def test_offline_download_names_both_ways_out(tmp_path, monkeypatch):
    def no_network(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache, so the weights must be downloaded
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WsolbenchError) as error:
        create_backbone("resnet18", 3)
    message = str(error.value)
    assert "--weights PATH" in message and "--no-pretrained" in message and "resnet18" in message
    assert "\n" not in message


def test_torchvision_built_for_another_torch_is_one_clear_line(monkeypatch):
    class BrokenTorchvision(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname == "torchvision":
                raise RuntimeError("operator torchvision::nms does not exist")
            return None

    for module in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(sys, "meta_path", [BrokenTorchvision(), *sys.meta_path])
    with pytest.raises(WsolbenchError, match=r"^torchvision \S+ does not match torch \S+: install both from the same "
                                             r"source \(pip install torch torchvision\)$"):
        torchvision_models()
    with pytest.raises(WsolbenchError, match="does not match torch"):
        backbones.resnet18(3, pretrained=False)


# --- parameter groups ------------------------------------------------------------------------------


def _group_names(model, groups):
    names = {id(p): n for n, p in model.named_parameters()}
    return {group["name"]: ({names[id(p)] for p in group["params"]}, group["lr"]) for group in groups}


@pytest.mark.parametrize("name,boosted", [
    ("vgg16", lambda n: not n.startswith("body.")),  # wsolevaluation: names without "features."
    ("resnet18", lambda n: n.startswith(("layer4.", "fc."))),  # wsolevaluation's inverted ResNet rule
    ("inception_v3", lambda n: not n.startswith(("Mixed", "Conv2d_1", "Conv2d_2", "Conv2d_3", "Conv2d_4"))),
    ("mobilenet_v2", lambda n: n.startswith("fc.")),  # MinMaxCAM
])
def test_reference_param_groups(built, name, boosted):
    model = built[name]
    groups = _group_names(model, param_groups(model, lr=0.01, classifier_ratio=10))
    every = {n for n, _ in model.named_parameters()}
    assert groups["boosted"] == ({n for n in every if boosted(n)}, pytest.approx(0.1))
    assert groups["base"] == ({n for n in every if not boosted(n)}, 0.01)


def test_new_layers_param_groups(built):
    vgg = _group_names(built["vgg16"], param_groups(built["vgg16"], 1.0, 5, split="new_layers"))
    assert vgg["boosted"][0] == {"conv6.weight", "conv6.bias", "fc.weight", "fc.bias"}
    resnet = _group_names(built["resnet50"], param_groups(built["resnet50"], 1.0, 5, split="new_layers"))
    assert resnet["boosted"] == ({"fc.weight", "fc.bias"}, 5.0)
    inception = _group_names(built["inception_v3"], param_groups(built["inception_v3"], 1.0, 5, split="new_layers"))
    assert {n.split(".")[0] for n in inception["boosted"][0]} == {"head_conv1", "head_conv2", "class_conv"}


def test_custom_split_and_empty_groups(built):
    model = built["resnet18"]
    groups = param_groups(model, 0.1, 10, split=ParamSplit(boosted=("*",)))
    assert [g["name"] for g in groups] == ["boosted"] and len(groups[0]["params"]) == len(list(model.parameters()))
    with pytest.raises(WsolbenchError, match="unknown parameter split"):
        param_groups(model, 0.1, 10, split="everything")


def test_new_layers_are_initialised_as_wsolevaluation_does():
    torch.manual_seed(5)
    vgg = create_backbone("vgg16", 3, pretrained=False)
    inception = create_backbone("inception_v3", 3, pretrained=False)
    # He fan_out normal for VGG's conv6: std sqrt(2 / (1024 * 3 * 3)); Xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    assert vgg.conv6.weight.std().item() == pytest.approx((2 / (1024 * 9)) ** 0.5, rel=0.05)
    bound = (6 / (768 * 9 + 1024 * 9)) ** 0.5
    weight = inception.head_conv1[1].weight
    assert 0.95 * bound < weight.abs().max().item() <= bound * (1 + 1e-6)
    assert vgg.fc.weight.std().item() == pytest.approx(0.01, rel=0.1)
    for layer in (vgg.conv6, vgg.fc, inception.head_conv1[1], inception.class_conv):
        assert torch.count_nonzero(layer.bias) == 0
