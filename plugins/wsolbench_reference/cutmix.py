"""``cutmix``: CutMix (Yun et al., ICCV 2019) as clovaai/wsolevaluation trains a CAM network with it.

Re-derived from the notes on wsolevaluation (../shared/research/wsolevaluation.md §6; no code copied).
Training only, on the normalised batch (B, C, H, W) with labels y; with probability ``prob``, and only
when ``beta > 0``:

- ``lambda ~ Beta(beta, beta)``; a random permutation pi of the batch gives the pasted images;
- cut sides ``cut_h = int(H * sqrt(1 - lambda))``, ``cut_w = int(W * sqrt(1 - lambda))``; a uniform
  integer centre ``cy`` in [0, H), ``cx`` in [0, W); the box is rows ``[cy - cut_h // 2, cy + cut_h // 2)``
  and columns ``[cx - cut_w // 2, cx + cut_w // 2)``, each end clipped to [0, H] or [0, W];
- image b gets image pi(b)'s pixels inside the box; lambda is recomputed as
  ``1 - box area / (H * W)``;
- loss ``lambda * CE(logits, y) + (1 - lambda) * CE(logits, y[pi])``.

Otherwise plain cross-entropy on the unchanged batch. Evaluation is plain CAM (the default ``predict``).
The step logs ``ce`` (the loss) and ``lambda`` (the recomputed one; 1 for an unmixed batch).

Where wsolbench differs from the reference, and why: every draw comes from ``context.generator`` (the
run's seeded, checkpointed CPU generator), not numpy's and torch's global generators, in this order per
step: the coin u (``torch.rand``; mix when ``u < prob``, drawn even when ``beta`` is 0), then for a mixed
batch lambda, pi (``torch.randperm``), cy, cx (``torch.randint``). torch has no Beta sampler that takes a
generator, so lambda is exact and seeded this way: for ``beta == 1`` (the default), Beta(1, 1) is
Uniform(0, 1) and lambda is one ``torch.rand``; otherwise one ``torch.randint`` draws a seed for
``numpy.random.default_rng(seed).beta(beta, beta)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wsolbench import Method, StepOutput, WsolbenchError


class Box(NamedTuple):
    """Rows ``[top, bottom)`` and columns ``[left, right)`` of an image."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)


def cut_box(height: int, width: int, lam: float, centre_row: int, centre_col: int) -> Box:
    """The pasted box for a drawn ``lam`` and centre (row in [0, H), column in [0, W)): sides
    ``int(H * sqrt(1 - lam))`` and ``int(W * sqrt(1 - lam))``, spanning ``+- side // 2`` around the centre,
    clipped to the image."""
    ratio = math.sqrt(1.0 - lam)
    half_h, half_w = int(height * ratio) // 2, int(width * ratio) // 2
    return Box(max(centre_row - half_h, 0), min(centre_row + half_h, height),
               max(centre_col - half_w, 0), min(centre_col + half_w, width))


def paste(images: Tensor, permutation: Tensor, box: Box) -> Tensor:
    """``images`` (B, C, H, W) with image ``permutation[b]``'s pixels inside ``box`` pasted into image b
    (the input is not modified)."""
    mixed = images.clone()
    rows, cols = slice(box.top, box.bottom), slice(box.left, box.right)
    mixed[:, :, rows, cols] = images[permutation.to(images.device), :, rows, cols]
    return mixed


def kept_fraction(box: Box, height: int, width: int) -> float:
    """lambda recomputed from the pasted box: ``1 - box area / (H * W)``."""
    return 1.0 - box.area / (height * width)


def mixed_cross_entropy(logits: Tensor, labels: Tensor, pasted_labels: Tensor, lam: float) -> Tensor:
    """``lam * CE(logits, labels) + (1 - lam) * CE(logits, pasted_labels)`` (each a batch mean)."""
    return lam * F.cross_entropy(logits, labels) + (1.0 - lam) * F.cross_entropy(logits, pasted_labels)


def draw_lambda(beta: float, generator: torch.Generator) -> float:
    """``lambda ~ Beta(beta, beta)`` from ``generator``: one ``torch.rand`` for beta = 1 (Uniform(0, 1)),
    otherwise numpy's Beta sampler seeded by one ``torch.randint`` on ``generator``."""
    if beta == 1.0:
        return torch.rand((), generator=generator).item()
    seed = int(torch.randint(2**63 - 1, (), generator=generator))
    return float(np.random.default_rng(seed).beta(beta, beta))


class CutMix(Method):
    """CAM trained on CutMix batches: a box of another image pasted in, the labels mixed by area."""

    name = "cutmix"
    paper = ("Yun et al., CutMix: Regularization Strategy to Train Strong Classifiers with Localizable "
             "Features, ICCV 2019 (as re-implemented in clovaai/wsolevaluation)")

    @dataclass(frozen=True)
    class Hparams:
        beta: float = 1.0  #: lambda ~ Beta(beta, beta); 0 turns CutMix off (cutmix_beta)
        prob: float = 1.0  #: probability that a batch is mixed (cutmix_prob)

        def __post_init__(self):
            if self.beta < 0:
                raise WsolbenchError(f"cutmix: beta must be >= 0, got {self.beta}")
            if not 0 <= self.prob <= 1:
                raise WsolbenchError(f"cutmix: prob must lie in [0, 1], got {self.prob}")

    def training_step(self, model, batch, context) -> StepOutput:
        images, labels = batch["image"], batch["label"]
        generator = context.generator
        mixes = torch.rand((), generator=generator).item() < self.hparams.prob
        if not (mixes and self.hparams.beta > 0):
            loss = F.cross_entropy(model(images), labels)
            return StepOutput(loss, {"ce": loss.detach(), "lambda": 1.0})
        batch_size, _, height, width = images.shape
        lam = draw_lambda(self.hparams.beta, generator)
        permutation = torch.randperm(batch_size, generator=generator)
        centre_row = int(torch.randint(height, (), generator=generator))
        centre_col = int(torch.randint(width, (), generator=generator))
        box = cut_box(height, width, lam, centre_row, centre_col)
        lam = kept_fraction(box, height, width)
        logits = model(paste(images, permutation, box))
        loss = mixed_cross_entropy(logits, labels, labels[permutation.to(labels.device)], lam)
        return StepOutput(loss, {"ce": loss.detach(), "lambda": lam})
