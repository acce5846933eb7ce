"""The score schema: what the metrics compute and the one JSON dict that reports a split's scores.

:class:`BoxAccuracyResult` (:class:`~wsolbench.metrics.boxacc.BoxAccuracy`) and :class:`PxAPResult`
(:class:`~wsolbench.metrics.pxap.PxAP`) are the metrics' results; :class:`Evaluation` is one split's
outcome (a result plus classification accuracy); :func:`report_json` turns it into the dict that
``wsolbench evaluate --json`` prints and the training engine records for every evaluation. Torch-free
(numpy only), so that reading or writing scores never imports torch.

Keys of the dict (accuracies and thresholds as the reference computes them: accuracies in percent,
0-100; score-map thresholds ``tau`` in [0, 1), rounded to 10 decimals; IoU thresholds ``delta`` in
percent, written as strings when they are keys):

Every split:

* ``metadata``: the split's metadata folder (str);
* ``num_images``: images evaluated (int);
* ``cam_curve_interval``: the threshold step; thresholds are ``np.arange(0, 1, step)``;
* ``top1_cls``, ``top5_cls``: classification accuracy, %, present only when class scores were given.

Box splits (:class:`BoxAccuracyResult`):

* ``iou_thresholds``: the ``delta`` list of MaxBoxAccV2 (ints, percent), e.g. ``[30, 50, 70]``;
* ``maxboxacc``: MaxBoxAcc (V1): largest contour's box, ``delta = 50``, at its best ``tau``, %;
* ``maxboxacc_per_iou``: ``{delta: %}`` the V1 (largest-contour) accuracy at each of ``iou_thresholds``;
* ``best_threshold_v1``: ``{delta: tau}`` the first argmax ``tau`` of the largest-contour accuracy, for
  each of ``iou_thresholds`` and 50;
* ``maxboxacc_v2``: MaxBoxAccV2: mean over ``iou_thresholds`` of the all-contour MaxBoxAcc, %;
* ``maxboxacc_v2_per_iou``: ``{delta: %}`` its terms;
* ``best_threshold``: ``{delta: tau}`` the first argmax ``tau`` of each term;
* ``loc_contours``: ``"all"`` or ``"largest"``: the boxes of the Loc accuracies below;
* ``loc_threshold``: the fixed ``tau`` of the ``*_at_threshold`` keys, or null;
* ``gt_known_loc``: GT-known Loc (``delta = 50``, the ground-truth class's map) at its best ``tau``, %;
  ``gt_known_loc_best_threshold`` that ``tau``; ``gt_known_loc_at_threshold`` the accuracy at
  ``loc_threshold`` (only when one is set);
* ``top1_loc``, ``top1_loc_best_threshold``, ``top1_loc_at_threshold``, ``top5_loc``,
  ``top5_loc_best_threshold``, ``top5_loc_at_threshold``: the same for Top-1 / Top-5 Loc (also needs the
  ground-truth class among the top-k predictions), only when class scores were given;
* with ``curves=True``: ``thresholds`` (the ``tau`` grid) and ``curves``: ``{"largest" | "all": {delta:
  [% per tau]}}``, the accuracy-vs-threshold curves for ``iou_thresholds`` and 50.

Mask splits (:class:`PxAPResult`):

* ``pxap``: PxAP, pixel average precision pooled over the split, %;
* with ``curves=True``: ``pr_curve``: ``{"precision": [...], "recall": [...]}`` from the highest score bin
  down, fractions in [0, 1]; precision is null where no pixel scores that high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class LocAccuracy:
    """One localization accuracy (percent) at its best threshold, and at the fixed one if requested."""

    best: float
    best_threshold: float
    fixed: float | None = None


@dataclass
class BoxAccuracyResult:
    """Everything :class:`~wsolbench.metrics.boxacc.BoxAccuracy` computes; accuracies in percent."""

    num_images: int
    thresholds: np.ndarray
    iou_thresholds: tuple[int, ...]
    #: accuracy-vs-threshold curves, ``curves[mode][delta]`` (mode "largest" or "all")
    curves: dict[str, dict[int, np.ndarray]]
    maxboxacc: float
    maxboxacc_per_iou: dict[int, float]
    best_threshold_v1: dict[int, float]
    maxboxacc_v2: float
    maxboxacc_v2_per_iou: dict[int, float]
    best_threshold: dict[int, float]
    loc_contours: str
    loc_threshold: float | None
    loc: dict[str, LocAccuracy] = field(default_factory=dict)  # "gt_known", and "top1", "top5" with scores


@dataclass
class PxAPResult:
    """PxAP in percent and its curve: ``precision[k]``, ``recall[k]`` at score ``>= edges`` from the top."""

    num_images: int
    pxap: float
    precision: np.ndarray
    recall: np.ndarray


@dataclass
class Evaluation:
    """The outcome of scoring one split: the metric's result and, with class scores, Top-k classification
    (percent); ``resized`` lists the ``(image id, shape)`` of score maps that were not 224x224."""

    metadata_dir: Path
    cam_curve_interval: float
    result: BoxAccuracyResult | PxAPResult
    top1_cls: float | None = None
    top5_cls: float | None = None
    resized: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)


def report_json(evaluation: Evaluation, curves: bool = False) -> dict:
    """The score dict of ``evaluation`` (keys in the module docstring); ``curves`` adds the curves."""
    result = evaluation.result
    out = {"metadata": str(evaluation.metadata_dir), "num_images": result.num_images,
           "cam_curve_interval": evaluation.cam_curve_interval}
    if isinstance(result, PxAPResult):
        out["pxap"] = result.pxap
        if curves:
            out["pr_curve"] = {"precision": _finite_list(result.precision), "recall": result.recall.tolist()}
    else:
        out.update(
            iou_thresholds=list(result.iou_thresholds),
            maxboxacc=result.maxboxacc,
            maxboxacc_per_iou=_keyed(result.maxboxacc_per_iou),
            best_threshold_v1=_keyed(result.best_threshold_v1),
            maxboxacc_v2=result.maxboxacc_v2,
            maxboxacc_v2_per_iou=_keyed(result.maxboxacc_v2_per_iou),
            best_threshold=_keyed(result.best_threshold),
            loc_contours=result.loc_contours,
            loc_threshold=result.loc_threshold,
        )
        for kind, loc in result.loc.items():
            out[f"{kind}_loc"] = loc.best
            out[f"{kind}_loc_best_threshold"] = loc.best_threshold
            if loc.fixed is not None:
                out[f"{kind}_loc_at_threshold"] = loc.fixed
        if curves:
            out["thresholds"] = [round(float(t), 10) for t in result.thresholds]
            out["curves"] = {mode: _keyed({d: c.tolist() for d, c in table.items()})
                             for mode, table in result.curves.items()}
    if evaluation.top1_cls is not None:
        out["top1_cls"], out["top5_cls"] = evaluation.top1_cls, evaluation.top5_cls
    return out


def _keyed(table: dict) -> dict:
    """IoU-keyed table with string keys (JSON object keys)."""
    return {str(k): v for k, v in table.items()}


def _finite_list(values: np.ndarray) -> list:
    return [None if not math.isfinite(v) else v for v in values.tolist()]
