"""PxAP: pixel-wise average precision of score maps against ground-truth masks (wsolevaluation).

:class:`PxAP` pools two score histograms over the whole split (foreground pixels, background pixels; ignore
pixels dropped) with bins ``[tau_i, tau_i+1)`` at the thresholds plus ``[1, 2)`` and ``[2, 3]``; the PxAP and
its precision-recall curve follow from the histograms alone (formula in
:func:`wsolbench.metrics.functional.pxap_from_histograms`), so the metric is exact for any batch split and
under ``torch.distributed`` (histograms are summed).
"""

from __future__ import annotations

from wsolbench.metrics._inputs import to_numpy, validated_scoremaps
from wsolbench.metrics._summed import SummedStatistics
from wsolbench.metrics.accumulators import MaskScoring
from wsolbench.metrics.scores import PxAPResult  # the result lives with the score schema


class PxAP(SummedStatistics):
    """Stateful PxAP; ``update(scoremaps, pixel_labels)`` with labels 1 foreground, 0 background, 255 ignore."""

    def __init__(self, cam_curve_interval: float = 0.001, **kwargs):
        super().__init__(MaskScoring(cam_curve_interval), **kwargs)
        self.edges = self.scoring.edges

    def update(self, scoremaps, pixel_labels) -> None:
        """Add a batch of (B, H, W) maps in [0, 1] and (B, H, W) uint8 pixel labels."""
        self.add_statistics(self.scoring.statistics(validated_scoremaps(scoremaps),
                                                    [to_numpy(m) for m in pixel_labels]))

    def compute(self) -> PxAPResult:
        return self.scoring.result(self.sums())
