"""``align``: feature-direction alignment with consistency under attentive dropout (Kim et al., CVPR 2022).

Re-derived from the paper and from what the official code (ejkim47/bridging-gap-wsol, not copied) does
(../shared/research/methods.md §5). The network is a CAM backbone with a second, weight-sharing branch:
the activation at the backbone's ``split_tap`` (VGG16 after conv4_3, ResNet after layer4 block 0) goes
through attentive dropout and the shared tail, giving ``F_drop``; logits and maps come from ``F`` only.
Training minimises ``L_CE + λ_drop L_drop`` during the warm stage (its own batch size) and Eq. 10,
``L_CE + λ_drop L_drop + λ_sim L_sim + λ_norm L_norm``, afterwards (formulas: :mod:`wsolbench_align.maps`).
The localisation map is the CAM; ``--set map=norm`` (𝓕) or ``map=sim`` (the GT class's 𝓢) gives the
alternatives of the paper's Table 5. The lr split is the official code's (VGG16: conv6 + fc at
``lr * classifier_ratio``; ResNet: fc only), wsolbench's ``"new_layers"`` split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench import Method, Phase, Prediction, StepOutput, WsolbenchError, hookimpl
from wsolbench.backbones import param_groups
from wsolbench_align.maps import (attentive_drop_mask, class_similarity, drop_loss, norm_loss, norm_map,
                                  normalize_per_image, region_similarity, similarity_loss,
                                  similarity_maps)

MAPS = ("cam", "norm", "sim")
NORM_REGIONS = ("gt_class", "any_class")


class AlignOutput(NamedTuple):
    """The training forward pass: logits (B, C), ``F`` and ``F_drop`` (B, D, H, W), 𝓢 (B, C, H, W)."""

    logits: Tensor
    features: Tensor
    dropped: Tensor
    similarity: Tensor


class AlignNet(nn.Module):
    """``backbone`` with the attentive-dropout branch. ``forward(x)`` gives the logits; with a
    ``drop_generator`` it gives an :class:`AlignOutput` from one pass (so DDP sees every use of the
    weights)."""

    def __init__(self, backbone: nn.Module, gamma: float, p: float):
        super().__init__()
        self.backbone, self.gamma, self.p = backbone, gamma, p

    def forward(self, images: Tensor, drop_generator=None):
        if drop_generator is None:
            return self.backbone(images)
        tap = self.backbone.split_tap
        activation = self.backbone.forward_to(images, tap)
        features = self.backbone.forward_from(activation, tap)
        keep = attentive_drop_mask(activation, self.gamma, self.p, drop_generator)
        dropped = self.backbone.forward_from(activation * keep, tap)
        similarity = similarity_maps(features, self.backbone.classifier.weight)
        return AlignOutput(self.backbone.logits(features), features, dropped, similarity)


class Align(Method):
    """Feature-direction alignment (``L_sim``, ``L_norm``) with consistency under attentive dropout."""

    name = "align"
    paper = ("Kim et al., Bridging the Gap between Classification and Localization for Weakly Supervised "
             "Object Localization, CVPR 2022")
    lr_split = "new_layers"

    @dataclass(frozen=True)
    class Hparams:
        lambda_sim: float = 0.5  #: weight of L_sim (paper, CUB VGG16)
        lambda_norm: float = 0.15  #: weight of L_norm
        lambda_drop: float = 3.0  #: weight of L_drop
        tau_fg: float = 0.6  #: 𝓕̂ above it: foreground of L_sim
        tau_bg: float = 0.1  #: 𝓕̂ below it: background of L_sim
        gamma: float = 0.8  #: attentive dropout: drop where the channel mean > gamma * its max
        p: float = 0.5  #: attentive dropout: probability of dropping such a location
        norm_region: str = "gt_class"  #: regions of L_norm: the GT class's 𝓢, or "any_class" (max over classes)
        warm_epochs: int = 20  #: epochs of the warm stage (CE + L_drop only), counted in the protocol's epochs
        warm_batch_size: int = 0  #: batch size of the warm stage (0: the protocol's)
        map: str = "cam"  #: the localisation map: cam, norm (𝓕) or sim (the GT class's 𝓢)

        def __post_init__(self):
            for key in ("lambda_sim", "lambda_norm", "lambda_drop", "warm_epochs", "warm_batch_size"):
                if getattr(self, key) < 0:
                    raise WsolbenchError(f"align: {key} must be >= 0, got {getattr(self, key)}")
            for key in ("tau_fg", "tau_bg", "gamma", "p"):
                if not 0 <= getattr(self, key) <= 1:
                    raise WsolbenchError(f"align: {key} must lie in [0, 1], got {getattr(self, key)}")
            if self.tau_bg > self.tau_fg:
                raise WsolbenchError(f"align: tau_bg ({self.tau_bg}) must not exceed tau_fg ({self.tau_fg})")
            if self.norm_region not in NORM_REGIONS:
                raise WsolbenchError(f"align: norm_region must be {' or '.join(NORM_REGIONS)}, "
                                     f"got {self.norm_region!r}")
            if self.map not in MAPS:
                raise WsolbenchError(f"align: map must be one of {', '.join(MAPS)}, got {self.map!r}")

    def build_model(self) -> AlignNet:
        backbone = super().build_model()
        backbone.split_tap  # noqa: B018 - a backbone without a split point is a one-line error here
        return AlignNet(backbone, self.hparams.gamma, self.hparams.p)

    def param_groups(self, model: AlignNet, lr: float) -> list[dict]:
        return param_groups(model.backbone, lr, self.classifier_ratio, split=self.lr_split)

    def phases(self, settings) -> list[Phase]:
        warm = self.hparams.warm_epochs
        if warm > settings.epochs:
            raise WsolbenchError(f"align: warm_epochs ({warm}) exceeds the run's epochs ({settings.epochs})")
        return [Phase("warm", warm, batch_size=self.hparams.warm_batch_size or None),
                Phase("align", settings.epochs - warm)]

    def training_step(self, model, batch, context) -> StepOutput:
        hp = self.hparams
        output = model(batch["image"], drop_generator=context.generator)
        ce = F.cross_entropy(output.logits, batch["label"])
        drop = drop_loss(output.features, output.dropped)
        loss = ce + hp.lambda_drop * drop
        logs = {"ce": ce.detach(), "drop": drop.detach()}
        if context.phase == "align":
            normalized = normalize_per_image(norm_map(output.features))
            gt_similarity = region_similarity(output.similarity, batch["label"], any_class=False)
            regions = region_similarity(output.similarity, batch["label"], hp.norm_region == "any_class")
            sim = similarity_loss(gt_similarity, normalized, hp.tau_fg, hp.tau_bg)
            norm = norm_loss(regions, normalized)
            loss = loss + hp.lambda_sim * sim + hp.lambda_norm * norm
            logs.update(sim=sim.detach(), norm=norm.detach())
        return StepOutput(loss, logs)

    def predict(self, model: AlignNet, images: Tensor, labels: Tensor) -> Prediction:
        return predict_map(model.backbone, images, labels, self.hparams.map)

    def extra_maps(self, model: AlignNet, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """The two maps of ``cam``, ``norm`` (𝓕) and ``sim`` (𝓢 of the GT class) that ``map`` does not score."""
        return {kind: predict_map(model.backbone, images, labels, kind).maps for kind in MAPS
                if kind != self.hparams.map}


def predict_map(backbone, images: Tensor, labels: Tensor, kind: str) -> Prediction:
    """Logits and one of the three maps of ``backbone`` (any CamBackbone): ``cam``, ``norm`` (𝓕) or ``sim``
    (the GT class's 𝓢), from one pass."""
    features = backbone.features(images)
    if kind == "norm":
        maps = norm_map(features)
    elif kind == "sim":
        maps = class_similarity(features, backbone.classifier.weight[labels])
    else:
        maps = backbone.cam(features, labels)
    return Prediction(backbone.logits(features), maps)


@hookimpl
def wsolbench_register_methods(register):
    register(Align)
