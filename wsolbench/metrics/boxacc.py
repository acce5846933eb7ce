"""Box localization metrics: MaxBoxAcc, MaxBoxAccV2, GT-known / Top-1 / Top-5 Loc, Top-k classification.

:class:`BoxAccuracy` accumulates hit counts per (score-map threshold x IoU threshold): memory does not grow
with the number of images, any batch split gives the same result, and under ``torch.distributed`` the
counts are summed across processes, so the result is exact.

Definitions (percent, over the ``N`` evaluated images; ``hits(tau, delta)`` counts images whose best IoU at
threshold ``tau`` is ``>= delta / 100``; see :mod:`wsolbench.metrics.functional`):

* ``acc(tau, delta) = 100 * hits(tau, delta) / N``; ``MaxBoxAcc(delta) = max_tau acc(tau, delta)``,
  ``tau*(delta)`` its first argmax;
* **MaxBoxAcc** (V1): the largest contour's box, ``delta = 50``;
* **MaxBoxAccV2**: all contour boxes, mean of ``MaxBoxAcc(delta)`` over ``delta in {30, 50, 70}``, each
  ``delta`` with its own ``tau*``;
* **GT-known Loc**: ``acc(tau, 50)`` (map of the ground-truth class); **Top-k Loc** additionally needs the
  ground-truth class among the top-k predictions (if it is the top-1 prediction, the predicted class's map
  is the ground-truth class's map). Each is given at a fixed ``tau`` and at its best ``tau``.
"""

from __future__ import annotations

import numpy as np
import torch

from wsolbench.metrics import functional as F
from wsolbench.metrics._inputs import to_numpy, validated_scoremaps
from wsolbench.metrics._summed import SummedStatistics
from wsolbench.metrics.scores import BoxAccuracyResult, LocAccuracy  # noqa: F401 - the results live with the schema

LOC_IOU = 50  #: IoU threshold (percent) of MaxBoxAcc V1, GT-known Loc and Top-k Loc
LOC_KINDS = ("gt_known", "top1", "top5")


def _grid_value(thresholds: np.ndarray, index: int) -> float:
    """A threshold as printed: rounded to 10 decimals so that ``np.arange`` noise (0.7000000000000001) goes."""
    return round(float(thresholds[index]), 10)


class BoxAccuracy(SummedStatistics):
    """Stateful box-localization metric (torchmetrics), exact for any batch split and under DDP.

    Parameters
    ----------
    cam_curve_interval : threshold step; thresholds are ``np.arange(0, 1, cam_curve_interval)``
    iou_thresholds : IoU thresholds in percent for MaxBoxAccV2 (their mean is the score)
    loc_contours : ``"all"`` or ``"largest"``: the boxes GT-known and Top-k Loc use
    loc_threshold : also report GT-known / Top-k Loc at this fixed threshold
    """

    #: from :func:`wsolbench.metrics.functional.box_statistics`
    STATISTICS = ("num_images", "hits", "num_classified")

    def __init__(self, cam_curve_interval: float = 0.001, iou_thresholds=(30, 50, 70), loc_contours: str = "all",
                 loc_threshold: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if loc_contours not in F.CONTOUR_MODES:
            raise ValueError(f"loc_contours must be one of {sorted(F.CONTOUR_MODES)}, got {loc_contours!r}")
        if loc_threshold is not None and not 0 <= loc_threshold < 1:
            raise ValueError(f"loc_threshold must lie in [0, 1), got {loc_threshold}")
        self.grid = F.threshold_grid(cam_curve_interval)
        self.columns = self.grid if loc_threshold is None else np.append(self.grid, loc_threshold)
        self.iou_thresholds = tuple(int(d) for d in iou_thresholds)
        self.counted_ious = tuple(sorted(set(self.iou_thresholds) | {LOC_IOU}))
        self.loc_contours = loc_contours
        self.loc_threshold = loc_threshold
        shape = (len(LOC_KINDS), 2, len(self.counted_ious), len(self.columns))
        self.add_state("num_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("hits", default=torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_classified", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scoremaps, gt_boxes, labels=None, class_scores=None) -> None:
        """Add a batch.

        ``scoremaps``: (B, H, W) maps in [0, 1] (numpy or tensor); ``gt_boxes``: B arrays of inclusive
        boxes in the maps' pixel grid; ``labels`` and ``class_scores`` (B, C), optional, for Top-k.
        """
        scoremaps = validated_scoremaps(scoremaps)
        if class_scores is not None:
            class_scores, labels = to_numpy(class_scores), to_numpy(labels)
        self.add_statistics(F.box_statistics(scoremaps, [to_numpy(b) for b in gt_boxes], self.columns,
                                             self.counted_ious, labels, class_scores))

    def compute(self) -> BoxAccuracyResult:
        num_images = int(self.num_images)
        if num_images == 0:
            raise ValueError("no image was evaluated")
        num_classified = int(self.num_classified)
        if num_classified not in (0, num_images):
            raise ValueError(f"class scores were given for {num_classified} of {num_images} images; give all or none")
        hits = self.hits.cpu().numpy().astype(np.float64)
        grid = len(self.grid)
        accuracy = hits[..., :grid] * 100.0 / float(num_images)  # (kind, mode, iou, threshold)
        best_index = accuracy.argmax(axis=-1)
        best = accuracy.max(axis=-1)
        iou_row = {delta: i for i, delta in enumerate(self.counted_ious)}
        largest, every = F.LARGEST, F.ALL

        def per_iou(mode, table, deltas=self.iou_thresholds):
            return {d: float(table[0, mode, iou_row[d]]) for d in deltas}

        def thresholds_of(mode, deltas=self.iou_thresholds):
            return {d: _grid_value(self.grid, best_index[0, mode, iou_row[d]]) for d in deltas}

        v2 = per_iou(every, best)
        loc_mode, loc_row = F.CONTOUR_MODES[self.loc_contours], iou_row[LOC_IOU]
        kinds = LOC_KINDS if num_classified else LOC_KINDS[:1]
        fixed_accuracy = hits[..., grid] * 100.0 / float(num_images) if self.loc_threshold is not None else None
        loc = {kind: LocAccuracy(
            best=float(best[k, loc_mode, loc_row]),
            best_threshold=_grid_value(self.grid, best_index[k, loc_mode, loc_row]),
            fixed=None if fixed_accuracy is None else float(fixed_accuracy[k, loc_mode, loc_row]))
            for k, kind in enumerate(LOC_KINDS) if kind in kinds}
        return BoxAccuracyResult(
            num_images=num_images,
            thresholds=self.grid,
            iou_thresholds=self.iou_thresholds,
            curves={name: {d: accuracy[0, mode, iou_row[d]] for d in self.counted_ious}
                    for name, mode in F.CONTOUR_MODES.items()},
            maxboxacc=float(best[0, largest, loc_row]),
            maxboxacc_per_iou=per_iou(largest, best),
            best_threshold_v1=thresholds_of(largest, self.counted_ious),
            maxboxacc_v2=float(np.mean([v2[d] for d in self.iou_thresholds])),
            maxboxacc_v2_per_iou=v2,
            best_threshold=thresholds_of(every),
            loc_contours=self.loc_contours,
            loc_threshold=self.loc_threshold,
            loc=loc,
        )

