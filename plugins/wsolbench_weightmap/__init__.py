"""``weightmap`` and ``weightmap-siamese``: the weight-map generator of Shaharabany & Wolf, methods I and II.

Re-derived from the paper (../shared/seeds/weight-map-generator.md; no official code exists, the first
author's later WWbL code informs the generator's details, ../shared/research/methods.md §7). Two phases:

1. ``classifier``: f is trained on the image labels, with the protocol's optimizer and schedule (``epochs``,
   ``lr``, ``batch_size``, ...). Method I: a CAM backbone and cross-entropy, exactly a ``cam`` run. Method
   II: the same backbone whose linear head projects the pooled features to ``embedding_dim`` (the paper's
   200), trained with the triplet loss (Eq. 2) on in-batch triplets of class-balanced batches
   (``per_class`` images of each class). With ``classifier_checkpoint`` (a finished wsolbench run's
   folder, or a checkpoint file: a ``cam`` run for method I, a ``weightmap-siamese`` run for method II)
   f is loaded instead and this phase is skipped. Its epochs are never selected for testing.
2. ``generator``: f frozen (weights, and batch-norm statistics in eval mode); the U-Net generator g
   (:mod:`wsolbench_weightmap.generator`) trained with its own SGD (``generator_*`` hyperparameters) for
   ``generator_epochs``. Method I: Eq. 1, ``CE(f(I * M), target) + lam * mean(M)``; method II: Eq. 3 + Eq. 4
   ``+ lam * mean(M)`` (:mod:`wsolbench_weightmap.losses`).

The localisation map is ``M = g(I)``. Class scores are f's: method I's logits; method II's are minus the
distance of the embedding to each class's mean training embedding under the frozen f (accumulated during
the generator phase, and during each classifier epoch for that epoch's evaluation), so Top-1 Loc uses f's
own prediction. The box-mass score S (Eq. 6, :mod:`wsolbench_weightmap.box_mass`) is offered as the
label-free selection criterion ``box_mass``: recorded at every train-fullsup evaluation, chosen with
``--set selection=box_mass eval_checkpoint=best`` (the paper's early stopping); the protocol's selection
stays the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from wsolbench import (ClassBalancedBatches, Method, Optimization, Phase, Prediction, Schedule, StepOutput,
                       WsolbenchError, hookimpl, run_model_weights)
from wsolbench.backbones import create_backbone, param_groups
from wsolbench.method import unwrap
from wsolbench.optim import protocol_schedule, protocol_sgd
from wsolbench_weightmap.box_mass import box_mass_scores
from wsolbench_weightmap.generator import WeightMapGenerator
from wsolbench_weightmap.losses import TARGETS, area, embedding_triplet, inner_outer, invariance
from wsolbench_weightmap.network import ClassCentroids, WeightMapNet

CLASSIFIER, GENERATOR = "classifier", "generator"


@dataclass(frozen=True)
class GeneratorHparams:
    """What both methods share: the regulariser's weight, f's source and g's optimization."""

    lam: float = 1.0  #: lambda, the weight of R(M) = mean(M) (the paper: 1, never tuned)
    classifier_checkpoint: str = ""  #: a finished run's folder or checkpoint holding f; empty: train f first
    generator_epochs: int = 100  #: the generator phase's length (the paper: 100 on the fine-grained sets)
    generator_batch_size: int = 128  #: the paper's
    generator_lr: float = 1e-4  #: the paper's initial rate
    generator_momentum: float = 0.9  #: not stated in the paper
    generator_weight_decay: float = 1e-4  #: not stated for the fine-grained sets (5e-5 for Tiny-ImageNet)
    generator_lr_decay_frequency: int = 0  #: step decay every this many generator epochs; 0: constant
    generator_lr_decay_factor: float = 0.1

    def __post_init__(self):
        checks = {"lam": self.lam >= 0, "generator_epochs": self.generator_epochs >= 1,
                  "generator_batch_size": self.generator_batch_size >= 1, "generator_lr": self.generator_lr > 0,
                  "generator_momentum": 0 <= self.generator_momentum < 1,
                  "generator_weight_decay": self.generator_weight_decay >= 0,
                  "generator_lr_decay_frequency": self.generator_lr_decay_frequency >= 0,
                  "generator_lr_decay_factor": 0 < self.generator_lr_decay_factor <= 1}
        for key, valid in checks.items():
            if not valid:
                raise WsolbenchError(f"weightmap: {key} = {getattr(self, key)!r} is out of range")
        if self.classifier_checkpoint and not Path(self.classifier_checkpoint).exists():
            raise WsolbenchError(f"weightmap: classifier_checkpoint {self.classifier_checkpoint!r} does not exist")


class WeightMap(Method):
    """Method I: g trained so that the frozen classifier f scores I * g(I) as it scores I."""

    name = "weightmap"
    paper = ("Shaharabany & Wolf, Learning a Weight Map for Weakly-Supervised Localization, arXiv:2111.14131 "
             "(method I)")
    #: epochs of the classifier phase (set by phases())
    classifier_epochs = 0

    @dataclass(frozen=True)
    class Hparams(GeneratorHparams):
        target: str = "soft"  #: the cross-entropy's target: "soft" (softmax of f(I), detached) or "label"

        def __post_init__(self):
            super().__post_init__()
            if self.target not in TARGETS:
                raise WsolbenchError(f"weightmap: target must be soft or label, got {self.target!r}")

    # --- model and optimization ----------------------------------------------------------------------

    @property
    def trains_classifier(self) -> bool:
        return not self.hparams.classifier_checkpoint

    def classifier_outputs(self) -> int:
        """The width of f's head: class scores (method I)."""
        return self.num_classes

    def build_model(self) -> WeightMapNet:
        classifier = create_backbone(self.backbone_name, self.classifier_outputs(), pretrained=self.pretrained,
                                     weights_path=self.weights_path, large_feature_map=self.large_feature_map)
        if not self.trains_classifier:
            self._load_classifier(classifier)
        encoder = create_backbone(self.backbone_name, 1, pretrained=self.pretrained, weights_path=self.weights_path)
        return WeightMapNet(classifier, WeightMapGenerator(encoder))

    def _load_classifier(self, classifier) -> None:
        source = self.hparams.classifier_checkpoint
        state = run_model_weights(source)
        prefix = f"{CLASSIFIER}."
        if any(key.startswith(prefix) for key in state):  # a weight-map run: its f
            state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        try:
            classifier.load_state_dict(state)
        except RuntimeError as error:
            detail = str(error).strip().splitlines()
            raise WsolbenchError(f"{source}: not a {self.backbone_name} network with {self.classifier_outputs()} "
                                 f"outputs, as {self.name}'s f must be ({detail[1].strip() if len(detail) > 1 else detail[0]})") from None

    def _classifier_groups(self, model, lr: float) -> list[dict]:
        return param_groups(unwrap(model).classifier, lr, self.classifier_ratio, split=self.lr_split)

    def _generator_groups(self, model) -> list[dict]:
        return [{"params": unwrap(model).generator.trainable_parameters(), "lr": self.hparams.generator_lr}]

    def param_groups(self, model, lr: float) -> list[dict]:
        """f's groups (the protocol's lr and classifier split) and g's (``generator_lr``)."""
        return self._classifier_groups(model, lr) + self._generator_groups(model)

    def optimizers(self, model, settings) -> dict[str, Optimization]:
        hp = self.hparams
        generator = torch.optim.SGD(self._generator_groups(model), lr=hp.generator_lr, momentum=hp.generator_momentum,
                                    weight_decay=hp.generator_weight_decay)
        schedule = Schedule(hp.generator_lr_decay_factor, hp.generator_lr_decay_frequency or None)
        optimizations = {GENERATOR: Optimization(generator, schedule)}
        if self.trains_classifier:
            groups = self._classifier_groups(model, settings.lr)
            optimizations[CLASSIFIER] = Optimization(protocol_sgd(groups, settings), protocol_schedule(settings))
        return optimizations

    def phases(self, settings) -> list[Phase]:
        self.classifier_epochs = settings.epochs if self.trains_classifier else 0
        generator = Phase(GENERATOR, self.hparams.generator_epochs, (GENERATOR,),
                          batch_size=self.hparams.generator_batch_size)
        if not self.trains_classifier:
            return [generator]
        return [Phase(CLASSIFIER, settings.epochs, (CLASSIFIER,), selectable=False), generator]

    # --- training --------------------------------------------------------------------------------------

    def on_phase_start(self, model, phase, context) -> None:
        unwrap(model).freeze_classifier(phase.name == GENERATOR)

    def training_step(self, model, batch, context) -> StepOutput:
        images, labels = batch["image"], batch["label"]
        if context.phase == CLASSIFIER:
            return self.classifier_step(model, images, labels, context)
        return self.generator_step(model, images, labels, context)

    def classifier_step(self, model, images, labels, context) -> StepOutput:
        ce = F.cross_entropy(model(images), labels)
        return StepOutput(ce, {"ce": ce.detach()})

    def generator_step(self, model, images, labels, context) -> StepOutput:
        weighing = model(images, weigh=True)
        discrepancy = invariance(weighing.reference, weighing.foreground, labels, self.hparams.target)
        regulariser = area(weighing.mask)
        loss = discrepancy + self.hparams.lam * regulariser
        return StepOutput(loss, {"discrepancy": discrepancy.detach(), "area": regulariser.detach()})

    # --- evaluation ------------------------------------------------------------------------------------

    def class_scores(self, model: WeightMapNet, images) -> torch.Tensor:
        return model.classifier(images)

    def predict(self, model, images, labels) -> Prediction:
        """f's class scores and the weight maps ``g(I)`` (B, H, W)."""
        inner = unwrap(model)
        return Prediction(self.class_scores(inner, images), inner.generator(images))

    def selection_criteria(self):
        """``box_mass``: the mean box-mass score S of g's maps (Eq. 6), label-free."""
        return {"box_mass": lambda prediction, images: box_mass_scores(prediction.maps)}


class SiameseWeightMap(WeightMap):
    """Method II: f an embedding trained with triplets; g trained with the inner and outer triplet losses."""

    name = "weightmap-siamese"
    paper = ("Shaharabany & Wolf, Learning a Weight Map for Weakly-Supervised Localization, arXiv:2111.14131 "
             "(method II, Siamese)")

    @dataclass(frozen=True)
    class Hparams(GeneratorHparams):
        margin: float = 1.0  #: the triplet losses' margin (the paper's 1)
        embedding_dim: int = 200  #: the width of f's linear projection (the paper's 200)
        per_class: int = 2  #: images of each class in a batch (an anchor, and its positive)

        def __post_init__(self):
            super().__post_init__()
            if self.margin <= 0 or self.embedding_dim < 1 or self.per_class < 2:
                raise WsolbenchError(f"weightmap-siamese: margin must be > 0, embedding_dim >= 1 and "
                                     f"per_class >= 2, got {self.margin}, {self.embedding_dim}, {self.per_class}")

    def classifier_outputs(self) -> int:
        return self.hparams.embedding_dim

    def build_model(self) -> WeightMapNet:
        model = super().build_model()
        model.centroids = ClassCentroids(self.num_classes, self.hparams.embedding_dim)
        return model

    def phases(self, settings) -> list[Phase]:
        phases = super().phases(settings)
        for phase in phases:
            classes = (phase.batch_size or settings.batch_size) // self.hparams.per_class
            if classes < 2:
                raise WsolbenchError(f"weightmap-siamese: phase {phase.name!r} batches of "
                                     f"{phase.batch_size or settings.batch_size} hold fewer than 2 classes of "
                                     f"{self.hparams.per_class} images; triplets need two")
        return phases

    def batch_sampler(self, dataset, batch_size, generator):
        labels = [dataset.label(index) for index in range(len(dataset))]
        return ClassBalancedBatches(labels, batch_size // self.hparams.per_class, self.hparams.per_class, generator)

    def on_train_epoch_start(self, model, epoch) -> None:
        """Class means restart with every classifier epoch (f moves) and once when f is frozen."""
        if epoch <= self.classifier_epochs + 1:
            unwrap(model).centroids.reset()

    def classifier_step(self, model, images, labels, context) -> StepOutput:
        embeddings = model(images)
        loss = embedding_triplet(embeddings, labels, context.generator, self.hparams.margin)
        unwrap(model).centroids.add(embeddings.detach(), labels)
        return StepOutput(loss, {"triplet": loss.detach()})

    def generator_step(self, model, images, labels, context) -> StepOutput:
        hp = self.hparams
        weighing = model(images, weigh=True, background=True)
        inner, outer = inner_outer(weighing.reference, weighing.foreground, weighing.background, labels,
                                   context.generator, hp.margin)
        regulariser = area(weighing.mask)
        unwrap(model).centroids.add(weighing.reference, labels)
        loss = inner + outer + hp.lam * regulariser
        return StepOutput(loss, {"inner": inner.detach(), "outer": outer.detach(), "area": regulariser.detach()})

    def class_scores(self, model: WeightMapNet, images) -> torch.Tensor:
        return model.centroids.scores(model.classifier(images))


@hookimpl
def wsolbench_register_methods(register):
    register(WeightMap)
    register(SiameseWeightMap)
