"""The :class:`Method` base class that a WSOL method plugin implements.

One method runs per run, so its behaviour is a class, not a pluggy fan-out. The harness owns everything
that must be identical across methods for a fair comparison (data splits and transforms, map resizing and
normalisation, thresholds, metrics, AMP/DDP mechanics, seeding, checkpoint selection on train-fullsup); a
method owns its model, its parameter groups, its training step and how it reads a localization map.

Lifecycle, as the engine calls it::

    method = MethodClass(hparams, backbone=..., num_classes=..., pretrained=..., weights_path=...)
    model = method.build_model()
    optimizer groups = method.param_groups(model, lr)          # lr multipliers differ per method
    method.on_fit_start(model, context)
    for epoch:
        method.on_train_epoch_start(model, epoch)
        for batch:  output = method.training_step(model, batch, context)   # on the training device
        method.on_train_epoch_end(model, epoch)
        evaluation on train-fullsup:  method.predict(model, images, labels) -> Prediction(logits, maps)

A method registers through the ``wsolbench_register_methods(register)`` hook: ``register(MyMethod)``
(the name is ``MyMethod.name``). Unknown hyperparameters are errors; every resolved value goes into the
run record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench.backbones import CamBackbone, create_backbone, param_groups
from wsolbench.errors import WsolbenchError


@dataclass
class StepOutput:
    """What a training step returns: the loss to back-propagate and scalars to log."""

    loss: Tensor
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class StepContext:
    """What a training step may know about the run: position, device, and a seeded generator."""

    epoch: int
    step: int
    device: torch.device
    num_classes: int
    generator: torch.Generator


@dataclass
class Prediction:
    """Class scores (B, C) and raw localization maps (B, h, w) of the ground-truth classes, any scale."""

    logits: Tensor
    maps: Tensor


@dataclass
class NoHparams:
    """A method without hyperparameters of its own."""


class Method:
    """Base class of WSOL methods: plain CAM training unless a subclass says otherwise.

    Subclasses set ``name`` (the registry and leaderboard name), ``paper`` (citation or URL) and, if they
    have hyperparameters, a dataclass ``Hparams`` with the defaults.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Hparams: ClassVar[type] = NoHparams
    #: parameter split of the classifier-ratio learning-rate group: "reference" (wsolevaluation's) or "new_layers"
    lr_split: ClassVar[str] = "reference"

    def __init__(self, hparams: Any = None, *, backbone: str = "resnet18", num_classes: int, pretrained: bool = False,
                 weights_path: str | None = None, large_feature_map: bool = False, classifier_ratio: float = 10.0):
        self.hparams = hparams if hparams is not None else self.Hparams()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.pretrained = pretrained
        self.weights_path = weights_path
        self.large_feature_map = large_feature_map
        self.classifier_ratio = classifier_ratio

    @classmethod
    def make_hparams(cls, values: dict[str, Any]) -> Any:
        """``Hparams`` from a mapping; an unknown key or a value of the wrong type is a one-line error."""
        known = {f.name: f for f in dataclasses.fields(cls.Hparams)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise WsolbenchError(f"method {cls.name!r} has no hyperparameter {unknown[0]!r}; "
                                 f"known: {', '.join(known) or 'none'}")
        defaults = cls.Hparams()
        converted = {}
        for key, value in values.items():
            default = getattr(defaults, key)
            try:
                if isinstance(default, bool):
                    converted[key] = _as_bool(value)
                elif isinstance(default, int):
                    converted[key] = _as_int(value)
                elif isinstance(default, (float, str)):
                    converted[key] = type(default)(value)
                else:
                    converted[key] = value
            except (TypeError, ValueError):
                raise WsolbenchError(f"method {cls.name!r}: hyperparameter {key!r} must be "
                                     f"{type(default).__name__}, got {value!r}") from None
        return dataclasses.replace(defaults, **converted)

    # --- model ---------------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """The network to train; by default the CAM-ready backbone."""
        return create_backbone(self.backbone_name, self.num_classes, pretrained=self.pretrained,
                               weights_path=self.weights_path, large_feature_map=self.large_feature_map)

    def param_groups(self, model: nn.Module, lr: float) -> list[dict]:
        """Optimizer parameter groups; by default base lr and ``lr * classifier_ratio`` (:attr:`lr_split`)."""
        return param_groups(model, lr, self.classifier_ratio, split=self.lr_split)

    # --- training --------------------------------------------------------------------------------------

    def training_step(self, model: nn.Module, batch: dict, context: StepContext) -> StepOutput:
        """One step's loss; by default cross-entropy of the class scores."""
        loss = F.cross_entropy(model(batch["image"]), batch["label"])
        return StepOutput(loss, {"ce": float(loss.detach())})

    def on_fit_start(self, model: nn.Module, context: StepContext) -> None:
        """Called once before the first epoch."""

    def on_train_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called before each training epoch (1-based)."""

    def on_train_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Called after each training epoch (1-based)."""

    def batch_sampler(self, dataset, batch_size: int, seed: int):
        """A batch sampler for the training split, or None for shuffled batches of ``batch_size``."""
        return None

    # --- evaluation ------------------------------------------------------------------------------------

    def predict(self, model: nn.Module, images: Tensor, labels: Tensor) -> Prediction:
        """Class scores and the ground-truth classes' localization maps, in one forward pass."""
        backbone = _backbone_of(model)
        feature_map = backbone.features(images)
        return Prediction(backbone.logits(feature_map), backbone.cam(feature_map, labels))

    def selection_criteria(self) -> dict[str, Callable]:
        """Optional label-free checkpoint-selection criteria, by name (none by default)."""
        return {}


def _backbone_of(model: nn.Module) -> CamBackbone:
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    if not isinstance(inner, CamBackbone):
        raise WsolbenchError(f"{type(inner).__name__} is not a CamBackbone: the method must override predict()")
    return inner


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _as_int(value) -> int:
    """An integer from an int, an integral float (``2.0``) or text (``"2"``); never truncates ``2.5``."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)
