"""Pure functions behind wsolbench's localization metrics (numpy + OpenCV, no torch).

Semantics are wsolevaluation's (Choe et al., CVPR 2020), to the bit:

* every map is evaluated at 224x224; a score map is float64 in [0, 1];
* the map is quantised as ``q = floor(255 s)`` (uint8); at threshold ``tau`` the foreground is
  ``q > int(tau * max(q))`` (strict, relative to the quantised max);
* boxes are the bounding rectangles of ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` contours
  (hole contours included), ``(x, y, x + w, y + h)`` with ``x1, y1`` clamped to ``W - 1, H - 1``; no
  contour gives the box ``[0, 0, 0, 0]``; "largest" keeps the first contour of maximal ``contourArea``;
* IoU uses inclusive (+1) areas; an image is a hit at IoU threshold ``delta`` (percent) when the best
  IoU over predicted x ground-truth boxes is ``>= delta / 100``.

Speed: the foreground at threshold ``T`` equals ``q >= L`` for the smallest level ``L > T`` present in
the map, so at most 256 distinct foregrounds exist whatever the threshold step; contours are traced once
per distinct foreground, on the crop that holds it (OpenCV pads internally, so contours are the same).
A foreground with a single contour is one hole-free component whose box is the crop, so only foregrounds
with several contours get their boxes and areas computed from the traced points.
"""

from __future__ import annotations

import cv2
import numpy as np

RESIZE_LENGTH = 224
LARGEST, ALL = 0, 1  #: rows of :func:`best_ious_per_threshold`: largest contour (V1), all contours (V2)
CONTOUR_MODES = {"largest": LARGEST, "all": ALL}
_EMPTY_BOX = np.zeros((1, 4), dtype=np.int64)


def threshold_grid(interval: float) -> np.ndarray:
    """Score-map thresholds ``np.arange(0, 1, interval)`` (1.0 excluded), as wsolevaluation builds them.

    >>> threshold_grid(0.25)
    array([0.  , 0.25, 0.5 , 0.75])
    """
    if not 0 < interval < 1:
        raise ValueError(f"threshold interval must lie in (0, 1), got {interval}")
    return np.arange(0, 1, interval)


def normalize_scoremap(cam: np.ndarray, size: int = RESIZE_LENGTH) -> np.ndarray:
    """CAM post-processing: float64, bicubic resize to ``size`` x ``size``, then min-max normalisation.

    ``(x - min) / (max - min)`` after resizing; a map holding a NaN, or constant after resizing, becomes
    all zeros.

    >>> normalize_scoremap(np.array([[0., 2.], [4., 8.]]), size=2)
    array([[0.  , 0.25],
           [0.5 , 1.  ]])
    """
    cam = np.asarray(cam, dtype=np.float64)
    if cam.shape != (size, size):
        cam = cv2.resize(cam, (size, size), interpolation=cv2.INTER_CUBIC)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros((size, size), dtype=np.float64)
    cam = cam - cam.min()
    return cam / cam.max()


def resize_box(box, image_size, resize_size=(RESIZE_LENGTH, RESIZE_LENGTH)) -> tuple[int, int, int, int]:
    """Rescale an inclusive box from ``image_size`` (W, H) to ``resize_size``: ``int(c * new / old)``.

    >>> resize_box((1, 2, 4, 3), image_size=(10, 20), resize_size=(35, 10))
    (3, 1, 14, 1)
    """
    (w, h), (new_w, new_h) = map(float, image_size), map(float, resize_size)
    x0, y0, x1, y1 = map(float, box)
    return int(x0 * new_w / w), int(y0 * new_h / h), int(x1 * new_w / w), int(y1 * new_h / h)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix (A x B) of inclusive ``x0, y0, x1, y1`` integer boxes.

    ``inter = max(0, min x1 - max x0 + 1) * max(0, min y1 - max y0 + 1)``,
    ``area = (x1 - x0 + 1)(y1 - y0 + 1)``, ``IoU = inter / (area_a + area_b - inter)``.

    >>> box_iou(np.array([[2, 2, 3, 3]]), np.array([[2, 2, 2, 2], [0, 0, 9, 9]]))
    array([[0.25, 0.04]])
    """
    a = np.asarray(boxes_a, dtype=np.int64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.int64)[None, :, :]
    inter_w = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    inter_h = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    degenerate = union <= 0
    return np.where(degenerate, 0.0, inter / np.where(degenerate, 1, union))


def quantize(scoremap: np.ndarray) -> np.ndarray:
    """``floor(255 * s)`` as uint8, the integer levels that thresholds cut."""
    return (scoremap * 255).astype(np.uint8)


def _first_index_reaching(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """For each level, the first index whose value reaches it (the level must be reached somewhere):
    a binary search in the running maximum, which is sorted."""
    return np.searchsorted(np.maximum.accumulate(values), levels, side="left")


def _foreground_crops(q: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``(n, 4)`` rows ``r0, r1, c0, c1``: the smallest window holding every pixel of ``q >= level``."""
    row_max, col_max = q.max(axis=1), q.max(axis=0)
    r0 = _first_index_reaching(row_max, levels)
    r1 = len(row_max) - _first_index_reaching(row_max[::-1], levels)
    c0 = _first_index_reaching(col_max, levels)
    c1 = len(col_max) - _first_index_reaching(col_max[::-1], levels)
    return np.stack([r0, r1, c0, c1], axis=1)


def _contour_geometry(contours, width: int, height: int):
    """Boxes ``(x, y, min(x+w, W-1), min(y+h, H-1))`` of ``cv2.boundingRect`` and ``cv2.contourArea``
    (shoelace, exact for integer points) of each contour, vectorized over all of them."""
    lengths = np.fromiter((len(c) for c in contours), dtype=np.int64, count=len(contours))
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    x, y = points[:, 0], points[:, 1]
    x0, y0 = np.minimum.reduceat(x, starts), np.minimum.reduceat(y, starts)
    x1, y1 = np.maximum.reduceat(x, starts) + 1, np.maximum.reduceat(y, starts) + 1
    boxes = np.stack([x0, y0, np.minimum(x1, width - 1), np.minimum(y1, height - 1)], axis=1)
    successor = np.arange(1, len(points) + 1)
    successor[starts + lengths - 1] = starts  # close each polygon
    cross = x * y[successor] - x[successor] * y
    areas = np.abs(np.add.reduceat(cross, starts))
    return boxes, areas


def _first_argmax_per_segment(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Index (into ``values``) of the first maximum of each contiguous non-empty segment."""
    segment_max = np.maximum.reduceat(values, starts)
    index = np.arange(len(values))
    candidates = np.where(values == np.repeat(segment_max, counts), index, len(values))
    return np.minimum.reduceat(candidates, starts)


def _level_best_ious(q: np.ndarray, levels: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """``(2, n)`` best IoUs (rows :data:`LARGEST`, :data:`ALL`) of the level sets ``q >= level``, each level
    present in ``q``.

    A level set with a single contour needs no geometry: that contour is the outer border of the only
    component, whose bounding rectangle is the level set's crop, so both rows score that box. Only the
    levels with several contours have their contours' boxes and areas computed, vectorized over all of them.
    """
    height, width = q.shape
    crops = _foreground_crops(q, levels)
    several, several_levels, counts = [], [], []
    for index, (level, (r0, r1, c0, c1)) in enumerate(zip(levels.tolist(), crops.tolist())):
        foreground = cv2.threshold(q[r0:r1, c0:c1], level - 1, 1, cv2.THRESH_BINARY)[1]  # q >= level
        found = cv2.findContours(foreground, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=(c0, r0))[-2]
        if len(found) > 1:
            several.extend(found)
            several_levels.append(index)
            counts.append(len(found))
    crop_boxes = np.minimum(crops[:, [2, 0, 3, 1]], [width, height, width - 1, height - 1])  # x0, y0, x1, y1
    best = np.repeat(box_iou(crop_boxes, gt_boxes).max(axis=1)[None], 2, axis=0)
    if several:
        counts = np.asarray(counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        boxes, areas = _contour_geometry(several, width, height)
        best_per_box = box_iou(boxes, gt_boxes).max(axis=1)
        best[LARGEST, several_levels] = best_per_box[_first_argmax_per_segment(areas, starts, counts)]
        best[ALL, several_levels] = np.maximum.reduceat(best_per_box, starts)
    return best


def best_ious_per_threshold(scoremap: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Best IoU against the ground truth at each threshold, for the largest contour and for all contours.

    Parameters
    ----------
    scoremap : (H, W) float64 array in [0, 1]
    gt_boxes : (G, 4) inclusive boxes in the map's pixel grid
    thresholds : (T,) thresholds in [0, 1)

    Returns
    -------
    (2, T) float64 array: row :data:`LARGEST` for the largest contour's box (MaxBoxAcc),
    row :data:`ALL` for the best of all contour boxes (MaxBoxAccV2).
    """
    q = quantize(scoremap)
    cuts = (np.asarray(thresholds) * q.max()).astype(np.int64)
    present = np.flatnonzero(np.bincount(q.ravel(), minlength=256))
    level_index = np.searchsorted(present, cuts, side="right")  # smallest present level above each cut
    distinct, threshold_to_distinct = np.unique(level_index, return_inverse=True)
    empty = distinct == len(present)  # no level above the cut: empty foreground, box [0, 0, 0, 0]
    best = np.zeros((2, len(distinct)))
    if not empty.all():
        best[:, ~empty] = _level_best_ious(q, present[distinct[~empty]], gt_boxes)
    best[:, empty] = box_iou(_EMPTY_BOX, gt_boxes).max()
    return best[:, threshold_to_distinct]


def contour_boxes(scoremap: np.ndarray, threshold: float) -> np.ndarray:
    """The ``(K, 4)`` inclusive boxes :func:`best_ious_per_threshold` scores for ``scoremap`` at ``threshold``
    (what a report draws): foreground ``floor(255 s) > int(tau * max)``, the bounding box of every contour
    (``RETR_TREE``, holes included, far corner clamped to ``W - 1, H - 1``); an empty foreground gives the one
    box ``[0, 0, 0, 0]``."""
    scoremap = np.asarray(scoremap, dtype=np.float64)
    height, width = scoremap.shape
    q = quantize(scoremap)
    cut = int((np.asarray([threshold], dtype=np.float64) * q.max()).astype(np.int64)[0])
    foreground = (q > cut).astype(np.uint8)
    if not foreground.any():
        return _EMPTY_BOX.copy()
    contours = cv2.findContours(foreground, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    return _contour_geometry(contours, width, height)[0]


def box_hits(best_ious: np.ndarray, iou_thresholds) -> np.ndarray:
    """Hit table ``best_iou >= delta / 100``: shape ``best_ious.shape[:-1] + (len(iou_thresholds), T)``."""
    deltas = np.asarray(iou_thresholds) / 100
    return best_ious[..., None, :] >= deltas[:, None]


def topk_correct(class_scores: np.ndarray, label: int, k: int) -> bool:
    """Whether ``label`` is among the ``k`` highest scores (ties broken towards the lower class index)."""
    order = np.argsort(-np.asarray(class_scores, dtype=np.float64), kind="stable")
    return bool(label in order[:k])


def topk_correct_counts(class_scores, labels, ks=(1, 5)) -> np.ndarray:
    """For each ``k`` in ``ks``, how many images have their label among the ``k`` highest scores."""
    return np.array([sum(topk_correct(s, y, k) for s, y in zip(class_scores, labels)) for k in ks], dtype=np.int64)


def resize_mask(mask: np.ndarray, size: int = RESIZE_LENGTH) -> np.ndarray:
    """Binary mask of a grayscale annotation: nearest-neighbour resize to ``size`` x ``size``, then ``> 0.5``."""
    mask = np.asarray(mask, dtype=np.float32)
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST) > 0.5


def gt_pixel_labels(instance_masks, ignore_mask: np.ndarray) -> np.ndarray:
    """Pixel labels from resized binary masks: 1 foreground (any instance), 255 ignore (not foreground), else 0."""
    foreground = np.logical_or.reduce([np.asarray(m, dtype=bool) for m in instance_masks])
    ignore = np.logical_and(ignore_mask, ~foreground)
    return foreground.astype(np.uint8) + 255 * ignore.astype(np.uint8)


def pxap_bin_edges(thresholds: np.ndarray) -> np.ndarray:
    """Histogram edges for PxAP: the thresholds then ``1, 2, 3``; bins ``[e_i, e_i+1)``, the last closed."""
    return np.append(thresholds, [1.0, 2.0, 3.0])


def score_histograms(scoremap: np.ndarray, pixel_labels: np.ndarray, edges: np.ndarray):
    """Histograms (over ``edges``) of the scores of foreground pixels and of background pixels.

    Pixels labelled 255 (ignore) are dropped. Equals ``np.histogram(scores, bins=edges)`` per group for
    scores in ``[edges[0], edges[-1])``.
    """
    bins = np.searchsorted(edges, scoremap.ravel(), side="right") - 1
    labels = pixel_labels.ravel()
    num_bins = len(edges) - 1
    return (np.bincount(bins[labels == 1], minlength=num_bins)[:num_bins],
            np.bincount(bins[labels == 0], minlength=num_bins)[:num_bins])


def pxap_from_histograms(foreground_hist: np.ndarray, background_hist: np.ndarray):
    """PxAP (percent) and its precision-recall curve from pooled score histograms.

    With ``tp_k``, ``fp_k`` the counts of foreground / background pixels scoring at least the ``k``-th edge
    from the top (``k = 0`` is ``>= 2``, always empty), ``P`` the foreground pixels:
    ``PxAP = 100 * sum_{k >= 1, tp_k + fp_k > 0} precision_k (recall_k - recall_{k-1})``,
    ``precision = tp / (tp + fp)``, ``recall = tp / P``.

    Returns ``(pxap, precision, recall)``; precision is NaN where nothing is predicted.
    Raises ValueError if there is no foreground pixel or no positive prediction at all.
    """
    foreground_hist = np.asarray(foreground_hist, dtype=np.float64)
    background_hist = np.asarray(background_hist, dtype=np.float64)
    num_positive = foreground_hist.sum()
    tp = foreground_hist[::-1].cumsum()
    fp = background_hist[::-1].cumsum()
    if num_positive <= 0:
        raise ValueError("PxAP needs at least one foreground ground-truth pixel")
    predicted = tp + fp
    if (predicted <= 0).all():
        raise ValueError("PxAP needs at least one pixel with a positive prediction")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / predicted
    recall = tp / num_positive
    pxap = (precision[1:] * np.diff(recall))[predicted[1:] != 0].sum()
    return pxap * 100, precision, recall


def scoremap_problem(scoremap: np.ndarray) -> str | None:
    """Why ``scoremap`` is not a valid score map (2-D, finite, values in [0, 1]), or None if it is."""
    if scoremap.ndim != 2:
        return f"score map must be 2-D, got shape {scoremap.shape}"
    if not np.issubdtype(scoremap.dtype, np.floating) and not np.issubdtype(scoremap.dtype, np.integer):
        return f"score map must hold numbers, got dtype {scoremap.dtype}"
    if not np.isfinite(scoremap).all():
        return "score map holds NaN or Inf"
    low, high = scoremap.min(), scoremap.max()
    if low < 0 or high > 1:
        return f"score map values must lie in [0, 1], got min {low!r}, max {high!r}"
    return None


def box_statistics(scoremaps, gt_boxes, thresholds, iou_thresholds, labels=None, class_scores=None) -> dict:
    """Sufficient statistics of box localization over a batch of images (sums over the batch).

    Returns ``num_images``; ``hits`` (3, 2, len(iou_thresholds), len(thresholds)) counting images whose
    best IoU at a threshold reaches an IoU threshold, for [GT-known, also top-1 correct, also top-5
    correct] x [:data:`LARGEST`, :data:`ALL`]; ``num_classified``: the images that came with
    ``class_scores`` (one score vector per image, with ``labels``).
    """
    thresholds = np.asarray(thresholds)
    hits = np.zeros((3, 2, len(iou_thresholds), len(thresholds)), dtype=np.int64)
    for index, (scoremap, boxes) in enumerate(zip(scoremaps, gt_boxes)):
        image_hits = box_hits(best_ious_per_threshold(scoremap, np.asarray(boxes), thresholds), iou_thresholds)
        hits[0] += image_hits
        if class_scores is not None:
            top1 = topk_correct(class_scores[index], labels[index], 1)
            top5 = topk_correct(class_scores[index], labels[index], 5)
            hits[1] += image_hits & top1
            hits[2] += image_hits & top5
    num_images = len(scoremaps)
    return {"num_images": np.int64(num_images), "hits": hits,
            "num_classified": np.int64(num_images if class_scores is not None else 0)}


def mask_statistics(scoremaps, pixel_labels, edges) -> dict:
    """Sufficient statistics of PxAP over a batch: pooled foreground and background score histograms."""
    num_bins = len(edges) - 1
    foreground, background = np.zeros(num_bins, dtype=np.int64), np.zeros(num_bins, dtype=np.int64)
    for scoremap, labels in zip(scoremaps, pixel_labels):
        fg, bg = score_histograms(scoremap, labels, edges)
        foreground += fg
        background += bg
    return {"num_images": np.int64(len(scoremaps)), "foreground_hist": foreground, "background_hist": background}
