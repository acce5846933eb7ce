"""Methods that exercise the training API end to end: a manual two-update method and a two-phase method with
its own optimizer, batch size, batch sampler, method state and a label-free selection criterion.

They are registered into the process's method registry by :func:`register` (also inside spawned DDP
workers), and record what the harness handed them in module-level lists for the tests to read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wsolbench.method import MAIN, Method, Phase, StepOutput
from wsolbench.optim import Optimization, Schedule
from wsolbench.plugins import registry

#: (epoch, sorted batch indices) of every batch the class-balanced sampler gave, in order
SAMPLED: list[tuple[int, list[int]]] = []


class TwoUpdates(Method):
    """MinMaxCAM-shaped: per batch, a cross-entropy update of every parameter (train mode), then a second
    update of the classifier alone, backbone frozen and in eval mode, through the DDP-safe forward."""

    name = "two_updates"
    automatic_optimization = False
    find_unused_parameters = True

    def training_step(self, model, batch, context):
        module = context.module
        context.zero_grad()
        stage_one = F.cross_entropy(model(batch["image"]), batch["label"])
        context.backward(stage_one)
        context.optimizer_step(MAIN)

        body = [p for name, p in module.named_parameters() if not name.startswith("fc.")]
        for parameter in body:
            parameter.requires_grad_(False)
        module.eval()
        context.zero_grad()
        output = model(batch["image"], with_features=True)
        stage_two = F.cross_entropy(output.logits, batch["label"]) + 0.0 * output.features.sum()
        context.backward(stage_two)
        context.optimizer_step(MAIN)
        for parameter in body:
            parameter.requires_grad_(True)
        module.train()
        return StepOutput(stage_one.detach(), {"stage_one": stage_one.detach(), "stage_two": float(stage_two.detach())})


class _ClassBalanced:
    """Batches of one image per class, classes in a random order drawn (in ``__iter__``) from the generator."""

    def __init__(self, dataset, generator):
        self.generator = generator
        self.by_class: dict[int, list[int]] = {}
        for index in range(len(dataset)):
            self.by_class.setdefault(dataset.label(index), []).append(index)
        self.epoch = None

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return min(len(v) for v in self.by_class.values())

    def __iter__(self):
        orders = {c: torch.randperm(len(v), generator=self.generator).tolist() for c, v in self.by_class.items()}
        for k in range(len(self)):
            batch = [self.by_class[c][orders[c][k]] for c in sorted(self.by_class)]
            SAMPLED.append((self.epoch, sorted(batch)))
            yield batch


class TwoPhase(Method):
    """Weight-map-shaped: phase ``classifier`` trains everything with the protocol's SGD (not selectable);
    phase ``head`` freezes the body and trains the classifier with its own Adam, batch size and schedule,
    from class-balanced batches. Counts its steps as method state; offers a label-free criterion."""

    name = "two_phase"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps_seen = 0

    def optimizers(self, model, settings):
        head = torch.optim.Adam(model.fc.parameters(), lr=1e-3)
        return {**super().optimizers(model, settings), "head": Optimization(head, Schedule(0.5, points=(1,)))}

    def phases(self, settings):
        return [Phase("classifier", 1, selectable=False), Phase("head", 2, optimizers=("head",), batch_size=2)]

    def on_phase_start(self, model, phase, context):
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(phase.name == "classifier" or name.startswith("fc."))

    def batch_sampler(self, dataset, batch_size, generator):
        return _ClassBalanced(dataset, generator) if batch_size == 2 else None

    def training_step(self, model, batch, context):
        self.steps_seen += 1
        output = super().training_step(model, batch, context)
        output.logs["steps_seen"] = float(self.steps_seen)
        return output

    def state_dict(self):
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state):
        self.steps_seen = state["steps_seen"]

    def selection_criteria(self):
        return {"confidence": lambda prediction, images: prediction.logits.softmax(1).amax(1)}


def register() -> None:
    """Put the test methods into this process's method registry (once)."""
    methods = registry("method")
    for method in (TwoUpdates, TwoPhase):
        if method.name not in methods:
            methods.register(method.name, method, "wsolbench tests")
