"""``spg``: Self-produced Guidance (Zhang et al., ECCV 2018) as clovaai/wsolevaluation runs it.

Re-derived from the notes on wsolevaluation (../shared/research/wsolevaluation.md §5-6) and checked against
its wsol/method/spg.py, wsol/vgg.py, wsol/resnet.py, wsol/inception.py and main.py (no code copied).

Network (:class:`SpgNet`), read off the backbone at the taps of its :class:`SpgLayout`:

- the class head: SPG_A_3 (``class_hidden``: new 3x3 convs + ReLU on the activation at ``class_tap``) and
  SPG_A_4 (``class_conv``: 1x1 -> C); logits = GAP of the class map, localisation map = its channel y;
- B1 and B2: each its own 3x3 conv + ReLU (``b1_entry`` on ``b1_tap``, ``b2_entry`` on ``b2_tap``, SPG_B_1a
  and SPG_B_2a) and then the SHARED head ``b_shared`` (3x3 conv + ReLU, 1x1 -> 1: SPG_B_shared);
- C (``c_branch``, SPG_C): 3x3 conv -> 512 + ReLU, 1x1 -> 1, on the class head's hidden features.

===============  ========================  ===========  =================================================
backbone         b1_tap / b2_tap           B width      class head (class_tap)
===============  ========================  ===========  =================================================
vgg16            pool4 (large: conv4_3)    512          conv5_3; SPG_A_3 = 2 x (3x3 512->512 + ReLU)
                 / conv5_3
resnet50         layer3.0 / layer3.5       1024         layer4.2; no SPG_A_3 (1x1 on layer4's output)
inception_v3     maxpool3 (large:          512          the backbone's own head: its head_conv1/2 (dropout,
                 Mixed_5d) / Mixed_6d                   3x3 768->1024, dropout, 3x3 1024->1024) are the
                                                        reference's SPG_A3_1b/2b, then dropout 0.5 and its
                                                        class_conv (SPG_A4); C reads the dropped features
resnet18         layer3.0 / layer3.1       256          layer4.1; no SPG_A_3 (wsolbench's, as ResNet50)
mobilenet_v2     body.7 / body.13          96           body.18; no SPG_A_3 (wsolbench's, as ResNet50)
===============  ========================  ===========  =================================================

The first three are the reference's (its VGG puts conv4 and conv5 in SPG_A_1 and SPG_A_2, ResNet50 splits
layer3 into block 0 and blocks 1-5); resnet18 and mobilenet_v2 are wsolbench's analogues: B1 after the first
block of the stage before the last (layer3.0; mobilenet_v2's body.7, which starts the 64-channel stage, as
its ``adl_taps`` pair it with layer3.0), B2 at that stage's end (layer3.1; body.13, the last block before
body.14 ~ layer4.0), B width the channels there, as in ResNet50. A backbone without a layout is a one-line
error. The backbone's unused ``new_layers`` (VGG16 conv6 + fc, ResNet and MobileNetV2 fc) are frozen
(``requires_grad`` False) and in no parameter group, so DistributedDataParallel sees no unused parameter;
new layers are Xavier-uniform, biases 0, as in the reference.

Training, with labels y, images of H x W, every map upsampled bilinearly (``align_corners`` False) to H x W:
loss = CE + BCE(B2, T2) + BCE(B1, T1) + BCE(C, Tc), each logged, with the targets (detached)

- T2 from the class attention: the class map's channel y, upsampled, min-max normalised per image
  (``b2_target_high`` 0.7, ``b2_target_low`` 0.01);
- T1 from sigmoid(B2) (0.5, 0.05); Tc from (sigmoid(B1) + sigmoid(B2)) / 2 (0.7, 0.1);

where a target (:func:`pseudo_mask`) is 1 where the pre-mask > high (in an image with fewer than
``min_foreground_pixels`` such pixels: > ``fallback_ratio`` x its max instead), 0 where it is < low (winning
over 1), and ignored (255) elsewhere. Each BCE-with-logits is the mean over the batch's non-ignored pixels,
pooled over the images, as the reference's.

Learning rates, wsolevaluation's main.py ``_set_optimizer`` exactly: VGG16 every name lacking ``features.``
at ``lr * classifier_ratio``, which with the reference's names includes its SPG_A_1 and SPG_A_2, the
PRETRAINED conv4_1-conv5_3 (here ``body.17``-``body.28``: boosted by this layout's own split), and every new
layer; conv1-pool3 at lr. ResNet50 only names holding ``layer4.`` or ``fc.``: layer4 boosted, and every new
layer (SPG_A4 and the B and C branches) at the BASE lr. InceptionV3: all but ``Mixed*`` and ``Conv2d_1-4*``
boosted, so its head and all new layers. Here: the layout's ``split`` (VGG16: the one above), else the
backbone's ``reference_split``, on the backbone's parameters and on the new modules' own names
(:func:`reference_param_groups`), which gives exactly those three; resnet18 follows ResNet50; mobilenet_v2
(``fc.*``, frozen) trains everything at lr.

Where wsolbench differs from the reference, and why:

- maps are upsampled to the input size, the reference to a fixed 224 x 224 (its input size); the
  30-pixel rule counts pixels at that size;
- VGG16: the max-pool before B1 and conv5 is torchvision's 2x2/s2 pool4, not the reference's 3x3/s2 pad-1
  one (a tap cannot change the layers of a backbone stage); same size for even sides (14x14 at 224). The
  frozen conv6 still runs in the training pass (one pass through the public taps goes to the feature map);
  evaluation stops at conv5_3;
- the fallback is computed for all images at once (the reference loops with one device sync per image),
  same result; a constant class map normalises to 0 (the reference: NaN, every pixel ignored, a NaN loss),
  and a BCE term without any non-ignored pixel is 0 (the reference: NaN);
- the reference uses the argmax class when it gets no label; wsolbench always passes the labels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench import Method, Prediction, StepOutput, WsolbenchError
from wsolbench.backbones import CamBackbone, ParamSplit
from wsolbench.method import unwrap
from wsolbench_reference.heads import (freeze_new_layers_after, init_new_convs, label_channel, min_max_normalize,
                                       reference_param_groups, tap_channels)

#: the target value of a pixel the BCE terms ignore
IGNORE = 255.0
#: width of branch C's 3x3 conv (every reference architecture)
C_WIDTH = 512
#: VGG16 with the reference's SPG names: conv1_1-pool3 (body.0-16) at lr, everything else boosted
_VGG16_SPG_SPLIT = ParamSplit(boosted=("*",), excluded=("body.?.*", "body.1[0-6].*"))


@dataclass(frozen=True)
class SpgLayout:
    """Where SPG reads a backbone: the taps of B1, B2 and the class head, B's width, the class head's new
    3x3 convs (``hidden_convs`` of ``hidden_width``), the dropout before SPG_A_4 and C, whether SPG_A_4 is the
    backbone's own 1x1 ``classifier``, and the lr split when it is not the backbone's ``reference_split``."""

    b1_tap: str
    b2_tap: str
    class_tap: str
    branch_width: int
    hidden_convs: int = 0
    hidden_width: int = 0
    dropout: float = 0.0
    own_classifier: bool = False
    split: ParamSplit | None = None


def spg_layout(backbone: CamBackbone) -> SpgLayout:
    """The layout of ``backbone`` (by its ``arch``; the table of the module docstring)."""
    large = backbone.large_feature_map
    layouts = {
        "vgg16": lambda: SpgLayout("conv4_3" if large else "pool4", "conv5_3", "conv5_3", 512, hidden_convs=2,
                                   hidden_width=512, split=_VGG16_SPG_SPLIT),
        "resnet50": lambda: SpgLayout("layer3.0", "layer3.5", "layer4.2", 1024),
        "inception_v3": lambda: SpgLayout("Mixed_5d" if large else "maxpool3", "Mixed_6d", "head_conv2", 512,
                                          dropout=0.5, own_classifier=True),
        "resnet18": lambda: SpgLayout("layer3.0", "layer3.1", "layer4.1", 256),
        "mobilenet_v2": lambda: SpgLayout("body.7", "body.13", "body.18", 96),
    }
    if backbone.arch not in layouts:
        raise WsolbenchError(f"spg has no layout for backbone {backbone.arch!r} (its B1/B2 taps are set per "
                             f"architecture): use one of {', '.join(layouts)}")
    layout = layouts[backbone.arch]()
    missing = [tap for tap in (layout.b1_tap, layout.b2_tap, layout.class_tap) if tap not in backbone.taps]
    if missing:
        raise WsolbenchError(f"spg: backbone {backbone.arch!r} ({type(backbone).__name__}) has no tap "
                             f"{missing[0]!r}, which its layout reads; taps: {', '.join(backbone.taps)}")
    return layout


def _conv3x3_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU())


class SpgOutput(NamedTuple):
    """One training pass: class logits (B, C), the class map (B, C, h, w) and the one-channel logit maps of
    B1, B2 and C (B, 1, h', w'), each at its own tap's resolution."""

    logits: Tensor
    class_map: Tensor
    b1_logits: Tensor
    b2_logits: Tensor
    c_logits: Tensor


class SpgNet(nn.Module):
    """The backbone with SPG's class head and branches B1, B2 and C (see the module docstring)."""

    def __init__(self, backbone: CamBackbone, num_classes: int):
        super().__init__()
        layout = spg_layout(backbone)
        self.backbone, self.layout = backbone, layout
        channels = tap_channels(backbone, (layout.b1_tap, layout.b2_tap, layout.class_tap))
        width = layout.branch_width
        self.b1_entry = _conv3x3_relu(channels[layout.b1_tap], width)
        self.b2_entry = _conv3x3_relu(channels[layout.b2_tap], width)
        self.b_shared = nn.Sequential(_conv3x3_relu(width, width), nn.Conv2d(width, 1, 1))
        hidden = channels[layout.class_tap]
        convs = []
        for _ in range(layout.hidden_convs):
            convs.append(_conv3x3_relu(hidden, layout.hidden_width))
            hidden = layout.hidden_width
        self.class_hidden = nn.Sequential(*convs)
        self.class_dropout = nn.Dropout(layout.dropout)
        keep: tuple[str, ...] = ()
        if layout.own_classifier:
            keep = tuple(name for name, module in backbone.named_children() if module is backbone.classifier)
        else:
            self.class_conv = nn.Conv2d(hidden, num_classes, 1)
        self.c_branch = nn.Sequential(_conv3x3_relu(hidden, C_WIDTH), nn.Conv2d(C_WIDTH, 1, 1))
        for name, module in self.named_children():
            if name != "backbone":
                init_new_convs(module, he=False)
        #: the backbone's new layers SPG does not use (frozen)
        self.frozen = freeze_new_layers_after(backbone, layout.class_tap, keep)

    def class_head(self, activation: Tensor) -> tuple[Tensor, Tensor]:
        """(class map (B, C, h, w), the hidden features C reads) from the activation at ``class_tap``."""
        hidden = self.class_dropout(self.class_hidden(activation))
        classifier = self.backbone.classifier if self.layout.own_classifier else self.class_conv
        return classifier(hidden), hidden

    def classify(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(logits (B, C), class map (B, C, h, w)), without the B1, B2 and C branches."""
        class_map, _ = self.class_head(self.backbone.forward_to(images, self.layout.class_tap))
        return class_map.mean(dim=(2, 3)), class_map

    def forward(self, images: Tensor) -> SpgOutput:
        layout = self.layout
        taps = self.backbone(images, taps=tuple(dict.fromkeys((layout.b1_tap, layout.b2_tap, layout.class_tap)))).taps
        b1_logits = self.b_shared(self.b1_entry(taps[layout.b1_tap]))
        b2_logits = self.b_shared(self.b2_entry(taps[layout.b2_tap]))
        class_map, hidden = self.class_head(taps[layout.class_tap])
        return SpgOutput(class_map.mean(dim=(2, 3)), class_map, b1_logits, b2_logits, self.c_branch(hidden))


# --- targets and losses -------------------------------------------------------------------------------------


def pseudo_mask(pre_mask: Tensor, high: float, low: float, min_foreground_pixels: int,
                fallback_ratio: float) -> Tensor:
    """SPG's target (B, H, W) from a pre-mask (B, H, W): 1 where ``pre_mask > high`` (in an image with fewer
    than ``min_foreground_pixels`` such pixels, where ``pre_mask > fallback_ratio * its max`` instead), 0
    where ``pre_mask < low`` (over a 1), :data:`IGNORE` elsewhere."""
    foreground = pre_mask > high
    too_few = foreground.flatten(1).sum(dim=1) < min_foreground_pixels
    fallback = pre_mask > fallback_ratio * pre_mask.flatten(1).amax(dim=1)[:, None, None]
    foreground = torch.where(too_few[:, None, None], fallback, foreground)
    return torch.full_like(pre_mask, IGNORE).masked_fill(foreground, 1.0).masked_fill(pre_mask < low, 0.0)


def ignoring_bce(logits: Tensor, target: Tensor) -> Tensor:
    """BCE-with-logits of ``logits`` against ``target`` (both (B, H, W)), averaged over the pixels whose target
    is not :data:`IGNORE`, pooled over the batch; 0 when every pixel is ignored."""
    known = target != IGNORE
    losses = F.binary_cross_entropy_with_logits(logits, torch.where(known, target, 0.0), reduction="none")
    return torch.where(known, losses, 0.0).sum() / known.sum().clamp(min=1)


def upsample(maps: Tensor, size) -> Tensor:
    """One-channel maps (B, 1, h, w) -> (B, H, W), bilinear, ``align_corners`` False."""
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def spg_targets(class_map: Tensor, labels: Tensor, b1_logits: Tensor, b2_logits: Tensor, size,
                hparams: SPG.Hparams) -> tuple[Tensor, Tensor, Tensor]:
    """The detached targets (T2, T1, Tc), each (B, H, W) at ``size``, of B2, B1 and C (module docstring)."""
    hp = hparams
    target = functools.partial(pseudo_mask, min_foreground_pixels=hp.min_foreground_pixels,
                               fallback_ratio=hp.fallback_ratio)
    with torch.no_grad():
        attention = min_max_normalize(upsample(label_channel(class_map, labels)[:, None].float(), size))
        b2_prob = torch.sigmoid(upsample(b2_logits.float(), size))
        fused = (torch.sigmoid(upsample(b1_logits.float(), size)) + b2_prob) / 2
        return (target(attention, hp.b2_target_high, hp.b2_target_low),
                target(b2_prob, hp.b1_target_high, hp.b1_target_low),
                target(fused, hp.c_target_high, hp.c_target_low))


def spg_losses(output: SpgOutput, labels: Tensor, size, hparams: SPG.Hparams) -> dict[str, Tensor]:
    """``ce``, ``bce_b2``, ``bce_b1`` and ``bce_c`` of one pass on images of ``size`` (H, W); the loss is their sum."""
    b2_target, b1_target, c_target = spg_targets(output.class_map, labels, output.b1_logits, output.b2_logits,
                                                 size, hparams)
    return {"ce": F.cross_entropy(output.logits, labels),
            "bce_b2": ignoring_bce(upsample(output.b2_logits, size), b2_target),
            "bce_b1": ignoring_bce(upsample(output.b1_logits, size), b1_target),
            "bce_c": ignoring_bce(upsample(output.c_logits, size), c_target)}


class SPG(Method):
    """The classifier with branches B1, B2 and C trained on pseudo-masks the network produces itself."""

    name = "spg"
    paper = ("Zhang et al., Self-produced Guidance for Weakly-supervised Object Localization, ECCV 2018 "
             "(as re-implemented in clovaai/wsolevaluation)")

    @dataclass(frozen=True)
    class Hparams:
        b2_target_high: float = 0.7  #: B2's target: 1 where the class attention > it (spg_threshold_1h)
        b2_target_low: float = 0.01  #: B2's target: 0 where the class attention < it (spg_threshold_1l)
        b1_target_high: float = 0.5  #: B1's target: 1 where sigmoid(B2) > it (spg_threshold_2h)
        b1_target_low: float = 0.05  #: B1's target: 0 where sigmoid(B2) < it (spg_threshold_2l)
        c_target_high: float = 0.7  #: C's target: 1 where mean(sigmoid(B1), sigmoid(B2)) > it (spg_threshold_3h)
        c_target_low: float = 0.1  #: C's target: 0 where that mean < it (spg_threshold_3l)
        min_foreground_pixels: int = 30  #: fewer foreground pixels in an image: use the fallback threshold
        fallback_ratio: float = 0.7  #: the fallback: 1 where the pre-mask > fallback_ratio x its max

        def __post_init__(self):
            for branch in ("b2", "b1", "c"):
                high, low = getattr(self, f"{branch}_target_high"), getattr(self, f"{branch}_target_low")
                if not 0 <= low <= high <= 1:
                    raise WsolbenchError(f"spg: need 0 <= {branch}_target_low <= {branch}_target_high <= 1, "
                                         f"got {low} and {high}")
            if self.min_foreground_pixels < 0 or not 0 <= self.fallback_ratio <= 1:
                raise WsolbenchError(f"spg: min_foreground_pixels must be >= 0 and fallback_ratio in [0, 1], got "
                                     f"{self.min_foreground_pixels} and {self.fallback_ratio}")

    def build_model(self) -> SpgNet:
        return SpgNet(super().build_model(), self.num_classes)

    def param_groups(self, model: SpgNet, lr: float) -> list[dict]:
        """The reference's split (module docstring): the layout's split, else the backbone's ``reference_split``."""
        inner = unwrap(model)
        split = inner.layout.split or inner.backbone.reference_split
        return reference_param_groups(inner, split, lr, self.classifier_ratio)

    def training_step(self, model, batch, context) -> StepOutput:
        images = batch["image"]
        losses = spg_losses(model(images), batch["label"], images.shape[-2:], self.hparams)
        return StepOutput(sum(losses.values()), {name: value.detach() for name, value in losses.items()})

    def predict(self, model: SpgNet, images: Tensor, labels: Tensor) -> Prediction:
        """The class head's logits and its map's channel y."""
        logits, class_map = model.classify(images)
        return Prediction(logits, label_channel(class_map, labels))
