"""The :class:`Method` base class that a WSOL method plugin implements, and what the harness hands it.

One method runs per run, so its behaviour is a class, not a pluggy fan-out. The harness owns everything
that must be identical across methods for a fair comparison (data splits and transforms, map resizing and
normalisation, thresholds, metrics, AMP/DDP mechanics, seeding, checkpoint selection on train-fullsup); a
method owns its model, its optimizers and phases, its training step and how it reads a localization map.

Lifecycle, as the engine calls it (docs/hooks.md draws it in full)::

    method = MethodClass(hparams, backbone=..., num_classes=..., pretrained=..., weights_path=...)
    model = method.build_model()
    optimizers = method.optimizers(model, settings)   # default: SGD over param_groups, protocol schedule
    phases = method.phases(settings)                  # default: one phase of settings.epochs
    method.on_fit_start(model, context)
    for phase:  method.on_phase_start(model, phase, context)
        for epoch of the phase:
            method.on_train_epoch_start(model, epoch)
            for batch:  output = method.training_step(model, batch, context)
            method.on_train_epoch_end(model, epoch)
            evaluation on train-fullsup:  method.predict(model, images, labels) -> Prediction(logits, maps)
                                          and every method.selection_criteria() on those predictions

A method registers through the ``wsolbench_register_methods(register)`` hook: ``register(MyMethod)``
(the name is ``MyMethod.name``). Unknown hyperparameters are errors; every resolved value goes into the
run record.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench.backbones import CamBackbone, create_backbone, param_groups
from wsolbench.errors import WsolbenchError
from wsolbench.optim import Optimization, protocol_schedule, protocol_sgd

#: the name of the optimizer that :meth:`Method.optimizers` builds by default
MAIN = "main"
#: what a method name (and an extra map's) must look like: it names runs, records, files and leaderboard rows
METHOD_NAME = re.compile(r"[a-z][a-z0-9_-]*")
#: what :attr:`Method.training_split` may be
WEAKLY_SUPERVISED, FULLY_SUPERVISED = "train-weaksup", "train-fullsup"


@dataclass
class StepOutput:
    """What a training step returns: the loss to back-propagate (automatic optimization; ``None`` is allowed
    for a method that steps itself) and scalars to log, floats or one-element tensors (tensors are averaged
    on the device, so logging never waits for the GPU)."""

    loss: Tensor | None
    logs: dict[str, float | Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSettings:
    """The protocol's training values a method builds its optimizers and phases from."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    lr_decay_frequency: int = 30
    lr_decay_factor: float = 0.1
    lr_decay_points: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, config) -> "TrainingSettings":
        """The settings of a resolved :class:`~wsolbench.protocol.RunConfig`."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Phase:
    """A stretch of training: ``epochs`` epochs stepping the named ``optimizers``, batches of ``batch_size``
    (None: the protocol's), and whether the checkpoints of its epochs may be selected for testing."""

    name: str
    epochs: int
    optimizers: tuple[str, ...] = (MAIN,)
    batch_size: int | None = None
    selectable: bool = True


@dataclass
class StepContext:
    """What a training step may know and use.

    ``epoch`` (1-based, counted over all phases), ``step`` (in the epoch), ``device``, ``num_classes``,
    ``generator`` (a seeded CPU ``torch.Generator`` for the method's own draws, checkpointed), ``phase``
    (its name) and ``module``, the model :meth:`Method.build_model` returned, unwrapped from
    DistributedDataParallel and ``torch.compile`` (read its modules there; run forward passes through the
    ``model`` argument of the step, which keeps DDP's gradient synchronisation). For methods that drive
    their own updates (``automatic_optimization = False``): :meth:`backward`, :meth:`optimizer_step`,
    :meth:`zero_grad` and :meth:`optimizer`, through which AMP loss scaling, DDP and checkpointed optimizer
    states stay the harness's.
    """

    epoch: int
    step: int
    device: torch.device
    num_classes: int
    generator: torch.Generator
    phase: str = ""
    module: nn.Module | None = None
    _loop: Any = field(default=None, repr=False)

    def backward(self, loss: Tensor) -> None:
        """Back-propagate ``loss`` (scaled under fp16 AMP)."""
        self._require_loop().backward(loss)

    def optimizer_step(self, name: str = MAIN) -> None:
        """Step the optimizer ``name`` (unscaling and skipping non-finite steps under fp16 AMP)."""
        self._require_loop().step(name)

    def zero_grad(self, name: str | None = None, set_to_none: bool = True) -> None:
        """Clear the gradients of optimizer ``name``'s parameters (None: of every optimizer of the phase)."""
        self._require_loop().zero_grad(name, set_to_none)

    def optimizer(self, name: str = MAIN) -> torch.optim.Optimizer:
        """The optimizer ``name`` (for reading its groups; step it with :meth:`step`)."""
        return self._require_loop().optimizer(name)

    def _require_loop(self):
        if self._loop is None:
            raise WsolbenchError("this StepContext is not attached to a training loop")
        return self._loop


@dataclass
class Prediction:
    """Class scores (B, C) and raw localization maps (B, h, w) of the ground-truth classes, any scale.

    ``logits`` is None for a localiser without a classifier (the centre and few-shot baselines): the
    classification scores (Top-1/Top-5 Cls) and the Loc accuracies that need a predicted class (Top-1/Top-5
    Loc) are then absent from its scores; GT-known Loc, MaxBoxAcc, MaxBoxAccV2 and PxAP need none."""

    logits: Tensor | None
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
    #: True: the harness back-propagates ``StepOutput.loss`` and steps the phase's optimizers after every
    #: training step; False: the step drives ``context.backward`` / ``optimizer_step`` / ``zero_grad``
    automatic_optimization: ClassVar[bool] = True
    #: passed to DistributedDataParallel: True when some parameters get no gradient in some steps
    #: (frozen parts, a second update of part of the model)
    find_unused_parameters: ClassVar[bool] = False
    #: the split the method learns from. ``"train-weaksup"``: image labels only, every WSOL method.
    #: ``"train-fullsup"``: a fully supervised reference point (the few-shot baseline): the harness holds out
    #: :attr:`holdout_per_class` images of each class of train-fullsup for checkpoint selection, trains on
    #: ``num_val_sample_per_class`` of the others (0: all), whose batches come as evaluation gives them
    #: (resized, normalised, not augmented, with ``boxes`` or ``mask``), and records that the run used
    #: localization labels (``training_data`` in the record)
    training_split: ClassVar[str] = WEAKLY_SUPERVISED
    #: with ``training_split = "train-fullsup"``: images per class kept out of training to select on
    holdout_per_class: int = 1

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

    # --- model and optimization ------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """The network to train; by default the CAM-ready backbone."""
        return create_backbone(self.backbone_name, self.num_classes, pretrained=self.pretrained,
                               weights_path=self.weights_path, large_feature_map=self.large_feature_map)

    def param_groups(self, model: nn.Module, lr: float) -> list[dict]:
        """Optimizer parameter groups; by default base lr and ``lr * classifier_ratio`` (:attr:`lr_split`)."""
        return param_groups(model, lr, self.classifier_ratio, split=self.lr_split)

    def optimizers(self, model: nn.Module, settings: TrainingSettings) -> dict[str, Optimization]:
        """The named optimizers with their schedules; by default ``{"main": ...}``: the protocol's SGD over
        :meth:`param_groups` and its schedule (step decay, or MultiStep at ``lr_decay_points``)."""
        groups = self.param_groups(model, settings.lr)
        return {MAIN: Optimization(protocol_sgd(groups, settings), protocol_schedule(settings))}

    def phases(self, settings: TrainingSettings) -> list[Phase]:
        """The ordered phases of training; by default one phase ``train`` of ``settings.epochs`` epochs."""
        return [Phase("train", settings.epochs)]

    # --- training --------------------------------------------------------------------------------------

    def training_step(self, model: nn.Module, batch: dict, context: StepContext) -> StepOutput:
        """One step's loss; by default cross-entropy of the class scores."""
        loss = F.cross_entropy(model(batch["image"]), batch["label"])
        return StepOutput(loss, {"ce": loss.detach()})

    def on_fit_start(self, model: nn.Module, context: StepContext) -> None:
        """Called once before the first epoch (not again when a run resumes)."""

    def on_phase_start(self, model: nn.Module, phase: Phase, context: StepContext) -> None:
        """Called before a phase's first epoch, and again when a run resumes inside that phase (so keep it to
        set-up that may run twice: freezing, modes). ``model`` is the unwrapped model; the harness wraps it
        for DDP and compiles it after this call, so ``requires_grad`` may change here."""

    def on_train_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called before each training epoch (1-based)."""

    def on_train_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Called after each training epoch (1-based)."""

    def batch_sampler(self, dataset, batch_size: int, generator: torch.Generator):
        """A batch sampler for the training split, or None for shuffled batches of ``batch_size``.

        Draw from ``generator`` (checkpointed by the harness) inside ``__iter__``; a sampler with a
        ``set_epoch(epoch)`` method is told the epoch before each one. Called at each phase's start (and on
        resume) with the phase's batch size. (An override whose third parameter is named ``seed`` gets the
        run's seed instead: the old form, deprecated.)
        """
        return None

    def state_dict(self) -> dict:
        """What the method owns beyond the model and its optimizers, for an exact resume (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s result on resume."""

    # --- evaluation ------------------------------------------------------------------------------------

    def predict(self, model: nn.Module, images: Tensor, labels: Tensor) -> Prediction:
        """Class scores and the ground-truth classes' localization maps, in one forward pass. ``model`` is the
        model :meth:`build_model` returned (never a DDP or compiled wrapper)."""
        backbone = _backbone_of(model)
        feature_map = backbone.features(images)
        return Prediction(backbone.logits(feature_map), backbone.cam(feature_map, labels))

    def extra_maps(self, model: nn.Module, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Named maps besides the localization map, for a report to draw (align's norm and similarity maps):
        ``{name: (B, h, w) raw maps}``, names as method names (``[a-z][a-z0-9_-]*``). Called like
        :meth:`predict`, only on the test split of a run that keeps its score maps (``--save-scoremaps``),
        which saves each as its own folder of maps, normalised as the localization map is. Default: none."""
        return {}

    def selection_criteria(self) -> dict[str, Callable[[Prediction, Tensor], Tensor]]:
        """Label-free checkpoint-selection criteria, by name (none by default).

        ``criterion(prediction, images) -> (B,)`` scores each image of a train-fullsup batch from this
        method's :meth:`predict` output alone (no boxes, no masks); the criterion's value at an epoch is
        the mean over the split, higher is better. Every criterion is recorded at every evaluation;
        ``--set selection=<name> eval_checkpoint=best`` selects by one.
        """
        return {}


def _backbone_of(model: nn.Module) -> CamBackbone:
    inner = unwrap(model)
    if not isinstance(inner, CamBackbone):
        raise WsolbenchError(f"{type(inner).__name__} is not a CamBackbone: the method must override predict()")
    return inner


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``torch.compile`` and DistributedDataParallel wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


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
