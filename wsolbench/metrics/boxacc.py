"""Box localization metrics as a torchmetrics ``Metric``: MaxBoxAcc, MaxBoxAccV2, GT-known / Top-1 / Top-5 Loc.

:class:`BoxAccuracy` accumulates the hit counts of :class:`~wsolbench.metrics.accumulators.BoxScoring` (its
definitions are there) as states: memory does not grow with the number of images, any batch split gives the
same result, and under ``torch.distributed`` the counts are summed across processes, so the result is exact.
"""

from __future__ import annotations

import torch

from wsolbench.metrics._inputs import to_numpy, validated_scoremaps
from wsolbench.metrics._summed import SummedStatistics
from wsolbench.metrics.accumulators import LOC_IOU, LOC_KINDS, BoxScoring  # noqa: F401 - importable from here
from wsolbench.metrics.scores import BoxAccuracyResult, LocAccuracy  # noqa: F401 - the results live with the schema


class BoxAccuracy(SummedStatistics):
    """Stateful box-localization metric (torchmetrics), exact for any batch split and under DDP.

    Parameters
    ----------
    cam_curve_interval : threshold step; thresholds are ``np.arange(0, 1, cam_curve_interval)``
    iou_thresholds : IoU thresholds in percent for MaxBoxAccV2 (their mean is the score)
    loc_contours : ``"all"`` or ``"largest"``: the boxes GT-known and Top-k Loc use
    loc_threshold : also report GT-known / Top-k Loc at this fixed threshold
    """

    def __init__(self, cam_curve_interval: float = 0.001, iou_thresholds=(30, 50, 70), loc_contours: str = "all",
                 loc_threshold: float | None = None, **kwargs):
        super().__init__(BoxScoring(cam_curve_interval, iou_thresholds, loc_contours, loc_threshold), **kwargs)
        for name in ("grid", "columns", "iou_thresholds", "counted_ious", "loc_contours", "loc_threshold"):
            setattr(self, name, getattr(self.scoring, name))

    def update(self, scoremaps, gt_boxes, labels=None, class_scores=None) -> None:
        """Add a batch.

        ``scoremaps``: (B, H, W) maps in [0, 1] (numpy or tensor); ``gt_boxes``: B arrays of inclusive
        boxes in the maps' pixel grid; ``labels`` and ``class_scores`` (B, C), optional, for Top-k.
        """
        if class_scores is not None:
            class_scores, labels = to_numpy(class_scores), to_numpy(labels)
        self.add_statistics(self.scoring.statistics(validated_scoremaps(scoremaps), [to_numpy(b) for b in gt_boxes],
                                                    labels, class_scores))

    def compute(self) -> BoxAccuracyResult:
        return self.scoring.result(self.sums())
