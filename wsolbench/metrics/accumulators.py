"""The localization metrics as sums of integer statistics, torch-free.

A *scoring* describes one metric: the statistics it sums (:attr:`~BoxScoring.shapes`), the pure function
giving a batch's statistics (:meth:`~BoxScoring.statistics`; the scoring pickles, so a process pool can run
it), and the result computed from the sums (:meth:`~BoxScoring.result`). Because the statistics are sums,
any split of the images into batches, worker processes or ``torch.distributed`` ranks gives the same result.

:class:`Sums` adds statistics up in numpy (``wsolbench evaluate``, which never imports torch); the
torchmetrics adapters :class:`~wsolbench.metrics.boxacc.BoxAccuracy` and :class:`~wsolbench.metrics.pxap.PxAP`
hold the same statistics as states that DDP reduces, and compute with the same :meth:`result`.

Box definitions (percent, over the ``N`` evaluated images; ``hits(tau, delta)`` counts images whose best IoU
at threshold ``tau`` is ``>= delta / 100``; see :mod:`wsolbench.metrics.functional`):

* ``acc(tau, delta) = 100 * hits(tau, delta) / N``; ``MaxBoxAcc(delta) = max_tau acc(tau, delta)``,
  ``tau*(delta)`` its first argmax;
* **MaxBoxAcc** (V1): the largest contour's box, ``delta = 50``;
* **MaxBoxAccV2**: all contour boxes, mean of ``MaxBoxAcc(delta)`` over ``delta in {30, 50, 70}``, each
  ``delta`` with its own ``tau*``;
* **GT-known Loc**: ``acc(tau, 50)`` (map of the ground-truth class); **Top-k Loc** additionally needs the
  ground-truth class among the top-k predictions. Each is given at a fixed ``tau`` and at its best ``tau``.

PxAP pools two score histograms over the split (foreground and background pixels; ignore pixels dropped),
with bins ``[tau_i, tau_i+1)`` at the thresholds plus ``[1, 2)`` and ``[2, 3]``
(:func:`~wsolbench.metrics.functional.pxap_from_histograms`).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from wsolbench.metrics import functional as F
from wsolbench.metrics.scores import BoxAccuracyResult, LocAccuracy, PxAPResult

LOC_IOU = 50  #: IoU threshold (percent) of MaxBoxAcc V1, GT-known Loc and Top-k Loc
LOC_KINDS = ("gt_known", "top1", "top5")


def checked_scoremaps(scoremaps) -> list[np.ndarray]:
    """Score maps as float64 arrays; ValueError if one is not 2-D, finite and within [0, 1]."""
    maps = [np.asarray(s, dtype=np.float64) for s in scoremaps]
    for index, scoremap in enumerate(maps):
        problem = F.scoremap_problem(scoremap)
        if problem:
            raise ValueError(f"score map {index} of the batch: {problem}")
    return maps


def _grid_value(thresholds: np.ndarray, index: int) -> float:
    """A threshold as printed: rounded to 10 decimals so that ``np.arange`` noise (0.7000000000000001) goes."""
    return round(float(thresholds[index]), 10)


class BoxScoring:
    """MaxBoxAcc, MaxBoxAccV2, GT-known / Top-k Loc as sums of hit counts.

    Parameters
    ----------
    cam_curve_interval : threshold step; thresholds are ``np.arange(0, 1, cam_curve_interval)``
    iou_thresholds : IoU thresholds in percent for MaxBoxAccV2 (their mean is the score)
    loc_contours : ``"all"`` or ``"largest"``: the boxes GT-known and Top-k Loc use
    loc_threshold : also report GT-known / Top-k Loc at this fixed threshold
    """

    def __init__(self, cam_curve_interval: float = 0.001, iou_thresholds=(30, 50, 70), loc_contours: str = "all",
                 loc_threshold: float | None = None):
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
        #: the statistics (from :func:`wsolbench.metrics.functional.box_statistics`) and their shapes
        self.shapes = {"num_images": (), "hits": (len(LOC_KINDS), 2, len(self.counted_ious), len(self.columns)),
                       "num_classified": ()}

    def statistics(self, scoremaps, gt_boxes, labels=None, class_scores=None) -> dict:
        """A batch's statistics: ``scoremaps`` (B, H, W) in [0, 1], ``gt_boxes`` B arrays of inclusive boxes in
        the maps' pixel grid, ``labels`` and ``class_scores`` (B, C), optional, for Top-k."""
        return F.box_statistics(checked_scoremaps(scoremaps), [np.asarray(b) for b in gt_boxes], self.columns,
                                self.counted_ious, None if class_scores is None else np.asarray(labels),
                                None if class_scores is None else np.asarray(class_scores))

    def result(self, sums: Mapping[str, np.ndarray]) -> BoxAccuracyResult:
        """The scores of summed statistics."""
        num_images = int(sums["num_images"])
        if num_images == 0:
            raise ValueError("no image was evaluated")
        num_classified = int(sums["num_classified"])
        if num_classified not in (0, num_images):
            raise ValueError(f"class scores were given for {num_classified} of {num_images} images; give all or none")
        hits = np.asarray(sums["hits"]).astype(np.float64)
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


class MaskScoring:
    """PxAP as two summed score histograms (foreground and background pixels)."""

    def __init__(self, cam_curve_interval: float = 0.001):
        self.edges = F.pxap_bin_edges(F.threshold_grid(cam_curve_interval))
        num_bins = len(self.edges) - 1
        #: the statistics (from :func:`wsolbench.metrics.functional.mask_statistics`) and their shapes
        self.shapes = {"num_images": (), "foreground_hist": (num_bins,), "background_hist": (num_bins,)}

    def statistics(self, scoremaps, pixel_labels) -> dict:
        """A batch's statistics: (B, H, W) maps in [0, 1] and (B, H, W) uint8 pixel labels (1 foreground,
        0 background, 255 ignore)."""
        return F.mask_statistics(checked_scoremaps(scoremaps), [np.asarray(m) for m in pixel_labels], self.edges)

    def result(self, sums: Mapping[str, np.ndarray]) -> PxAPResult:
        """PxAP and its precision-recall curve from summed histograms."""
        pxap, precision, recall = F.pxap_from_histograms(np.asarray(sums["foreground_hist"]),
                                                         np.asarray(sums["background_hist"]))
        return PxAPResult(int(sums["num_images"]), float(pxap), precision, recall)


class Sums:
    """Statistics of ``scoring`` summed in numpy (int64): :meth:`add` a batch's, then :meth:`result`."""

    def __init__(self, scoring: BoxScoring | MaskScoring):
        self.scoring = scoring
        self.totals = {name: np.zeros(shape, dtype=np.int64) for name, shape in scoring.shapes.items()}

    def add(self, statistics: Mapping[str, np.ndarray]) -> None:
        for name, total in self.totals.items():
            total += np.asarray(statistics[name], dtype=np.int64)

    def result(self):
        return self.scoring.result(self.totals)
