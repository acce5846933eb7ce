"""The losses of Shaharabany & Wolf (§3), as functions of the networks' outputs.

Method I (Eq. 1): ``D(f(I), f(I * M)) + lambda * R(M)`` with ``D`` the cross-entropy and ``R`` the L1 norm of
``M = g(I)``, here per pixel (``mean(M)``, so lambda does not depend on the image size). The paper leaves
the cross-entropy's target open: ``"soft"`` is ``softmax(f(I))``, detached (the classifier's own belief on
the whole image); ``"label"`` is the ground-truth class.

Method II, with ``d(x, y) = ||x - y||_2`` and margin m (the paper's 1):

- Eq. 2, training f:  ``max(d(f(I_a), f(I_p)) - d(f(I_a), f(I_n)) + m, 0)``;
- Eq. 3, inner:       ``max(d(f(I_a), f(J_a^f)) - d(f(I_a), f(J_a^b)) + m, 0)``;
- Eq. 4, outer:       ``max(d(f(J_a^f), f(J_p^f)) - d(f(J_a^f), f(J_n^f)) + m, 0)``;

where ``J^f = M * I`` and ``J^b = (1 - M) * I``. Triplets are formed inside a class-balanced batch
(:func:`triplet_partners`); each loss is the mean over the anchors that have a partner of each kind.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TARGETS = ("soft", "label")


def soft_cross_entropy(logits: Tensor, probabilities: Tensor) -> Tensor:
    """``mean_b( -sum_c p[b, c] * log softmax(logits)[b, c] )``."""
    return -(probabilities * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def invariance(reference_logits: Tensor, masked_logits: Tensor, labels: Tensor, target: str) -> Tensor:
    """``D(f(I), f(I * M))`` of Eq. 1: cross-entropy of the masked image's scores against ``softmax(f(I))``
    (``target="soft"``, detached) or against the labels (``target="label"``)."""
    if target == "label":
        return F.cross_entropy(masked_logits, labels)
    return soft_cross_entropy(masked_logits, F.softmax(reference_logits.detach().float(), dim=1))


def area(mask: Tensor) -> Tensor:
    """``R(M)``: the mean weight, ``mean_{b, y, x} M[b, y, x]`` (the L1 norm per pixel of a map in [0, 1])."""
    return mask.float().mean()


def triplet(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Per row: ``max(||anchor - positive|| - ||anchor - negative|| + margin, 0)``."""
    closer = torch.linalg.vector_norm(anchor - positive, dim=1)
    farther = torch.linalg.vector_norm(anchor - negative, dim=1)
    return F.relu(closer - farther + margin)


def triplet_partners(labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """For each anchor b: a uniformly drawn other image of its class, one of another class, and whether
    both exist. Returns (positive index, negative index, valid), each (B,), on ``labels``' device; the draw
    comes from ``generator`` (CPU), with no host synchronisation."""
    count = len(labels)
    scores = torch.rand(2, count, count, generator=generator).to(labels.device)
    same = labels[:, None] == labels[None, :]
    itself = torch.eye(count, dtype=torch.bool, device=labels.device)
    positive_scores = scores[0].masked_fill(~same | itself, -1.0)
    negative_scores = scores[1].masked_fill(same, -1.0)
    best_positive, positive = positive_scores.max(dim=1)
    best_negative, negative = negative_scores.max(dim=1)
    return positive, negative, (best_positive >= 0) & (best_negative >= 0)


def masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """The mean of ``values`` over the ``valid`` rows (zero, with gradient, when none is)."""
    weights = valid.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def embedding_triplet(embeddings: Tensor, labels: Tensor, generator: torch.Generator, margin: float) -> Tensor:
    """Eq. 2 over the batch's in-batch triplets."""
    positive, negative, valid = triplet_partners(labels, generator)
    return masked_mean(triplet(embeddings, embeddings[positive], embeddings[negative], margin), valid)


def inner_outer(reference: Tensor, foreground: Tensor, background: Tensor, labels: Tensor,
                generator: torch.Generator, margin: float) -> tuple[Tensor, Tensor]:
    """(Eq. 3, Eq. 4): ``reference = f(I)``, ``foreground = f(J^f)``, ``background = f(J^b)`` of one batch."""
    inner = triplet(reference, foreground, background, margin).mean()
    positive, negative, valid = triplet_partners(labels, generator)
    outer = masked_mean(triplet(foreground, foreground[positive], foreground[negative], margin), valid)
    return inner, outer
