"""``fsl``: the few-shot fully supervised baseline of Choe et al. (CVPR 2020), the protocol's upper reference.

The paper's sharpest finding: a localiser trained with full supervision on the few train-fullsup images
that every WSOL method already uses for validation (ImageNet 10, CUB 5, OpenImages 5 per class) beats every
WSOL method (CUB MaxBoxAccV2 86.6 with InceptionV3 against 66.4 for the best WSOL method). Its code was never
released (wsolevaluation issues #43, #48); this one follows the paper's description:

- the network is one of the CAM backbones (the same ImageNet weights) with a per-pixel foreground head, a
  1x1 conv from the CAM feature map to one channel; the backbone's classifier is unused and frozen. The
  localization map is the foreground logit map (class-agnostic); there are no class scores, so the records
  hold MaxBoxAcc, MaxBoxAccV2, GT-known Loc (and PxAP on masks) but no Top-1 Cls or Loc;
- it trains on train-fullsup (``training_split = "train-fullsup"``): the harness holds out
  ``holdout_per_class`` images of each class for checkpoint selection and trains on
  ``num_val_sample_per_class`` of the others (the protocol tables carry the paper's counts), so the model is
  never selected on images it learnt from; its record says ``training_data.localization_labels = true``;
- the target is the union of the ground-truth boxes, filled (inclusive corners, the evaluation grid), or the
  mask's foreground with its ignore pixels (255) left out; the logit map is upsampled bilinearly to that
  grid and the loss is the binary cross-entropy with logits averaged over the pixels that are not ignored;
- augmentation: a horizontal flip of image and target with probability 0.5 (``flip``), drawn from the step's
  generator. The items come resized to the protocol's input size, without the training random crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench import Method, Prediction, StepOutput, WsolbenchError
from wsolbench.backbones import CamBackbone
from wsolbench.method import FULLY_SUPERVISED
from wsolbench.metrics.functional import RESIZE_LENGTH

#: pixel label of the "ignore" region in mask targets
IGNORE = 255


def box_targets(boxes: list[Tensor], size: int = RESIZE_LENGTH) -> Tensor:
    """(B, size, size) float masks: 1 inside any of each image's inclusive ``x0, y0, x1, y1`` boxes (clipped
    to the grid), else 0."""
    targets = torch.zeros(len(boxes), size, size)
    for target, image_boxes in zip(targets, boxes):
        for x0, y0, x1, y1 in image_boxes.tolist():
            x0, y0 = max(x0, 0), max(y0, 0)
            target[y0:max(y1 + 1, y0), x0:max(x1 + 1, x0)] = 1.0
    return targets


def foreground_targets(batch: dict) -> tuple[Tensor, Tensor]:
    """``(target, valid)``: (B, T, T) foreground in {0, 1} and the pixels that count (not ``IGNORE``)."""
    if "mask" in batch:
        mask = batch["mask"]
        return (mask == 1).float(), mask != IGNORE
    if "boxes" not in batch:
        raise WsolbenchError("fsl trains on localization labels, but the training batch has neither boxes nor "
                             "masks")
    target = box_targets(batch["boxes"]).to(batch["image"].device)
    return target, torch.ones_like(target, dtype=torch.bool)


def foreground_loss(logit_maps: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """BCE with logits of the (B, h, w) maps, upsampled bilinearly to the target's grid, over valid pixels."""
    upsampled = F.interpolate(logit_maps[:, None], size=target.shape[-2:], mode="bilinear",
                              align_corners=False)[:, 0]
    losses = F.binary_cross_entropy_with_logits(upsampled, target, reduction="none")
    return losses[valid].sum() / valid.sum().clamp(min=1)


class ForegroundLocaliser(nn.Module):
    """A CAM backbone's feature map -> 1x1 conv -> one foreground logit per position, (B, h, w)."""

    def __init__(self, backbone: CamBackbone):
        super().__init__()
        self.backbone = backbone
        channels = backbone.classifier.weight.shape[1]  # fc (C, K) or a 1x1 class conv (C, K, 1, 1)
        self.head = nn.Conv2d(channels, 1, kernel_size=1)
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)
        backbone.classifier.requires_grad_(False)  # unused: no class scores

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone.features(images))[:, 0]


class FewShotLocaliser(Method):
    """Fully supervised foreground localiser trained on held-in train-fullsup images (see the module)."""

    name = "fsl"
    paper = ("Choe et al., Evaluating Weakly Supervised Object Localization Methods Right, CVPR 2020 "
             "(few-shot learning baseline)")
    training_split = FULLY_SUPERVISED

    @dataclass(frozen=True)
    class Hparams:
        holdout_per_class: int = 1  #: train-fullsup images per class kept out of training, to select on
        flip: bool = True  #: horizontal flip of image and target with p = 0.5

        def __post_init__(self):
            if isinstance(self.holdout_per_class, bool) or self.holdout_per_class < 1:
                raise WsolbenchError(f"fsl: holdout_per_class must be >= 1, got {self.holdout_per_class}")

    @property
    def holdout_per_class(self) -> int:
        return self.hparams.holdout_per_class

    def build_model(self) -> nn.Module:
        return ForegroundLocaliser(super().build_model())

    def param_groups(self, model: nn.Module, lr: float) -> list[dict]:
        """Base lr for the pretrained layers; ``lr * classifier_ratio`` for the head and the backbone's layers
        the ImageNet weights do not cover (its ``new_layers_split``). The frozen classifier is left out."""
        backbone = model.backbone
        base, boosted = [], list(model.head.parameters())
        for name, parameter in backbone.named_parameters():
            if parameter.requires_grad:
                (boosted if backbone.new_layers_split.is_boosted(name) else base).append(parameter)
        return [{"params": base, "lr": lr}, {"params": boosted, "lr": lr * self.classifier_ratio}]

    def training_step(self, model: nn.Module, batch: dict, context) -> StepOutput:
        images = batch["image"]
        target, valid = foreground_targets(batch)
        if self.hparams.flip:
            flipped = (torch.rand(len(images), generator=context.generator) < 0.5).to(images.device)
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
            target = torch.where(flipped[:, None, None], target.flip(-1), target)
            valid = torch.where(flipped[:, None, None], valid.flip(-1), valid)
        loss = foreground_loss(model(images), target, valid)
        return StepOutput(loss, {"bce": loss.detach()})

    def predict(self, model: nn.Module, images: Tensor, labels: Tensor) -> Prediction:
        return Prediction(None, model(images))
