"""acol and spg (wsolevaluation's ACoL and SPG): erasing, maps, pseudo-masks and losses by hand on tiny
tensors, the taps each backbone uses, the reference's learning-rate split, and conformance."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsolbench.errors import WsolbenchError
from wsolbench.testing import check_method
from wsolbench_reference.acol import ACoL, AcolOutput, acol_map, erase_attended
from wsolbench_reference.heads import label_channel, min_max_normalize
from wsolbench_reference.spg import IGNORE, SPG, ignoring_bce, pseudo_mask, spg_layout, spg_targets

X = IGNORE


def build(method_class, backbone, **kwargs):
    method = method_class(backbone=backbone, num_classes=2, pretrained=False, **kwargs)
    return method, method.build_model()


def groups_by_name(model, groups):
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return {group["name"]: {names[id(parameter)] for parameter in group["params"]} for group in groups}


def top_modules(names):
    """``backbone.layer4.0.conv1.weight`` -> ``backbone.layer4``; ``head_a.0.weight`` -> ``head_a``."""
    return {".".join(name.split(".")[:2 if name.startswith("backbone.") else 1]) for name in names}


class FixedMap(nn.Module):
    """A head stub: the same map for every input, recording what it read."""

    def __init__(self, fixed):
        super().__init__()
        self.fixed = nn.Parameter(fixed)

    def forward(self, x):
        self.read = x
        return self.fixed.expand(len(x), -1, -1, -1)


class Recorder(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        self.read = x
        return self.inner(x)


# --- ACoL -----------------------------------------------------------------------------------------------------


def test_attention_is_min_max_normalised_and_erasing_starts_at_the_threshold():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 1] = torch.tensor([[2.0, 9.0], [12.0, 5.0]])  # min 2, span 10: [[0, .7], [1, .3]]
    maps[0, 0] = torch.tensor([[100.0, 0.0], [0.0, 0.0]])  # another class: not read
    attention = min_max_normalize(label_channel(maps, torch.tensor([1])))
    assert attention.flatten().tolist() == pytest.approx([0.0, 0.7, 1.0, 0.3])
    features = torch.arange(1.0, 13.0).reshape(1, 3, 2, 2)
    erased = erase_attended(features, attention, 0.7)  # >= 0.7: (0, 1), exactly at it, and (1, 0)
    keep = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.equal(erased, features * keep)
    assert torch.equal(erase_attended(features, attention, 0.71), features * torch.tensor([[1.0, 1.0], [0.0, 1.0]]))


def test_a_constant_map_normalises_to_zero_and_erases_nothing():
    attention = min_max_normalize(torch.full((1, 3, 3), 4.0))
    assert torch.equal(attention, torch.zeros(1, 3, 3))
    features = torch.ones(1, 2, 3, 3)
    assert torch.equal(erase_attended(features, attention, 0.7), features)


def test_the_map_is_the_max_of_the_normalised_label_channels():
    map_a = torch.zeros(1, 2, 2, 2)
    map_b = torch.zeros(1, 2, 2, 2)
    map_a[0, 0] = torch.tensor([[0.0, 4.0], [2.0, 1.0]])  # normalised: [[0, 1], [.5, .25]]
    map_b[0, 0] = torch.tensor([[3.0, 3.0], [1.0, 5.0]])  # normalised: [[.5, .5], [0, 1]]
    map_a[0, 1] = torch.tensor([[9.0, 0.0], [0.0, 0.0]])  # not the label
    assert acol_map(map_a, map_b, torch.tensor([0])).tolist() == [[[0.5, 1.0], [0.5, 1.0]]]
    # each channel on its own scale: a B ten times larger normalises the same
    assert torch.equal(acol_map(map_a, 10 * map_b, torch.tensor([0])), acol_map(map_a, map_b, torch.tensor([0])))


def test_the_loss_is_ce_of_a_plus_ce_of_b():
    logits_a = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)  # p(label 1) = 3/4
    logits_b = torch.tensor([[0.0, 0.0]], requires_grad=True)  # 1/2
    maps = torch.zeros(1, 2, 2, 2)

    def model(images, labels):
        return AcolOutput(logits_a, logits_b, maps, maps)

    method = ACoL(num_classes=2)
    output = method.training_step(model, {"image": torch.zeros(1, 3, 8, 8), "label": torch.tensor([1])}, None)
    assert output.loss.item() == pytest.approx(math.log(4 / 3) + math.log(2.0))
    assert output.logs["ce_a"].item() == pytest.approx(math.log(4 / 3))
    assert output.logs["ce_b"].item() == pytest.approx(math.log(2.0))
    output.loss.backward()
    assert logits_a.grad.abs().sum() > 0 and logits_b.grad.abs().sum() > 0


def test_head_b_reads_the_trunk_erased_where_a_attends_to_the_true_class():
    torch.manual_seed(0)
    method, net = build(ACoL, "resnet18")
    assert net.trunk_tap == "layer4.1" and net.frozen == ("fc",) and not net.vgg_pooling
    assert all(not p.requires_grad for p in net.backbone.fc.parameters())
    images = torch.randn(2, 3, 32, 32)  # layer4 at stride 16: a 2x2 trunk
    fixed = torch.zeros(1, 2, 2, 2)
    fixed[0, 1] = torch.tensor([[2.0, 9.0], [12.0, 5.0]])  # label 1: [[0, .7], [1, .3]]
    fixed[0, 0] = torch.tensor([[0.0, 1.0], [0.0, 0.0]])  # label 0: [[0, 1], [0, 0]]
    net.head_a = FixedMap(fixed)
    net.head_b = Recorder(net.head_b)
    net.eval()
    with torch.no_grad():
        output = net(images, torch.tensor([1, 0]))
        trunk = net.trunk(images)
    assert trunk.shape[-2:] == output.map_a.shape[-2:] == output.map_b.shape[-2:] == (2, 2)
    keep = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]])[:, None]
    assert torch.equal(net.head_b.read, trunk * keep)
    prediction = method.predict(net, images, torch.tensor([1, 0]))
    assert torch.equal(prediction.logits, output.logits_a)  # Top-1 from A, as the reference
    assert torch.equal(prediction.maps, acol_map(output.map_a, output.map_b, torch.tensor([1, 0])))


def test_the_trunk_is_the_last_pretrained_tap():
    _, net = build(ACoL, "mobilenet_v2")
    assert net.trunk_tap == "body.18" and net.frozen == ("fc",)
    assert net.head_a[0].in_channels == 1280 and net.head_a[-1].out_channels == 2


def test_erase_threshold_out_of_range_is_one_line():
    with pytest.raises(WsolbenchError, match="erase_threshold must lie in"):
        ACoL.make_hparams({"erase_threshold": 1.5})


# --- SPG ------------------------------------------------------------------------------------------------------

PRE_MASK = torch.tensor([[[0.9, 0.8, 0.6],
                          [0.5, 0.3, 0.04],
                          [0.0, 0.02, 0.75]]])


def test_pseudo_mask_foreground_background_and_ignored_by_hand():
    target = pseudo_mask(PRE_MASK, 0.7, 0.05, min_foreground_pixels=3, fallback_ratio=0.7)
    assert target.tolist() == [[[1, 1, X], [X, X, 0], [0, 0, 1]]]
    strictly = pseudo_mask(PRE_MASK, 0.75, 0.04, min_foreground_pixels=1, fallback_ratio=0.7)  # > and <, strict
    assert strictly.tolist() == [[[1, 1, X], [X, X, X], [0, 0, X]]]


def test_too_few_foreground_pixels_fall_back_to_seventy_percent_of_the_max():
    # > 0.85: one pixel, fewer than 2: foreground becomes > 0.7 * 0.9 = 0.63 instead
    assert pseudo_mask(PRE_MASK, 0.85, 0.05, 2, 0.7).tolist() == [[[1, 1, X], [X, X, 0], [0, 0, 1]]]
    assert pseudo_mask(PRE_MASK, 0.85, 0.05, 1, 0.7).tolist() == [[[1, X, X], [X, X, 0], [0, 0, X]]]


def test_the_thirty_pixel_rule_per_image():
    ramp = (torch.arange(64.0) / 64).reshape(8, 8)
    maps = torch.stack([ramp, ramp])
    # > 33.5/64: i >= 34, 30 pixels: kept; > 34/64: i >= 35, 29 pixels: > 0.7 * 63/64 instead, i >= 45
    kept = pseudo_mask(maps[:1], 33.5 / 64, 0.0, 30, 0.7)
    assert (kept == 1).sum().item() == 30 and (kept[0].flatten()[34:] == 1).all()
    fallen = pseudo_mask(maps[:1], 34 / 64, 0.0, 30, 0.7)
    assert (fallen == 1).sum().item() == 19 and (fallen[0].flatten()[45:] == 1).all()
    both = pseudo_mask(torch.stack([ramp, ramp.clamp(max=0.5)]), 0.5, 0.0, 30, 0.7)
    assert (both[0] == 1).sum().item() == 31  # i >= 33
    assert (both[1] == 1).sum().item() == 64 - 23  # none > .5: > .7 * .5 = .35 instead, i >= 23


def test_background_wins_over_a_fallback_foreground():
    tiny = torch.tensor([[[0.04, 0.01], [0.0, 0.0]]])  # fallback > 0.028, but everything is < 0.05
    assert pseudo_mask(tiny, 0.7, 0.05, 30, 0.7).tolist() == [[[0, 0], [0, 0]]]


def test_the_three_targets_chain_from_attention_sigmoid_b2_and_the_fused_map():
    hparams = SPG.make_hparams({"min_foreground_pixels": 1})
    class_map = torch.zeros(1, 2, 2, 2, requires_grad=True)
    with torch.no_grad():
        class_map[0, 1] = torch.tensor([[0.0, 1.0], [2.0, 10.0]])  # attention [[0, .1], [.2, 1]]
    odds = lambda p: math.log(p / (1 - p))  # noqa: E731 - the logit of a probability
    b2 = torch.tensor([[[[0.0, odds(0.75)], [odds(0.01), odds(0.25)]]]], requires_grad=True)  # .5 .75 .01 .25
    b1 = torch.tensor([[[[odds(0.75), odds(0.75)], [odds(0.01), odds(0.9)]]]], requires_grad=True)
    # fused = (sigmoid(B1) + sigmoid(B2)) / 2 = [[.625, .75], [.01, .575]]
    b2_target, b1_target, c_target = spg_targets(class_map, torch.tensor([1]), b1, b2, (2, 2), hparams)
    assert b2_target.tolist() == [[[0, X], [X, 1]]]  # (0.7, 0.01) on the attention
    assert b1_target.tolist() == [[[X, 1], [0, X]]]  # (0.5, 0.05) on sigmoid(B2)
    assert c_target.tolist() == [[[X, 1], [0, X]]]  # (0.7, 0.1) on the fused map
    assert not any(t.requires_grad for t in (b2_target, b1_target, c_target))


def test_the_targets_are_at_the_input_size_from_the_normalised_upsampled_attention():
    class_map = torch.tensor([[[[0.0, 1.0], [1.0, 2.0]]]])
    b2_target, b1_target, c_target = spg_targets(class_map, torch.tensor([0]), torch.zeros(1, 1, 2, 2),
                                                 torch.zeros(1, 1, 2, 2), (6, 6), SPG.Hparams())
    assert b2_target.shape == b1_target.shape == c_target.shape == (1, 6, 6)
    attention = min_max_normalize(F.interpolate(class_map, size=(6, 6), mode="bilinear", align_corners=False)[:, 0])
    assert torch.equal(b2_target, pseudo_mask(attention, 0.7, 0.01, 30, 0.7))


def test_bce_averages_over_the_pixels_not_ignored_pooled_over_the_batch():
    logits = torch.tensor([[[0.0, math.log(3.0)], [100.0, -7.0]]], requires_grad=True)
    target = torch.tensor([[[1.0, 0.0], [X, X]]])
    loss = ignoring_bce(logits, target)  # (-ln 1/2 - ln 1/4) / 2
    assert loss.item() == pytest.approx(1.5 * math.log(2.0))
    loss.backward()
    assert logits.grad[0, 1].tolist() == [0.0, 0.0]
    pooled = ignoring_bce(torch.tensor([[[0.0, 5.0]], [[0.0, 0.0]]]), torch.tensor([[[1.0, X]], [[1.0, 0.0]]]))
    assert pooled.item() == pytest.approx(math.log(2.0))  # three pixels of ln 2
    pooled = ignoring_bce(torch.tensor([[[0.0]], [[math.log(3.0)]]]).expand(2, 1, 3),
                          torch.tensor([[[1.0, X, X]], [[0.0, 0.0, 0.0]]]))
    assert pooled.item() == pytest.approx((math.log(2.0) + 3 * math.log(4.0)) / 4)  # not the per-image mean
    assert ignoring_bce(torch.zeros(1, 2, 2), torch.full((1, 2, 2), X)).item() == 0.0


def test_the_spg_loss_is_ce_plus_the_three_bce_terms():
    torch.manual_seed(0)
    method, net = build(SPG, "resnet18")
    batch = {"image": torch.randn(2, 3, 32, 32), "label": torch.tensor([0, 1])}
    output = method.training_step(net, batch, None)
    assert set(output.logs) == {"ce", "bce_b2", "bce_b1", "bce_c"}
    assert output.loss.item() == pytest.approx(sum(value.item() for value in output.logs.values()))
    net.eval()
    with torch.no_grad():
        prediction = method.predict(net, batch["image"], batch["label"])
        full = net(batch["image"])
    assert torch.allclose(prediction.logits, full.logits)
    assert torch.allclose(prediction.maps, label_channel(full.class_map, batch["label"]))


def test_layouts_of_resnet18_and_mobilenet_v2():
    _, net = build(SPG, "resnet18")
    layout = net.layout
    assert (layout.b1_tap, layout.b2_tap, layout.class_tap) == ("layer3.0", "layer3.1", "layer4.1")
    assert net.b1_entry[0].weight.shape == (256, 256, 3, 3) and net.c_branch[0][0].in_channels == 512
    assert net.frozen == ("fc",) and len(net.class_hidden) == 0
    _, net = build(SPG, "mobilenet_v2")
    assert (net.layout.b1_tap, net.layout.b2_tap, net.layout.class_tap) == ("body.7", "body.13", "body.18")
    assert net.b1_entry[0].in_channels == 64 and net.b2_entry[0].in_channels == 96
    assert net.class_conv.in_channels == 1280


def test_a_backbone_without_a_layout_is_one_line():
    _, net = build(SPG, "resnet18")
    net.backbone.arch = "toy"
    with pytest.raises(WsolbenchError, match="spg has no layout for backbone 'toy'") as error:
        spg_layout(net.backbone)
    assert "\n" not in str(error.value)


def test_threshold_pairs_are_checked():
    with pytest.raises(WsolbenchError, match="c_target_low <= c_target_high"):
        SPG.make_hparams({"c_target_low": 0.8})


# --- the reference's learning-rate split ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50_acol():
    return build(ACoL, "resnet50")


@pytest.fixture(scope="module")
def resnet50_spg():
    return build(SPG, "resnet50")


@pytest.fixture(scope="module")
def vgg16_acol():
    return build(ACoL, "vgg16")


@pytest.fixture(scope="module")
def vgg16_spg():
    return build(SPG, "vgg16")


def test_acol_resnet50_boosts_layer4_only_and_its_heads_train_at_the_base_lr(resnet50_acol):
    method, net = resnet50_acol
    groups = method.param_groups(net, 0.01)
    assert [(g["name"], g["lr"]) for g in groups] == [("base", 0.01), ("boosted", pytest.approx(0.1))]
    names = groups_by_name(net, groups)
    assert top_modules(names["boosted"]) == {"backbone.layer4"}
    assert top_modules(names["base"]) == {"backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2",
                                          "backbone.layer3", "head_a", "head_b"}
    assert net.trunk_tap == "layer4.2" and net.head_a[0].weight.shape == (1024, 2048, 3, 3)
    assert net.head_a[2].weight.shape == (1024, 1024, 3, 3) and net.head_a[4].weight.shape == (2, 1024, 1, 1)


def test_acol_vgg16_boosts_the_heads_and_reads_pooled_conv5(vgg16_acol):
    method, net = vgg16_acol
    names = groups_by_name(net, method.param_groups(net, 0.01))
    assert top_modules(names["boosted"]) == {"head_a", "head_b"}
    assert top_modules(names["base"]) == {"backbone.body"}
    assert net.frozen == ("conv6", "fc") and net.trunk_tap == "conv5_3" and net.vgg_pooling
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        conv5 = net.backbone.forward_to(images, "conv5_3")
        pooled = F.avg_pool2d(F.max_pool2d(conv5, 3, 1, 1), 3, 1, 1)
        assert pooled.shape == (1, 512, 2, 2) and torch.equal(net.trunk(images), pooled)


def test_spg_resnet50_boosts_layer4_only(resnet50_spg):
    method, net = resnet50_spg
    names = groups_by_name(net, method.param_groups(net, 0.01))
    assert top_modules(names["boosted"]) == {"backbone.layer4"}
    assert {"class_conv", "b1_entry", "b2_entry", "b_shared", "c_branch"} <= top_modules(names["base"])
    assert net.b1_entry[0].weight.shape == net.b2_entry[0].weight.shape == (1024, 1024, 3, 3)
    assert net.b_shared[1].weight.shape == (1, 1024, 1, 1) and net.c_branch[0][0].weight.shape == (512, 2048, 3, 3)
    assert net.class_conv.weight.shape == (2, 2048, 1, 1) and net.frozen == ("fc",)


def test_spg_vgg16_boosts_the_pretrained_conv4_and_conv5_and_every_new_layer(vgg16_spg):
    method, net = vgg16_spg
    names = groups_by_name(net, method.param_groups(net, 0.01))
    body_base = {int(name.split(".")[2]) for name in names["base"]}
    body_boosted = {int(name.split(".")[2]) for name in names["boosted"] if name.startswith("backbone.")}
    assert body_base == {0, 2, 5, 7, 10, 12, 14}  # conv1_1 .. conv3_3
    assert body_boosted == {17, 19, 21, 24, 26, 28}  # conv4_1 .. conv5_3, the reference's SPG_A_1 and SPG_A_2
    assert top_modules(names["boosted"]) - {"backbone.body"} == {"b1_entry", "b2_entry", "b_shared", "class_hidden",
                                                                 "class_conv", "c_branch"}
    assert (net.layout.b1_tap, net.layout.b2_tap, net.layout.class_tap) == ("pool4", "conv5_3", "conv5_3")
    assert [conv[0].weight.shape for conv in net.class_hidden] == [(512, 512, 3, 3)] * 2
    assert net.frozen == ("conv6", "fc")


# --- conformance ------------------------------------------------------------------------------------------------


def test_acol_conforms():
    check_method(ACoL)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
def test_spg_conforms(backbone):
    check_method(SPG, backbone=backbone)
