"""MinMaxCAM (Wang et al.): the stage-II mask and regularizers, as pure tensor functions.

What the official code (shadowwkl/MinMaxCAM, not copied; ../shared/research/methods.md §6) computes:

- the mask ``M = Σ_k W[y, k] · F[k]``, the ground-truth class's weighted **sum** over the channels of the
  feature map (no bias, no ReLU, unlike the evaluation CAM's channel mean, which min-max makes equivalent),
  min-max normalised per image and bilinearly upsampled to the input size (``align_corners=False``). The
  official code divides by ``max - min`` with no epsilon (NaN for a constant map); here the divisor is
  clamped to at least :data:`EPS`, which changes nothing unless the map is constant (then the mask is 0,
  as wsolbench's evaluation treats a constant map). Differentiable with respect to ``W``;
- ``CRR``: per class, the mean over its ``S(S-1)/2`` pairs of ``MSE(f_a, f_b)`` (mean over the feature
  dimension D), then the mean over the classes;
- ``FRR``: per class, ``MSE(f, f_o)`` averaged over its ``S x D`` values, then the mean over the classes.

Classes are the distinct labels of the batch (the sampler gives each class S images); a class with a
single image has no pair and is left out of CRR's mean (CRR is 0 if no class has two).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-12


def class_sum_map(features: Tensor, weight: Tensor, labels: Tensor) -> Tensor:
    """``Σ_k W[y_b, k] · F_b[k]``: (B, K, h, w), (C, K), (B,) -> (B, h, w)."""
    return torch.einsum("bk,bkhw->bhw", weight[labels], features)


def min_max(maps: Tensor) -> Tensor:
    """Per-image ``(m - min) / (max - min)`` of (B, h, w) maps (divisor clamped to :data:`EPS`)."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    high = flat.max(dim=1).values[:, None, None]
    return (maps - low) / (high - low).clamp_min(EPS)


def stage_two_mask(features: Tensor, weight: Tensor, labels: Tensor, size: tuple[int, int]) -> Tensor:
    """The mask multiplied into the normalised input: (B, 1, H, W) at the input's ``size``."""
    normalized = min_max(class_sum_map(features, weight, labels))
    return F.interpolate(normalized[:, None], size=size, mode="bilinear", align_corners=False)


def _groups(labels: Tensor) -> list[Tensor]:
    return [torch.nonzero(labels == label).flatten() for label in torch.unique(labels)]


def common_region(masked: Tensor, labels: Tensor) -> Tensor:
    """CRR of the masked images' pooled features (B, D): per class the mean over pairs of the MSE."""
    terms = []
    for index in _groups(labels):
        f = masked[index]
        s = len(f)
        if s < 2:
            continue
        squared = (f[:, None, :] - f[None, :, :]).pow(2).mean(dim=2)  # (S, S) pairwise MSE, symmetric
        terms.append(squared.triu(diagonal=1).sum() / (s * (s - 1) / 2))
    return torch.stack(terms).mean() if terms else masked.sum() * 0.0


def full_region(masked: Tensor, original: Tensor, labels: Tensor) -> Tensor:
    """FRR: per class the MSE between the masked and the original pooled features (B, D), over S x D."""
    terms = [(masked[index] - original[index]).pow(2).mean() for index in _groups(labels)]
    return torch.stack(terms).mean()
