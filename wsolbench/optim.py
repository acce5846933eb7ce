"""Optimizers and learning-rate schedules a method declares (:meth:`wsolbench.method.Method.optimizers`).

An :class:`Optimization` pairs a ``torch.optim.Optimizer`` with its :class:`Schedule`. The harness sets
every group's learning rate before each epoch the optimizer trains: ``lr = initial_lr * multiplier(e)``,
where ``initial_lr`` is the group's ``lr`` when the optimizer was built and ``e`` counts, from 1, the epochs
in which this optimizer was stepped (so a generator optimizer first used in a run's second phase starts
its schedule at 1, and an optimizer shared by a warm stage and the main stage counts through both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wsolbench.errors import WsolbenchError


@dataclass(frozen=True)
class Schedule:
    """Step decay: ``multiplier(e) = factor ** (e // frequency)`` (wsolevaluation: the rate drops before
    every epoch ``e`` with ``e % frequency == 0``); or, when ``points`` are given, MultiStep decay:
    ``factor ** #{p in points : p < e}`` (PyTorch's MultiStepLR with milestones ``points`` stepped once
    after each epoch). ``frequency=None`` and no points: a constant rate."""

    factor: float = 0.1
    frequency: int | None = None
    points: tuple[int, ...] = ()

    def __post_init__(self):
        if not 0 < self.factor <= 1:
            raise WsolbenchError(f"schedule: the decay factor must lie in (0, 1], got {self.factor}")
        if self.frequency is not None and self.frequency < 1:
            raise WsolbenchError(f"schedule: the decay frequency must be >= 1, got {self.frequency}")
        if any(p < 1 for p in self.points) or list(self.points) != sorted(set(self.points)):
            raise WsolbenchError(f"schedule: decay points must be increasing positive epochs, got {self.points}")

    def multiplier(self, epoch: int) -> float:
        """The factor applied to every initial learning rate in the optimizer's ``epoch``-th epoch (1-based)."""
        if self.points:
            return self.factor ** sum(point < epoch for point in self.points)
        if self.frequency is None:
            return 1.0
        return self.factor ** (epoch // self.frequency)


@dataclass
class Optimization:
    """An optimizer and the schedule of its learning rates."""

    optimizer: torch.optim.Optimizer
    schedule: Schedule = Schedule()


def protocol_schedule(settings) -> Schedule:
    """The protocol's schedule from :class:`~wsolbench.method.TrainingSettings`: MultiStep at
    ``lr_decay_points`` when there are any, else step decay every ``lr_decay_frequency`` epochs."""
    return Schedule(settings.lr_decay_factor, settings.lr_decay_frequency, tuple(settings.lr_decay_points))


def protocol_sgd(groups: list[dict], settings) -> torch.optim.SGD:
    """wsolevaluation's optimizer over ``groups``: SGD with the protocol's momentum, weight decay (on every
    parameter) and Nesterov switch; a group without its own ``lr`` trains at ``settings.lr``."""
    return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay,
                           nesterov=settings.nesterov and settings.momentum > 0)
