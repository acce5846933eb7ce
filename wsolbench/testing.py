"""Public helpers for testing wsolbench plugins: a tiny generated dataset and a method conformance check.

A method plugin's test can be one line::

    from wsolbench.testing import check_method

    def test_my_method():
        check_method("my_method")                      # the registered name, or the class itself
        check_method(MyMethod, hparams={"p": 1.0})     # other hyperparameters

:func:`check_method` trains for a few steps on the CPU (seconds) through the same data pipeline and
:class:`~wsolbench.method.Method` calls as ``wsolbench run``; wsolbench's own suite runs it over every
registered method. A broken contract is an ``AssertionError`` saying which call broke it and how.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wsolbench.data.datasets import collate, open_dataset, spec_from_layout
from wsolbench.data.synthetic import FOLDERS, PARAMS_FILE, SynthParams, generate
from wsolbench.errors import MethodContractError, WsolbenchError
# METHOD_NAME is re-exported: wsolbench.testing.METHOD_NAME was its documented home
from wsolbench.method import (FULLY_SUPERVISED, METHOD_NAME, Method, Phase, Prediction, StepContext,  # noqa: F401
                              TrainingSettings)



def tiny_dataset(tmp_path: str | os.PathLike, *, variant: str = "boxes", classes: int = 2, per_class: int = 2,
                 image_size: int = 32, seed: int = 0) -> Path:
    """Generate a tiny synthetic dataset (by default 2 classes, 2 images per class and split, 32 px) in a
    folder under ``tmp_path``, and return its root (``metadata/SYNTHETIC/...``, ``dataset/SYNTHETIC/...``;
    ``SYNTHETIC_MASKS`` for ``variant="masks"``). The same arguments return the same folder, generated once.
    """
    params = SynthParams(variant=variant, classes=classes, train_per_class=per_class, val_per_class=per_class,
                         test_per_class=per_class, image_size=image_size, seed=seed)
    root = Path(tmp_path) / f"wsolbench-tiny-{params.digest()}"
    if (root / PARAMS_FILE).is_file():
        return root
    return generate(root, params)


def _method_class(method: str | type[Method]) -> type[Method]:
    if isinstance(method, str):
        from wsolbench.plugins import registry

        return registry("method").get(method)
    if not (isinstance(method, type) and issubclass(method, Method)):
        raise AssertionError(f"check_method needs a registered method name or a Method subclass, got {method!r}")
    return method


def _check_hparams(where: str, method_class: type[Method], hparams: dict[str, Any] | None):
    if not dataclasses.is_dataclass(method_class.Hparams):
        raise AssertionError(f"{where}: Hparams must be a dataclass, got {method_class.Hparams!r}")
    try:
        defaults = method_class.Hparams()
    except TypeError as error:
        raise AssertionError(f"{where}: every field of Hparams needs a default ({error})") from None
    round_trip = method_class.make_hparams(dataclasses.asdict(defaults))
    if round_trip != defaults:
        raise AssertionError(f"{where}: make_hparams(defaults as a mapping) gives {round_trip!r}, not {defaults!r}")
    return method_class.make_hparams(hparams or {})


def _check_param_groups(where: str, model: nn.Module, groups, trains: bool) -> list[nn.Parameter]:
    if not trains and groups == []:  # a method without training (the centre baseline) optimizes nothing
        return []
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise AssertionError(f"{where}: param_groups must return a non-empty list of dicts with 'params'")
    own = {id(p) for p in model.parameters()}
    params = [p for group in groups for p in group["params"]]
    if not params:
        raise AssertionError(f"{where}: param_groups holds no parameter")
    if any(id(p) not in own for p in params):
        raise AssertionError(f"{where}: param_groups holds parameters that are not the model's")
    return params


def _check_step(where: str, loop, earlier_steps: int, output, params: list[nn.Parameter]) -> None:
    """After a training step: its loss is finite and the optimized parameters' gradients are finite and not
    all zero."""
    where = f"{where}, training step {earlier_steps + loop.context.step + 1}"
    if output.loss is not None and not torch.isfinite(output.loss).all():
        raise AssertionError(f"{where}: the loss is {output.loss.item()}, not finite")
    sizes = torch.stack([p.grad.detach().abs().sum() for p in params if p.grad is not None] or [torch.zeros(())])
    if not torch.isfinite(sizes).all():
        raise AssertionError(f"{where}: a parameter gradient is not finite")
    if not (sizes > 0).any():
        raise AssertionError(f"{where}: every gradient of the optimized parameters is zero or missing")


def _check_prediction(where: str, prediction, batch_size: int, num_classes: int) -> None:
    if not isinstance(prediction, Prediction):
        raise AssertionError(f"{where}: predict must return a Prediction, got {type(prediction).__name__}")
    logits, maps = prediction.logits, prediction.maps
    if logits is not None and tuple(logits.shape) != (batch_size, num_classes):
        raise AssertionError(f"{where}: logits have shape {tuple(logits.shape)}, "
                             f"expected ({batch_size}, {num_classes}) or None")
    if maps.dim() != 3 or maps.shape[0] != batch_size or min(maps.shape[1:]) < 2:
        raise AssertionError(f"{where}: maps have shape {tuple(maps.shape)}, "
                             f"expected ({batch_size}, h, w) with h, w > 1")
    for name, tensor in (("logits", logits), ("maps", maps)):
        if tensor is not None and not torch.isfinite(tensor).all():
            raise AssertionError(f"{where}: {name} are not all finite")


def _check_criteria(where: str, criteria, prediction: Prediction, images: torch.Tensor) -> None:
    if not isinstance(criteria, dict):
        raise AssertionError(f"{where}: selection_criteria must return a dict, got {type(criteria).__name__}")
    for name, criterion in criteria.items():
        values = criterion(prediction, images)
        if not isinstance(values, torch.Tensor) or values.shape != (len(images),):
            raise AssertionError(f"{where}: criterion {name!r} must give one value per image, shape "
                                 f"({len(images)},), got {getattr(values, 'shape', values)!r}")
        if not torch.isfinite(values).all():
            raise AssertionError(f"{where}: criterion {name!r} gives values that are not finite")


def _check_state_round_trip(where: str, instance: Method) -> None:
    state = instance.state_dict()
    if not isinstance(state, dict):
        raise AssertionError(f"{where}: state_dict must return a dict, got {type(state).__name__}")
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
    except Exception as error:  # noqa: BLE001 - any failure to save is the contract broken
        raise AssertionError(f"{where}: state_dict cannot be saved with torch.save ({error})") from None
    buffer.seek(0)
    try:
        restored = torch.load(buffer, weights_only=True)
    except Exception as error:  # noqa: BLE001 - what a resumed run cannot read back
        raise AssertionError(f"{where}: state_dict holds objects that checkpoints do not load (they are read "
                             f"with torch.load(weights_only=True): tensors and plain Python values only): "
                             f"{' '.join(str(error).split())[:200]}") from None
    instance.load_state_dict(restored)


def check_method(method: str | type[Method], backbone: str = "resnet18", steps: int = 2, *,
                 hparams: dict[str, Any] | None = None, classes: int = 2, image_size: int = 32,
                 lr: float = 0.01, seed: int = 0) -> None:
    """Check that a method trains and predicts as the harness expects; raise AssertionError if not.

    ``method`` is a registered name or a :class:`Method` subclass; ``hparams`` overrides its defaults.
    On a tiny synthetic dataset (``classes`` classes, 2 images each per split, ``image_size`` px), on the
    CPU, with the backbone untrained, through the engine's own training loop
    (:class:`wsolbench.engine.loop.TrainingLoop`): the method's name and ``Hparams`` are valid (every field
    has a default and survives ``make_hparams``); ``build_model`` gives a module, ``param_groups`` a list of
    groups of its parameters, ``optimizers`` named optimizers with schedules and ``phases`` a list of
    phases (a method whose phases train no epoch may optimize nothing: no groups, no optimizers); then every
    phase in order (each for one epoch of at most ``steps`` steps, batches of the whole training split, or
    of the validation split's localization-labelled items for ``training_split = "train-fullsup"``, unless
    the method has its own ``batch_sampler``, drawn from a generator and told the epoch) runs ``on_phase_start``, ``on_train_epoch_start``, ``training_step`` (automatic or the method's
    own updates) and ``on_train_epoch_end``, each step with a finite loss and finite gradients, not all
    zero; then ``predict`` on a validation batch gives logits ``(B, classes)`` (or None) and finite maps
    ``(B, h, w)``, h, w > 1, every selection criterion one finite value per image, and ``state_dict`` survives
    ``torch.save`` and ``load_state_dict``. The global torch random state is left as it was.
    """
    from wsolbench.engine.distributed import Processes
    from wsolbench.engine.loop import TrainingLoop, phase_loader

    method_class = _method_class(method)
    where = f"method {method_class.name!r} ({method_class.__module__}.{method_class.__qualname__})"
    if not isinstance(method_class.name, str) or not METHOD_NAME.fullmatch(method_class.name):
        raise AssertionError(f"{where}: name must match {METHOD_NAME.pattern}")
    resolved = _check_hparams(where, method_class, hparams)
    with tempfile.TemporaryDirectory(prefix="wsolbench-check-") as tmp, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        root = tiny_dataset(tmp, classes=classes, image_size=image_size, seed=seed)
        spec = spec_from_layout(root, FOLDERS["boxes"])
        if method_class.training_split == FULLY_SUPERVISED:  # trains on localization-labelled items
            train_set = open_dataset(spec, root, "val", train=False, image_size=image_size)
        else:
            train_set = open_dataset(spec, root, "train", image_size=image_size)
        instance = method_class(resolved, backbone=backbone, num_classes=classes, pretrained=False)
        model = instance.build_model()
        if not isinstance(model, nn.Module):
            raise AssertionError(f"{where}: build_model must return an nn.Module, got {type(model).__name__}")
        # the protocol's default length (wsolevaluation's 40 epochs), so that phases() can split it as it would
        settings = TrainingSettings(epochs=40, batch_size=len(train_set), lr=lr)
        phases = instance.phases(settings)
        if not isinstance(phases, list) or not phases or not all(isinstance(p, Phase) for p in phases):
            raise AssertionError(f"{where}: phases must return a non-empty list of Phase")
        params = _check_param_groups(f"{where}: param_groups", model, instance.param_groups(model, lr),
                                     trains=any(phase.epochs for phase in phases))
        processes = Processes(0, 1, torch.device("cpu"))
        context = StepContext(epoch=0, step=0, device=processes.device, num_classes=classes,
                              generator=torch.Generator().manual_seed(seed))
        try:
            loop = TrainingLoop(instance, model, instance.optimizers(model, settings), processes, context=context)
            instance.on_fit_start(model, context)
            sampler_generator = torch.Generator().manual_seed(seed)
            epoch = 0
            for phase in (phase for phase in phases if phase.epochs):
                step_where = f"{where}: phase {phase.name!r}"
                loader, sampler = phase_loader(instance, train_set, phase.batch_size or settings.batch_size,
                                               processes, seed=seed, sampler_generator=sampler_generator,
                                               cache="off", num_workers=0)
                loop.start_phase(phase)
                done = 0
                while done < steps:  # epochs of the phase until it made `steps` steps
                    epoch += 1
                    if hasattr(sampler, "set_epoch"):
                        sampler.set_epoch(epoch)
                    try:
                        result = loop.train_epoch(
                            loader, epoch, max_steps=steps - done,
                            after_step=lambda output, w=step_where: _check_step(w, loop, done, output, params))
                    except MethodContractError as error:
                        raise AssertionError(f"{step_where}, training step {done + loop.context.step + 1}: "
                                             f"{error}") from None
                    if not result.steps:
                        raise AssertionError(f"{step_where}: the training loader gives no batch (see batch_sampler)")
                    done += result.steps
        except (MethodContractError, WsolbenchError) as error:
            raise AssertionError(f"{where}: {error}") from None

        model.eval()
        val_set = open_dataset(spec, root, "val", image_size=image_size)
        evaluation = collate([val_set[index] for index in range(len(val_set))])
        with torch.no_grad():
            prediction = instance.predict(model, evaluation["image"], evaluation["label"])
            _check_prediction(f"{where}: predict", prediction, len(evaluation["label"]), classes)
            _check_criteria(f"{where}: selection_criteria", instance.selection_criteria(), prediction,
                            evaluation["image"])
        _check_state_round_trip(f"{where}: state_dict", instance)
