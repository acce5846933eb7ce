"""Feature-direction alignment (Kim et al., CVPR 2022): the maps and losses, as pure tensor functions.

Notation of the paper: ``F`` (B, D, H, W) the feature map, ``w_k`` the classifier weight of class k.

- norm map ``𝓕_u = ‖F_u‖₂`` (Eq. 2-3), and ``𝓕̂`` its per-image min-max normalisation (Eq. 5;
  ``(𝓕 - min) / (max - min + 1e-15)``, as the official code, gradient through min and max);
- similarity maps ``𝓢[k]_u = cos(w_k, F_u)`` for every class k (Eq. 2), ``𝓢[y]`` the ground truth's;
- ``L_sim = mean_b [ mean(𝓢[y] over 𝓕̂ < τ_bg) − mean(𝓢[y] over 𝓕̂ > τ_fg) ]`` (Eq. 6) and
  ``L_norm = mean_b [ mean(𝓕̂ over s < 0) − mean(𝓕̂ over s > 0) ]`` (Eq. 7-8) with ``s = 𝓢[y]``, or
  ``s = max_k 𝓢[k]`` (the "any class" regions the paper uses for fine-grained data); a masked mean is
  ``sum / (count + 1e-15)``, so an empty region contributes 0, and the hard masks carry no gradient;
- attentive dropout (Fig. 4): ``A`` the channel mean of the activation, each location with
  ``A > γ · max(A)`` (strict, per sample) is dropped with probability ``p`` (an independent draw per
  location); ``L_drop = mean |F − F_drop|`` (Eq. 9, the mean over B·D·H·W, neither side detached).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-15


def norm_map(features: Tensor) -> Tensor:
    """``𝓕``: the L2 norm of each location's feature vector, (B, D, H, W) -> (B, H, W)."""
    return features.norm(dim=1)


def normalize_per_image(maps: Tensor) -> Tensor:
    """Per-image min-max normalisation of (B, H, W) maps: ``(m - min) / (max - min + 1e-15)``."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low + EPS)


def similarity_maps(features: Tensor, weight: Tensor) -> Tensor:
    """``𝓢``: cosine similarity of each location's feature with each class weight, (B, K, H, W)."""
    directions = F.normalize(features, dim=1, eps=EPS)
    classes = F.normalize(weight.reshape(weight.shape[0], -1), dim=1, eps=EPS)
    return torch.einsum("bdhw,kd->bkhw", directions, classes)


def class_similarity(features: Tensor, weights: Tensor) -> Tensor:
    """``𝓢[y_b]`` for each image b: cosine similarity of its features with its own class weight ``weights[b]``
    (B, D, ...), (B, D, H, W) -> (B, H, W)."""
    directions = F.normalize(features, dim=1, eps=EPS)
    classes = F.normalize(weights.reshape(weights.shape[0], -1), dim=1, eps=EPS)
    return torch.einsum("bdhw,bd->bhw", directions, classes)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per-image mean of ``values`` over ``mask`` (B, H, W) -> (B,); 0 where the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(dim=(1, 2)) / (mask.sum(dim=(1, 2)) + EPS)


def similarity_loss(similarity: Tensor, normalized_norm: Tensor, tau_fg: float, tau_bg: float) -> Tensor:
    """``L_sim`` (Eq. 6) from the ground-truth class's similarity map and 𝓕̂."""
    foreground = (normalized_norm > tau_fg).detach()
    background = (normalized_norm < tau_bg).detach()
    return (masked_mean(similarity, background) - masked_mean(similarity, foreground)).mean()


def region_similarity(similarity: Tensor, labels: Tensor, any_class: bool) -> Tensor:
    """The map whose sign gives L_norm's regions: the GT class's 𝓢 (B, H, W), or with ``any_class`` the
    maximum over classes (a location counts as object if it is similar to any class)."""
    if any_class:
        return similarity.amax(dim=1)
    return similarity[torch.arange(len(labels), device=labels.device), labels]


def norm_loss(region_similarity: Tensor, normalized_norm: Tensor) -> Tensor:
    """``L_norm`` (Eq. 8): regions from the sign of ``region_similarity`` (the GT class's map, or the max
    over classes), pushing 𝓕̂ up where it is positive and down where it is negative."""
    foreground = (region_similarity > 0).detach()
    background = (region_similarity < 0).detach()
    return (masked_mean(normalized_norm, background) - masked_mean(normalized_norm, foreground)).mean()


def attentive_drop_mask(activation: Tensor, gamma: float, p: float, generator: torch.Generator) -> Tensor:
    """The (B, 1, H, W) keep mask of attentive dropout: 0 where the channel mean exceeds ``gamma`` times
    its per-sample maximum and an independent uniform draw (from ``generator``, on the CPU) is below ``p``."""
    attention = activation.mean(dim=1)
    high = attention > gamma * attention.amax(dim=(1, 2), keepdim=True)
    draws = torch.rand(attention.shape, generator=generator).to(activation.device)
    return (~(high & (draws < p))).unsqueeze(1).to(activation.dtype)


def drop_loss(features: Tensor, dropped_features: Tensor) -> Tensor:
    """``L_drop`` (Eq. 9): mean absolute difference, gradient into both sides."""
    return F.l1_loss(features, dropped_features)
