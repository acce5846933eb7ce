"""The box-mass score S, Shaharabany & Wolf's label-free early-stopping criterion (Eq. 5-6).

For a weight map M: ``tau = max(M) / 10`` (Eq. 5); ``M_hat`` is M with every value below tau set to zero;
the box is the bounding box of the largest-area contour of ``M_hat > 0`` (OpenCV's border following, the
paper's [39]); ``S = sum of M_hat inside the box (inclusive) / sum of M_hat`` (Eq. 6). S is 1 when the box
holds all the mass and drops as the map spreads over several blobs (over-segmentation); the epoch with the
largest mean S over the validation images is the paper's stopping point. A map without mass scores 0.

The paper's formula is followed as written, on the float map; the first author's WWbL code computes the
same ratio after rendering the map through a colour map to grey uint8, which wsolbench does not copy.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

#: tau = max(M) * TAU_FRACTION (Eq. 5)
TAU_FRACTION = 0.1


def box_mass(thresholded: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Eq. 6: the share of ``thresholded``'s mass inside ``box = (x1, y1, x2, y2)``, corners inclusive."""
    total = float(thresholded.sum())
    if total <= 0:
        return 0.0
    x1, y1, x2, y2 = box
    return float(thresholded[y1:y2 + 1, x1:x2 + 1].sum()) / total


def thresholded(weight_map: np.ndarray) -> np.ndarray:
    """``M_hat``: values below ``max(M) * TAU_FRACTION`` set to zero (Eq. 5)."""
    tau = float(weight_map.max()) * TAU_FRACTION
    return np.where(weight_map >= tau, weight_map, 0.0)


def largest_contour_box(foreground: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x1, y1, x2, y2)`` (inclusive) of the largest-area external contour of a boolean map; None if empty."""
    contours = cv2.findContours(foreground.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if not contours:
        return None
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return x, y, x + w - 1, y + h - 1


def box_mass_score(weight_map: np.ndarray) -> float:
    """S of one map (H, W)."""
    kept = thresholded(np.asarray(weight_map, dtype=np.float64))
    box = largest_contour_box(kept > 0)
    return 0.0 if box is None else box_mass(kept, box)


def box_mass_scores(maps: Tensor) -> Tensor:
    """S of each map of a batch (B, H, W), as a float64 (B,) tensor on the maps' device."""
    values = [box_mass_score(m) for m in maps.detach().float().cpu().numpy()]
    return torch.tensor(values, dtype=torch.float64, device=maps.device)
