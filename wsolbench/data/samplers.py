"""Class-balanced batches: N distinct classes x S images of each, class-major (``wsolbench.ClassBalancedBatches``).

For methods whose losses compare images of one class with images of others (MinMaxCAM's CRR, in-batch
triplets). As MinMaxCAM's official code draws them (../shared/research/methods.md §6): per batch, N classes uniformly without
replacement, then S images of each class without replacement; ``floor(|train| / (S * N))`` batches an
epoch. The draws come from the harness's checkpointed generator, inside ``__iter__``, so ``--resume``
continues the sequence (the official code reseeds numpy with ``epoch * 1000 + iteration`` instead).

Degenerate splits (the conformance check's 2 classes x 2 images): N is capped at the number of classes,
S at the smallest class, and an epoch has at least one batch.

Under DistributedDataParallel the harness gives process r the items ``r::world_size`` of every global
batch; the batch is laid out so that each process gets whole classes (N / world_size of them, class-major),
so each process's per-class terms see S images of each of its classes. N must then be divisible by the world size.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from wsolbench.errors import WsolbenchError


class ClassBalancedBatches:
    """Batches of ``classes`` distinct classes x ``per_class`` images each, drawn from ``generator``."""

    def __init__(self, labels: list[int], classes: int, per_class: int, generator: torch.Generator,
                 world_size: int | None = None):
        self.by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            self.by_class.setdefault(int(label), []).append(index)
        self.class_ids = sorted(self.by_class)
        self.classes = min(classes, len(self.class_ids))
        self.per_class = min(per_class, min(len(v) for v in self.by_class.values()))
        self.size = len(labels)
        self.generator = generator
        if world_size is None:
            world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if self.classes % world_size:
            raise WsolbenchError(f"{self.classes} classes per batch cannot be shared whole by "
                                 f"{world_size} processes; set classes_per_batch to a multiple of {world_size}")
        self.world_size = world_size
        self.epoch = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, self.size // (self.classes * self.per_class))

    def draw(self) -> list[list[int]]:
        """One batch as its classes' index lists, in the drawn order."""
        chosen = torch.randperm(len(self.class_ids), generator=self.generator)[:self.classes].tolist()
        groups = []
        for position in chosen:
            members = self.by_class[self.class_ids[position]]
            picks = torch.randperm(len(members), generator=self.generator)[:self.per_class].tolist()
            groups.append([members[p] for p in picks])
        return groups

    def layout(self, groups: list[list[int]]) -> list[int]:
        """Class-major; with w processes, class j goes to process j % w and item i of process r's part sits
        at position ``i * w + r`` (the harness's ``r::w`` shard)."""
        w = self.world_size
        parts = [[index for group in groups[r::w] for index in group] for r in range(w)]
        return [parts[r][i] for i in range(len(parts[0])) for r in range(w)]

    def __iter__(self):
        for _ in range(len(self)):
            yield self.layout(self.draw())
