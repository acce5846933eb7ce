"""The two-network model of the weight-map methods: the classifier (or embedding) f and the generator g.

``WeightMapNet.forward`` is the one entry the training steps use (so that DistributedDataParallel sees every
pass): ``forward(images)`` is f's output (class scores, or the embedding of method II);
``forward(images, weigh=True)`` is a :class:`Weighing`: ``M = g(I)``, ``f(I)`` without gradient, ``f(I * M)``
and, with ``background=True``, ``f(I * (1 - M))``. The masks multiply the normalised images, so a hidden
pixel takes the dataset's mean colour (the first author's WWbL code normalises with mean = std = 0.5, so
there a hidden pixel is mid-grey).

While ``f_frozen`` is set (the generator phase) f stays in eval mode whatever ``train()`` is called with,
so its batch-norm statistics, like its weights, do not change.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from wsolbench import CamBackbone
from wsolbench_weightmap.generator import WeightMapGenerator


class Weighing(NamedTuple):
    """One weighing pass: the maps (B, H, W) and f's outputs on the image, the foreground and the background
    (a named tuple, which DistributedDataParallel traverses)."""

    mask: Tensor
    reference: Tensor
    foreground: Tensor
    background: Tensor | None = None


class ClassCentroids(nn.Module):
    """Running per-class sums of embeddings (buffers, so checkpoints carry them); ``scores(e)[b, k] =
    -||e_b - mean_k||_2``, and a class never seen scores below every seen one."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.register_buffer("sums", torch.zeros(num_classes, dim))
        self.register_buffer("counts", torch.zeros(num_classes))

    def reset(self) -> None:
        self.sums.zero_()
        self.counts.zero_()

    @torch.no_grad()
    def add(self, embeddings: Tensor, labels: Tensor) -> None:
        self.sums.index_add_(0, labels, embeddings.float())
        self.counts.index_add_(0, labels, torch.ones_like(labels, dtype=self.counts.dtype))

    def scores(self, embeddings: Tensor) -> Tensor:
        seen = self.counts > 0
        means = self.sums / self.counts.clamp(min=1)[:, None]
        distances = torch.cdist(embeddings.float(), means)
        unseen = distances.max() + 1.0  # finite, and worse than every seen class
        return -torch.where(seen[None, :], distances, unseen)


class WeightMapNet(nn.Module):
    """f (``classifier``, a CAM backbone) and g (``generator``)."""

    def __init__(self, classifier: CamBackbone, generator: WeightMapGenerator):
        super().__init__()
        self.classifier = classifier
        self.generator = generator
        self.f_frozen = False

    def train(self, mode: bool = True) -> "WeightMapNet":
        super().train(mode)
        if self.f_frozen:
            self.classifier.eval()
        return self

    def freeze_classifier(self, frozen: bool) -> None:
        """The generator phase (``frozen``): f fixed, g trained; the classifier phase: the other way round."""
        self.f_frozen = frozen
        self.classifier.requires_grad_(not frozen)
        for parameter in self.generator.trainable_parameters():
            parameter.requires_grad_(frozen)
        self.train(self.training)

    def forward(self, images: Tensor, *, weigh: bool = False, background: bool = False) -> Tensor | Weighing:
        if not weigh:
            return self.classifier(images)
        with torch.no_grad():
            reference = self.classifier(images)
        mask = self.generator(images)
        weights = mask[:, None].to(images.dtype)
        foreground = self.classifier(images * weights)
        hidden = self.classifier(images * (1 - weights)) if background else None
        return Weighing(mask, reference, foreground, hidden)
