"""``acol``: Adversarial Complementary Learning (Zhang et al., CVPR 2018) as clovaai/wsolevaluation runs it.

Re-derived from the notes on wsolevaluation (../shared/research/wsolevaluation.md §5-6) and checked against
its wsol/method/acol.py, wsol/vgg.py, wsol/resnet.py, wsol/inception.py and main.py (no code copied).

Network (:class:`AcolNet`): the backbone's trunk T (B, K, h, w) feeds two heads A and B of the same shape,
3x3 conv K->1024 + ReLU, 3x3 conv 1024->1024 + ReLU, 1x1 conv 1024->C, all stride 1, so a head's map is at
T's resolution; a head's logits are the GAP of its map. T is the activation the reference's heads read:

- vgg16: conv5_3, then a 3x3/s1 max-pool and a 3x3/s1 average pool (both padding 1), as the reference's
  ACoL VGG; with a large feature map also a 3x3/s1 max-pool after conv4_3, where the reference has one
  instead of pool4 (``insert_after``);
- resnet50 and resnet18: the output of layer4; inception_v3: the output of Mixed_6e (no dropout);
- any other backbone: the last tap whose top-level module (the tap name up to its first dot) is not one of
  its ``new_layers`` (mobilenet_v2: body.18, the 1280-channel conv).

The backbone's ``new_layers`` that run after T (VGG16 conv6 + fc, ResNet fc, InceptionV3 head_conv1/2 +
class_conv, MobileNetV2 fc) are unused: they are frozen (``requires_grad`` False) and in no parameter group,
so DistributedDataParallel sees no unused parameter.

Training, with labels y: attention = A's map at channel y, detached, min-max normalised per image; T is
zeroed, in every channel, where attention >= ``erase_threshold``, and B reads the erased T. Loss = CE(A) +
CE(B), both logged (``ce_a``, ``ce_b``).

Evaluation, as the reference's (its ``return_cam`` pass gets the ground-truth labels): the same pass, so B
reads T erased at the true class; map = max(minmax(A_y), minmax(B_y)), each min-max normalised over its own
h x w (the reference normalises every channel of each image on its own, then takes channel y). The class
scores (Top-1) are A's logits, which the reference returns as ``logits``.

Learning rates, wsolevaluation's main.py ``_set_optimizer`` exactly: VGG16 every parameter whose name lacks
``features.`` at ``lr * classifier_ratio`` (the heads; the convs at lr); InceptionV3 all but the ``Mixed*``
and ``Conv2d_1-4*`` layers (the heads boosted); ResNet50 only names holding ``layer4.`` or ``fc.``, so
layer4 is boosted and the new heads train at the BASE lr. Here the backbone's parameters follow its
``reference_split`` and the heads' (``head_a.*``, ``head_b.*``) the same split read on their own names,
which gives those three splits and the ResNet one for resnet18; mobilenet_v2's split (``fc.*``, frozen)
puts everything at the base lr. The heads are initialised as the reference's: He (fan_out) on ResNet,
Xavier-uniform elsewhere, biases 0 (``head_init = "reference"``). ``head_init = "xavier"`` uses Xavier
everywhere: from scratch at a high learning rate (the synthetic benchmark: resnet18, lr 0.01), He's large
1x1 class conv (std sqrt(2 / C)) makes the first epoch's cross-entropy about 260 and the heads never
recover (chance accuracy), so the synthetic table sets it.

Where wsolbench differs from the reference, and why:

- VGG16: pool1-4 (pool1-3 with a large map) stay torchvision's 2x2/s2 max-pools instead of the reference's
  overlapping 3x3/s2 pad-1 ones: a tap cannot change the layers inside a backbone stage. The output sizes
  are the same for even input sides (14x14 at 224).
- A constant map: the reference divides by zero in its min-max normalisation (NaN: nothing is erased and
  the map is NaN); here it normalises to 0 (nothing is erased either, and the map is the other head's).
- The reference erases at the argmax class when it gets no label; wsolbench always passes the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench import Method, Prediction, StepOutput, WsolbenchError
from wsolbench.backbones import CamBackbone, ResNetCam, VggCam
from wsolbench.method import unwrap
from wsolbench_reference.heads import (freeze_new_layers_after, init_new_convs, label_channel, min_max_normalize,
                                       reference_param_groups, tap_channels, top_module)

#: width of the two 3x3 convs of each ACoL head
HEAD_WIDTH = 1024
#: ``head_init`` values: the reference's (He fan_out on ResNet, Xavier-uniform elsewhere) or Xavier everywhere
HEAD_INITS = ("reference", "xavier")


# --- ACoL ---------------------------------------------------------------------------------------------------


def trunk_tap(backbone: CamBackbone) -> str:
    """The last tap whose top-level module is not one of the backbone's ``new_layers``."""
    covered = [tap for tap in backbone.taps if top_module(tap) not in backbone.new_layers]
    if not covered:
        raise WsolbenchError(f"acol: every tap of backbone {backbone.arch!r} lies in its new_layers "
                             f"({', '.join(backbone.new_layers)}); the heads need a pretrained trunk")
    return covered[-1]


def erase_attended(features: Tensor, attention: Tensor, threshold: float) -> Tensor:
    """``features`` (B, K, h, w) zeroed, in every channel, where ``attention`` (B, h, w) >= ``threshold``."""
    keep = (attention < threshold).to(features.dtype)
    return features * keep[:, None]


def acol_map(map_a: Tensor, map_b: Tensor, labels: Tensor) -> Tensor:
    """The localisation map (B, h, w): max(minmax(A_y), minmax(B_y)) of the heads' maps (B, C, h, w)."""
    return torch.maximum(min_max_normalize(label_channel(map_a, labels)),
                         min_max_normalize(label_channel(map_b, labels)))


def _head(in_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, HEAD_WIDTH, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(HEAD_WIDTH, num_classes, 1))


class AcolOutput(NamedTuple):
    """One pass: each head's logits (B, C) and map (B, C, h, w), B's read from the erased trunk."""

    logits_a: Tensor
    logits_b: Tensor
    map_a: Tensor
    map_b: Tensor


class AcolNet(nn.Module):
    """The backbone's trunk with heads A and B (see the module docstring); ``forward(images, labels)`` is
    the one pass training and evaluation both use."""

    def __init__(self, backbone: CamBackbone, num_classes: int, erase_threshold: float, head_init: str = "reference"):
        super().__init__()
        self.backbone = backbone
        self.erase_threshold = erase_threshold
        self.trunk_tap = trunk_tap(backbone)
        self.vgg_pooling = isinstance(backbone, VggCam)
        if self.vgg_pooling and backbone.large_feature_map:
            backbone.insert_after("conv4_3", nn.MaxPool2d(3, stride=1, padding=1))
        #: the backbone's new layers the heads replace (frozen)
        self.frozen = freeze_new_layers_after(backbone, self.trunk_tap)
        channels = tap_channels(backbone, [self.trunk_tap])[self.trunk_tap]
        self.head_a = _head(channels, num_classes)
        self.head_b = _head(channels, num_classes)
        for head in (self.head_a, self.head_b):
            init_new_convs(head, he=head_init == "reference" and isinstance(backbone, ResNetCam))

    def trunk(self, images: Tensor) -> Tensor:
        """T (B, K, h, w): the activation at ``trunk_tap``, VGG16's stride-1 max- and average-pooled."""
        features = self.backbone.forward_to(images, self.trunk_tap)
        if self.vgg_pooling:
            features = F.avg_pool2d(F.max_pool2d(features, 3, stride=1, padding=1), 3, stride=1, padding=1)
        return features

    def forward(self, images: Tensor, labels: Tensor) -> AcolOutput:
        trunk = self.trunk(images)
        map_a = self.head_a(trunk)
        attention = min_max_normalize(label_channel(map_a.detach(), labels).float())
        map_b = self.head_b(erase_attended(trunk, attention, self.erase_threshold))
        return AcolOutput(map_a.mean(dim=(2, 3)), map_b.mean(dim=(2, 3)), map_a, map_b)


class ACoL(Method):
    """Two heads: B classifies the trunk with what A attends to (at the true class) erased."""

    name = "acol"
    paper = ("Zhang et al., Adversarial Complementary Learning for Weakly Supervised Object Localization, "
             "CVPR 2018 (as re-implemented in clovaai/wsolevaluation)")

    @dataclass(frozen=True)
    class Hparams:
        erase_threshold: float = 0.7  #: B's trunk is erased where A's normalised attention >= it (acol_threshold)
        head_init: str = "reference"  #: "reference" (He fan_out on ResNet, Xavier elsewhere) or "xavier"

        def __post_init__(self):
            if not 0 <= self.erase_threshold <= 1:
                raise WsolbenchError(f"acol: erase_threshold must lie in [0, 1], got {self.erase_threshold}")
            if self.head_init not in HEAD_INITS:
                raise WsolbenchError(f"acol: head_init must be reference or xavier, got {self.head_init!r}")

    def build_model(self) -> AcolNet:
        return AcolNet(super().build_model(), self.num_classes, self.hparams.erase_threshold,
                       self.hparams.head_init)

    def param_groups(self, model: AcolNet, lr: float) -> list[dict]:
        """The reference's split (module docstring): the backbone's ``reference_split``, heads included."""
        inner = unwrap(model)
        return reference_param_groups(inner, inner.backbone.reference_split, lr, self.classifier_ratio)

    def training_step(self, model, batch, context) -> StepOutput:
        labels = batch["label"]
        output = model(batch["image"], labels)
        ce_a = F.cross_entropy(output.logits_a, labels)
        ce_b = F.cross_entropy(output.logits_b, labels)
        return StepOutput(ce_a + ce_b, {"ce_a": ce_a.detach(), "ce_b": ce_b.detach()})

    def predict(self, model: AcolNet, images: Tensor, labels: Tensor) -> Prediction:
        """A's logits and max(minmax(A_y), minmax(B_y)), B reading the trunk erased at the true class."""
        output = model(images, labels)
        return Prediction(output.logits_a, acol_map(output.map_a, output.map_b, labels))
