"""PxAP: pixel-wise average precision of score maps against ground-truth masks (wsolevaluation).

:class:`PxAP` pools two score histograms over the whole split (foreground pixels, background pixels; ignore
pixels dropped) with bins ``[tau_i, tau_i+1)`` at the thresholds plus ``[1, 2)`` and ``[2, 3]``; the PxAP and
its precision-recall curve follow from the histograms alone (formula in
:func:`wsolbench.metrics.functional.pxap_from_histograms`), so the metric is exact for any batch split and
under ``torch.distributed`` (histograms are summed).
"""

from __future__ import annotations

import torch

from wsolbench.metrics import functional as F
from wsolbench.metrics._inputs import to_numpy, validated_scoremaps
from wsolbench.metrics._summed import SummedStatistics
from wsolbench.metrics.scores import PxAPResult  # the result lives with the score schema


class PxAP(SummedStatistics):
    """Stateful PxAP; ``update(scoremaps, pixel_labels)`` with labels 1 foreground, 0 background, 255 ignore."""

    #: from :func:`wsolbench.metrics.functional.mask_statistics`
    STATISTICS = ("num_images", "foreground_hist", "background_hist")

    def __init__(self, cam_curve_interval: float = 0.001, **kwargs):
        super().__init__(**kwargs)
        self.edges = F.pxap_bin_edges(F.threshold_grid(cam_curve_interval))
        num_bins = len(self.edges) - 1
        self.add_state("num_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("foreground_hist", default=torch.zeros(num_bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("background_hist", default=torch.zeros(num_bins, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scoremaps, pixel_labels) -> None:
        """Add a batch of (B, H, W) maps in [0, 1] and (B, H, W) uint8 pixel labels."""
        self.add_statistics(F.mask_statistics(validated_scoremaps(scoremaps), [to_numpy(m) for m in pixel_labels],
                                              self.edges))

    def compute(self) -> PxAPResult:
        pxap, precision, recall = F.pxap_from_histograms(self.foreground_hist.cpu().numpy(),
                                                         self.background_hist.cpu().numpy())
        return PxAPResult(int(self.num_images), float(pxap), precision, recall)

