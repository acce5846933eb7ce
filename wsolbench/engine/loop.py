"""The training loop: a method's optimizers, the AMP scaler, DDP and compile wrapping, and the step.

:class:`TrainingLoop` trains one epoch at a time within a :class:`~wsolbench.method.Phase`. With automatic
optimization a step is ``zero_grad`` of the phase's optimizers, ``training_step`` under autocast, backward
of ``StepOutput.loss`` and a step of each of the phase's optimizers; otherwise the method's step drives
``context.backward`` / ``optimizer_step`` / ``zero_grad`` itself, through the same scaler. Before each epoch every
optimizer of the phase counts one more epoch and its groups get ``lr = initial_lr * schedule.multiplier(n)``
(:mod:`wsolbench.optim`). At a phase's start the model is wrapped again (DistributedDataParallel under
torchrun, then ``torch.compile`` when asked), after :meth:`~wsolbench.method.Method.on_phase_start`, so a
phase may freeze parameters. Losses and ``StepOutput.logs`` are summed on the device and read once per
epoch (no host synchronisation per step on CUDA), then averaged over every process's steps.

:func:`phase_loader` builds a phase's training loader (the method's batch sampler or shuffled batches);
the engine and :func:`wsolbench.testing.check_method` both train through this module.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from wsolbench.data.pipeline import make_loader
from wsolbench.engine.distributed import Processes, sum_across
from wsolbench.errors import MethodContractError, WsolbenchError
from wsolbench.method import Method, Phase, StepContext, StepOutput
from wsolbench.optim import Optimization


@dataclass
class EpochResult:
    """The epoch's mean loss over all processes' steps (None: no step returned one) and mean logs."""

    loss: float | None
    logs: dict[str, float]
    steps: int


def _method_batch_sampler(method: Method, dataset, batch_size: int, generator: torch.Generator, seed: int):
    """``method.batch_sampler(dataset, batch_size, generator)``; an override written for the old form
    ``batch_sampler(dataset, batch_size, seed)`` gets the seed, with a DeprecationWarning."""
    parameters = list(inspect.signature(method.batch_sampler).parameters)
    if len(parameters) >= 3 and parameters[2] == "seed":
        warnings.warn(f"method {method.name!r}: batch_sampler(dataset, batch_size, seed) is deprecated; take a "
                      "generator instead (batch_sampler(dataset, batch_size, generator)) so that --resume "
                      "continues the batch order", DeprecationWarning, stacklevel=2)
        return method.batch_sampler(dataset, batch_size, seed)
    return method.batch_sampler(dataset, batch_size, generator)


def per_process_batch(batch_size: int, processes: Processes, where: str = "batch_size") -> int:
    """Each process's share of a global batch; a size the processes cannot share evenly is an error."""
    if batch_size % processes.world_size:
        raise WsolbenchError(f"{where} {batch_size} is not divisible by the {processes.world_size} processes")
    return batch_size // processes.world_size


def phase_loader(method: Method, dataset, batch_size: int, processes: Processes, *, seed: int,
                 sampler_generator: torch.Generator, **loader_options):
    """The training loader of a phase with global batches of ``batch_size`` (each process takes its part):
    the method's batch sampler, or shuffled batches (``drop_last=False``, as the reference trains).
    Returns ``(loader, batch_sampler or None)``."""
    per_process = per_process_batch(batch_size, processes)
    sampler = _method_batch_sampler(method, dataset, batch_size, sampler_generator, seed)
    loader = make_loader(dataset, per_process, device=processes.device, seed=seed,
                         shuffle=True, drop_last=False, batch_sampler=sampler, rank=processes.rank,
                         world_size=processes.world_size, **loader_options)
    return loader, sampler


class TrainingLoop:
    """Trains ``model`` (the unwrapped module, on ``processes.device``) with ``method``'s step."""

    def __init__(self, method: Method, model: nn.Module, optimizations: dict[str, Optimization],
                 processes: Processes, *, context: StepContext, autocast_dtype: torch.dtype | None = None,
                 channels_last: bool = False, compile: bool = False):
        if not isinstance(optimizations, dict) or not all(isinstance(o, Optimization) for o in optimizations.values()):
            raise MethodContractError(f"method {method.name!r}: optimizers() must return a dict of "
                                      f"name -> wsolbench.optim.Optimization, got {optimizations!r:.80}")
        self.method, self.model, self.optimizations, self.processes = method, model, optimizations, processes
        self.autocast_dtype, self.channels_last, self.compile = autocast_dtype, channels_last, compile
        self.epochs_trained = {name: 0 for name in optimizations}
        for optimization in optimizations.values():
            for group in optimization.optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.scaler = torch.amp.GradScaler(processes.device.type, enabled=autocast_dtype == torch.float16)
        self.context = context
        context.module, context._loop = model, self
        self.trained: nn.Module = model
        self.phase: Phase | None = None
        self._stepped: set[str] = set()

    # --- what StepContext forwards to ------------------------------------------------------------------

    def optimizer(self, name: str) -> torch.optim.Optimizer:
        if name not in self.optimizations:
            raise MethodContractError(f"method {self.method.name!r}: no optimizer {name!r}; "
                                      f"optimizers: {', '.join(self.optimizations)}")
        return self.optimizations[name].optimizer

    def backward(self, loss: Tensor) -> None:
        """Back-propagate ``loss``, outside autocast; a scale update owed by earlier steps happens first, so
        these gradients are scaled and unscaled by the same factor."""
        self._update_scale()
        with torch.autocast(self.processes.device.type, enabled=False):
            self.scaler.scale(loss.reshape(())).backward()

    def step(self, name: str) -> None:
        if name in self._stepped:
            self._update_scale()
        self.scaler.step(self.optimizer(name))
        self._stepped.add(name)

    def zero_grad(self, name: str | None = None, set_to_none: bool = True) -> None:
        for each in (self._phase_optimizers() if name is None else (name,)):
            self.optimizer(each).zero_grad(set_to_none=set_to_none)

    def _update_scale(self) -> None:
        if self._stepped:
            self.scaler.update()
            self._stepped.clear()

    def _phase_optimizers(self) -> tuple[str, ...]:
        return self.phase.optimizers if self.phase is not None else tuple(self.optimizations)

    # --- phases and epochs -----------------------------------------------------------------------------

    def start_phase(self, phase: Phase) -> None:
        """Enter ``phase``: the method's ``on_phase_start``, then the model wrapped for DDP and compile."""
        unknown = [name for name in phase.optimizers if name not in self.optimizations]
        if unknown:
            raise MethodContractError(f"method {self.method.name!r}: phase {phase.name!r} steps optimizer "
                                      f"{unknown[0]!r}; optimizers: {', '.join(self.optimizations)}")
        self.phase = phase
        self.context.phase = phase.name
        self.method.on_phase_start(self.model, phase, self.context)
        trained = self.model
        if self.processes.distributed:
            device_ids = [self.processes.device.index] if self.processes.device.type == "cuda" else None
            trained = nn.parallel.DistributedDataParallel(
                self.model, device_ids=device_ids, find_unused_parameters=self.method.find_unused_parameters)
        if self.compile:
            trained = torch.compile(trained)
        self.trained = trained

    def _set_learning_rates(self) -> None:
        for name in self.phase.optimizers:
            self.epochs_trained[name] += 1
            optimization = self.optimizations[name]
            multiplier = optimization.schedule.multiplier(self.epochs_trained[name])
            for group in optimization.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * multiplier

    def train_epoch(self, loader, epoch: int, *, max_steps: int | None = None, after_step=None) -> EpochResult:
        """Train one epoch (1-based ``epoch``) of the current phase on ``loader``'s batches (at most
        ``max_steps``); ``after_step(output)`` is called after each step (the conformance check uses it)."""
        if self.phase is None:
            raise WsolbenchError("train_epoch before start_phase")
        self._set_learning_rates()
        self.method.on_train_epoch_start(self.trained, epoch)
        self.trained.train()
        device = self.processes.device
        autocast = (functools.partial(torch.autocast, device_type=device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        bad_losses = torch.zeros((), dtype=torch.float64, device=device)
        losses = 0
        logs: dict[str, list] = {}  # name -> [device sum, host sum, count]
        self.context.epoch = epoch
        progress = tqdm(loader, desc=f"epoch {epoch} ({self.phase.name})", leave=False,
                        disable=None if self.processes.is_main else True)
        steps = 0
        for step, batch in enumerate(progress):
            if max_steps is not None and step >= max_steps:
                break
            if self.channels_last:
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            self.context.step = step
            output = self._step(batch, autocast)
            if output.loss is not None:
                loss = output.loss.detach().reshape(()).to(torch.float64)
                finite = torch.isfinite(loss)
                loss_sum += torch.where(finite, loss, 0.0)
                bad_losses += (~finite).to(torch.float64)
                losses += 1
            for name, value in output.logs.items():
                entry = logs.setdefault(name, [torch.zeros((), dtype=torch.float64, device=device), 0.0, 0])
                if isinstance(value, Tensor):
                    entry[0] += value.detach().reshape(()).to(device, torch.float64)
                else:
                    entry[1] += float(value)
                entry[2] += 1
            steps += 1
            if after_step is not None:
                after_step(output)
            if device.type == "cpu" and output.loss is not None:
                progress.set_postfix(loss=f"{float(loss):.4f}")
        self.method.on_train_epoch_end(self.trained, epoch)
        return self._epoch_result(epoch, loss_sum, bad_losses, losses, logs, steps)

    def _step(self, batch: dict, autocast) -> StepOutput:
        automatic = self.method.automatic_optimization
        if automatic:
            self.zero_grad()
        with autocast():
            output = self.method.training_step(self.trained, batch, self.context)
        self._check_output(output, automatic)
        if automatic:
            self.backward(output.loss)
            for name in self.phase.optimizers:
                self.step(name)
        self._update_scale()
        return output

    def _check_output(self, output, automatic: bool) -> None:
        where = f"method {self.method.name!r}: training_step"
        if not isinstance(output, StepOutput):
            raise MethodContractError(f"{where} must return a StepOutput, got {type(output).__name__}")
        loss = output.loss
        if loss is None:
            if automatic:
                raise MethodContractError(f"{where} returned no loss (loss=None needs automatic_optimization=False)")
            return
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise MethodContractError(f"{where}: the loss must be a one-element tensor, got {loss!r:.80}")
        if automatic and not loss.requires_grad:
            raise MethodContractError(f"{where}: the loss does not depend on any trainable parameter (no grad_fn)")
        if not isinstance(output.logs, dict) or not all(isinstance(k, str) for k in output.logs):
            raise MethodContractError(f"{where}: logs must map names to numbers, got {output.logs!r:.80}")

    def _epoch_result(self, epoch: int, loss_sum, bad_losses, losses: int, logs: dict, steps: int) -> EpochResult:
        names = sorted(logs)
        if self.processes.distributed:  # every process contributes its names (a step may log conditionally)
            gathered = [None] * self.processes.world_size
            dist.all_gather_object(gathered, names)
            names = sorted(set().union(*gathered))
        device = self.processes.device
        empty = [torch.zeros((), dtype=torch.float64, device=device), 0.0, 0]
        values = [loss_sum, bad_losses, torch.tensor(float(losses), dtype=torch.float64, device=device)]
        for name in names:
            device_sum, host_sum, count = logs.get(name, empty)
            values += [device_sum + host_sum, torch.tensor(float(count), dtype=torch.float64, device=device)]
        totals = sum_across(torch.stack(values).cpu(), self.processes).tolist()
        loss_total, bad, count = totals[:3]
        if bad:
            raise WsolbenchError(f"epoch {epoch}: the loss was not finite in {int(bad)} of {int(count)} steps; "
                                 "lower the learning rate")
        means = {name: totals[3 + 2 * k] / totals[4 + 2 * k] for k, name in enumerate(names) if totals[4 + 2 * k]}
        bad_logs = [name for name, value in means.items() if not math.isfinite(value)]
        if bad_logs:
            raise WsolbenchError(f"epoch {epoch}: the logged value {bad_logs[0]!r} is not finite")
        return EpochResult(loss_total / count if count else None, means, steps)

    # --- checkpoints -----------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"optimizers": {name: o.optimizer.state_dict() for name, o in self.optimizations.items()},
                "epochs_trained": dict(self.epochs_trained), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for name, optimization in self.optimizations.items():
            optimization.optimizer.load_state_dict(state["optimizers"][name])
        self.epochs_trained = dict(state["epochs_trained"])
        self.scaler.load_state_dict(state["scaler"])
