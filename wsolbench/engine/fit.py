"""The training run: train on train-weaksup, select on train-fullsup, test once.

:func:`run` follows wsolevaluation's protocol. Train-fullsup is evaluated before training (epoch 0) and
after every epoch; the checkpoint to test is the last one or the best by the protocol's selection metric
(ties keep the earliest epoch); the test split is evaluated exactly once, on that checkpoint. SGD with the
method's parameter groups; every learning rate is multiplied by ``lr_decay_factor`` (0.1) before each epoch
``e`` (1-based) with ``e % lr_decay_frequency == 0``. On CUDA: AMP (bf16 where supported, else fp16 with a gradient scaler) and
channels_last; optionally ``torch.compile``. Under ``torchrun`` the model is wrapped in
DistributedDataParallel and every split is sharded so that no image is counted twice.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from wsolbench.data.datasets import open_dataset, resolve_spec
from wsolbench.data.pipeline import make_loader
from wsolbench.engine import checkpoint
from wsolbench.engine.distributed import Processes, barrier, start, stop, sum_across
from wsolbench.engine.evaluation import evaluate_model, selection_score
from wsolbench.errors import WsolbenchError
from wsolbench.method import StepContext
from wsolbench.plugins import plugins, registry
from wsolbench.protocol import RunConfig
from wsolbench.results import new_record, write_record


@dataclass
class RunInfo:
    """What observer hooks learn about a run."""

    config: RunConfig
    out_dir: Path
    device: str
    world_size: int
    loggers: tuple[str, ...] = ()  #: observer plugins asked for with ``--log`` (e.g. "tensorboard")


@dataclass(frozen=True)
class Acceleration:
    """GPU mechanics: ``amp`` / ``channels_last`` are ``auto`` (on for CUDA), ``on`` or ``off``."""

    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False

    def resolve(self, device: torch.device) -> tuple[torch.dtype | None, bool]:
        """The autocast dtype (None: full precision) and whether to use channels_last on ``device``."""
        for name, value in (("amp", self.amp), ("channels_last", self.channels_last)):
            if value not in ("auto", "on", "off"):
                raise WsolbenchError(f"{name} must be auto, on or off, got {value!r}")
        cuda = device.type == "cuda"
        dtype = None
        if self.amp == "on" or (self.amp == "auto" and cuda):
            dtype = torch.bfloat16 if not cuda or torch.cuda.is_bf16_supported() else torch.float16
        return dtype, self.channels_last == "on" or (self.channels_last == "auto" and cuda)


def _set_learning_rates(optimizer: torch.optim.Optimizer, epoch: int, frequency: int, factor: float) -> None:
    """wsolevaluation's step schedule: ``lr = initial_lr * factor ** (epoch // frequency)`` for epoch >= 1."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor ** (epoch // frequency)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DistributedDataParallel


def run(config: RunConfig, *, out_dir: str | Path, root: str | Path | None = None, device: str = "auto",
        seed: int = 0, resume: bool = False, weights_path: str | None = None,
        acceleration: Acceleration = Acceleration(), argv: list[str] | None = None, loggers=()) -> dict:
    """Train, select and test as :mod:`this module <wsolbench.engine.fit>` describes; return the run record.

    The record is written atomically to ``<out_dir>/record.json`` (by rank 0) only once the test split was
    evaluated; checkpoints go to ``<out_dir>/checkpoints/``. ``resume`` continues from ``last.pt``.
    """
    out_dir = Path(out_dir)
    checkpoints = out_dir / "checkpoints"
    processes = start(device)
    try:
        return _run(config, out_dir, checkpoints, root, processes, seed, resume, weights_path, acceleration,
                    argv or sys.argv, tuple(loggers))
    finally:
        stop(processes)


def _run(config, out_dir, checkpoints, root, processes: Processes, seed, resume, weights_path, acceleration, argv,
         loggers):
    started = time.perf_counter()
    if not resume and processes.is_main and (out_dir / "record.json").exists():
        raise WsolbenchError(f"{out_dir / 'record.json'} exists: choose another --out, or --resume to finish it")
    checkpoint.seed_everything(seed)
    spec = resolve_spec(config.dataset, root)
    names = {"train": config.train_split, "val": config.val_split, "test": config.test_split}
    splits = {role: open_dataset(spec, root, name, train=role == "train", image_size=config.image_size)
              for role, name in names.items()}
    method_class = registry("method").get(config.method)
    method = method_class(method_class.make_hparams(config.hparams), backbone=config.backbone,
                          num_classes=spec.num_classes, pretrained=config.pretrained, weights_path=weights_path,
                          large_feature_map=config.large_feature_map, classifier_ratio=config.classifier_ratio)

    if config.batch_size % processes.world_size:
        raise WsolbenchError(f"batch_size {config.batch_size} is not divisible by the {processes.world_size} processes")
    shard = {"rank": processes.rank, "world_size": processes.world_size, "device": processes.device}
    per_process_batch = config.batch_size // processes.world_size
    batch_sampler = method.batch_sampler(splits["train"], config.batch_size, seed)  # global batches, sharded
    train_loader = make_loader(splits["train"], per_process_batch, seed=seed, shuffle=True, drop_last=True,
                               batch_sampler=batch_sampler, **shard)
    eval_loaders = {split: make_loader(splits[split], per_process_batch, seed=seed, shuffle=False, **shard)
                    for split in ("val", "test")}

    autocast_dtype, channels_last = acceleration.resolve(processes.device)
    autocast = (functools.partial(torch.autocast, device_type=processes.device.type, dtype=autocast_dtype)
                if autocast_dtype is not None else contextlib.nullcontext)
    model = method.build_model().to(processes.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(method.param_groups(model, config.lr), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.nesterov)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    scaler = torch.amp.GradScaler(processes.device.type, enabled=autocast_dtype == torch.float16)
    trained = model
    if processes.distributed:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[processes.device.index] if processes.device.type == "cuda" else None)
    if acceleration.compile:
        trained = torch.compile(trained)

    history, best, first_epoch = [], None, 1
    if resume:
        state = checkpoint.load(checkpoints / checkpoint.LAST)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        history, best, first_epoch = state["history"], state["best"], state["epoch"] + 1
    elif processes.is_main and checkpoints.exists():
        shutil.rmtree(checkpoints)

    info = RunInfo(config, out_dir, str(processes.device), processes.world_size, loggers)
    hooks = plugins().manager.hook
    if processes.is_main:
        hooks.wsolbench_run_start(run=info)

    def evaluate(split, description):
        return evaluate_model(method, trained, eval_loaders[split], metadata_dir=splits[split].metadata.folder,
                              annotation=spec.annotation, cam_curve_interval=config.cam_curve_interval,
                              iou_thresholds=config.iou_thresholds, processes=processes, autocast=autocast,
                              description=description)

    def consider(epoch, scores):
        nonlocal best
        value = selection_score(scores, config.selection_metric)
        if best is None or value > best["score"]:
            best = {"epoch": epoch, "score": value}
            if processes.is_main:
                checkpoint.save(checkpoints / checkpoint.BEST, {"epoch": epoch, "model": model.state_dict()})
        if processes.is_main:
            hooks.wsolbench_epoch_end(run=info, epoch=epoch, scores=scores)

    if first_epoch == 1 and config.evaluate_epoch0:
        scores = evaluate("val", "epoch 0 train-fullsup")
        history.append({"epoch": 0, **scores})
        consider(0, scores)
    generator = torch.Generator().manual_seed(seed + 1_000_003 * processes.rank)
    context = StepContext(epoch=0, step=0, device=processes.device, num_classes=spec.num_classes, generator=generator)
    generators = {"loader": train_loader.generator, "method": generator}
    if resume:
        checkpoint.restore_random_states(state["random"], generators)
    if first_epoch == 1:
        method.on_fit_start(trained, context)
    for epoch in range(first_epoch, config.epochs + 1):
        _set_learning_rates(optimizer, epoch, config.lr_decay_frequency, config.lr_decay_factor)
        method.on_train_epoch_start(trained, epoch)
        loss_sum = _train_epoch(method, trained, train_loader, optimizer, scaler, autocast, channels_last, context,
                                epoch, processes)
        method.on_train_epoch_end(trained, epoch)
        scores = evaluate("val", f"epoch {epoch} train-fullsup")
        scores["loss"] = loss_sum
        history.append({"epoch": epoch, **scores})
        consider(epoch, scores)
        if processes.is_main:
            checkpoint.save(checkpoints / checkpoint.LAST, {
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "history": history, "best": best,
                "random": checkpoint.random_states(generators)})
        barrier(processes)

    selected = {"epoch": config.epochs, "criterion": "last"}
    if config.eval_checkpoint == "best":
        selected = {"epoch": best["epoch"], "criterion": f"best {config.selection_metric} on train-fullsup"}
        model.load_state_dict(checkpoint.load(checkpoints / checkpoint.BEST)["model"])
    selected_scores = next(h for h in history if h["epoch"] == selected["epoch"])
    if processes.is_main:
        hooks.wsolbench_checkpoint_selected(run=info, epoch=selected["epoch"], scores=selected_scores)
    test_scores = evaluate("test", "test")

    record = new_record(config, seed, argv)
    record.update(selected=selected, history=history, wall_time_s=time.perf_counter() - started,
                  scores={"train_fullsup": {k: v for k, v in selected_scores.items() if k != "epoch"},
                          "test": test_scores},
                  acceleration={"amp": str(autocast_dtype).replace("torch.", "") if autocast_dtype else "off",
                                "channels_last": channels_last, "compile": acceleration.compile,
                                "world_size": processes.world_size, "device": str(processes.device)})
    if processes.is_main:
        write_record(out_dir / "record.json", record)
        hooks.wsolbench_run_finish(run=info, record=record)
    return record


def _train_epoch(method, model, loader, optimizer, scaler, autocast, channels_last, context, epoch, processes) -> float:
    """One epoch of training; returns the mean loss over all processes' steps."""
    model.train()
    totals = torch.zeros(2, dtype=torch.float64)
    progress = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=None if processes.is_main else True)
    for step, batch in enumerate(progress):
        if channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        context.epoch, context.step = epoch, step
        with autocast():
            output = method.training_step(model, batch, context)
        loss = output.loss
        if not torch.isfinite(loss):
            raise WsolbenchError(f"epoch {epoch}, step {step}: the loss is {float(loss)}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        totals += torch.tensor([float(loss.detach()), 1.0], dtype=torch.float64)
        progress.set_postfix(loss=f"{float(loss.detach()):.4f}", **{k: f"{v:.4f}" for k, v in output.logs.items()})
    loss_sum, steps = sum_across(totals, processes).tolist()
    return loss_sum / steps if steps else math.nan
