"""The report's figures: what is plotted (returned by plain functions, so that tests check the data) and
the PNGs drawn from it with matplotlib.

Figures are ``matplotlib.figure.Figure`` objects on the Agg canvas, never pyplot: nothing global is
created or left open, and importing this module changes no matplotlib state. Text drawn from names
(image ids, method names) is drawn literally (``parse_math=False``), so a ``$`` in a name is no mathtext.

* :func:`threshold_curve_data`: the all-contour accuracy-vs-threshold curve of each MaxBoxAccV2 IoU and
  its first maximum, from the score dict of ``report_json(evaluation, curves=True)``;
* :func:`example_threshold`: the threshold the example boxes are drawn at (the first argmax of the
  all-contour IoU-50 curve: MaxBoxAccV2's ``best_threshold["50"]``, which is also GT-known Loc's best
  threshold when Loc uses all contours, the default); the boxes drawn there are the metric's own,
  :func:`wsolbench.metrics.functional.contour_boxes`;
* :func:`examples_figure`, :func:`threshold_curves_figure`, :func:`pr_curve_figure`: the PNG bytes.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from wsolbench.metrics import functional as F

DPI = 100
COLORMAP = "viridis"  #: perceptually uniform; holds no red and little pure green, the box colours
MAP_ALPHA = 0.5
GT_COLOR, PREDICTED_COLOR, IGNORE_COLOR = "#00ff40", "#ff2020", "#ffffff"
EXAMPLE_IOU = 50
_STROKE = [patheffects.withStroke(linewidth=3.6, foreground="black")]
_TILE_INCHES = 2.6


# --- the data ------------------------------------------------------------------------------------------------


def threshold_curve_data(scores: dict) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    """``{iou: (thresholds, accuracies, best_index)}`` for each of ``scores["iou_thresholds"]``.

    ``accuracies`` (percent) is the all-contour curve (a MaxBoxAccV2 term) at ``thresholds``, and
    ``best_index`` its first argmax, as the metric picks ``best_threshold``: ``thresholds[best_index] ==
    scores["best_threshold"][str(iou)]`` and ``accuracies[best_index] == scores["maxboxacc_v2_per_iou"][...]``.
    ``scores`` is ``report_json(evaluation, curves=True)`` of a box split.
    """
    if "curves" not in scores or "thresholds" not in scores:
        raise ValueError("the scores hold no accuracy curves (report_json(..., curves=True) of a box split)")
    thresholds = np.asarray(scores["thresholds"], dtype=np.float64)
    data = {}
    for iou in scores["iou_thresholds"]:
        accuracies = np.asarray(scores["curves"]["all"][str(iou)], dtype=np.float64)
        data[int(iou)] = (thresholds, accuracies, int(np.argmax(accuracies)))
    return data


def example_threshold(scores: dict) -> tuple[int, float]:
    """``(index, tau)``: the grid threshold the example boxes are drawn at, the first argmax of the
    all-contour IoU-50 accuracy curve (``tau`` is the exact ``np.arange`` value the metric cut the maps at;
    rounded to 10 decimals it is ``scores["best_threshold"]["50"]``)."""
    accuracies = np.asarray(scores["curves"]["all"][str(EXAMPLE_IOU)], dtype=np.float64)
    index = int(np.argmax(accuracies))
    return index, float(F.threshold_grid(scores["cam_curve_interval"])[index])


@dataclass
class ExampleTile:
    """One test image of ``examples.png``, everything at 224x224: the image (RGB uint8), its score map,
    and either ground-truth boxes with the predicted boxes, or a ground-truth mask (and ignore region)."""

    image_id: str
    label: int
    image: np.ndarray
    scoremap: np.ndarray
    gt_boxes: np.ndarray | None = None
    predicted: np.ndarray | None = None
    gt_mask: np.ndarray | None = None
    ignore_mask: np.ndarray | None = None

    @property
    def best_iou(self) -> float | None:
        """The best IoU of the predicted boxes against the ground truth (what makes the image a hit)."""
        if self.gt_boxes is None or self.predicted is None:
            return None
        return float(F.box_iou(self.predicted, self.gt_boxes).max())


# --- drawing -------------------------------------------------------------------------------------------------


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def short_id(image_id: str, length: int = 28) -> str:
    """The file name of an image id, shortened in the middle to ``length`` characters."""
    name = image_id.rsplit("/", 1)[-1]
    if len(name) <= length:
        return name
    head = (length - 1) // 2
    return name[:head] + "\u2026" + name[-(length - 1 - head):]


def _box_patch(box, color: str, width: float) -> Rectangle:
    x0, y0, x1, y1 = (float(c) for c in box)
    # inclusive pixel box: pixel i spans [i - 0.5, i + 0.5] in imshow's coordinates
    patch = Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor=color, linewidth=width)
    patch.set_path_effects(_STROKE)
    return patch


def examples_figure(tiles: list[ExampleTile], title: str, columns: int = 4) -> bytes:
    """A grid of test images with their maps overlaid and the boxes (or mask outlines) drawn; PNG bytes."""
    if not tiles:
        raise ValueError("no image to draw")
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    width = max(columns * _TILE_INCHES + 0.9, 4.4)
    figure = Figure(figsize=(width, rows * (_TILE_INCHES + 0.35) + 1.0), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    mappable = None
    masks = any(t.gt_mask is not None for t in tiles)
    ignored = any(t.ignore_mask is not None and t.ignore_mask.any() for t in tiles)
    for ax, tile in zip(axes.flat, tiles):
        ax.imshow(tile.image, interpolation="bilinear")
        mappable = ax.imshow(tile.scoremap, cmap=COLORMAP, vmin=0.0, vmax=1.0, alpha=MAP_ALPHA, interpolation="nearest")
        if tile.gt_mask is not None:
            outline = ax.contour(tile.gt_mask.astype(np.float64), levels=[0.5], colors=[GT_COLOR], linewidths=1.8)
            outline.set_path_effects(_STROKE)
            if tile.ignore_mask is not None and tile.ignore_mask.any():
                ax.contour(tile.ignore_mask.astype(np.float64), levels=[0.5], colors=[IGNORE_COLOR],
                           linewidths=1.0, linestyles="dashed")
        for box in () if tile.gt_boxes is None else tile.gt_boxes:
            ax.add_patch(_box_patch(box, GT_COLOR, 2.0))
        for box in () if tile.predicted is None else tile.predicted:
            ax.add_patch(_box_patch(box, PREDICTED_COLOR, 1.6))
        caption = f"{short_id(tile.image_id)}\nclass {tile.label}"
        if tile.best_iou is not None:
            caption += f" \u00b7 best IoU {tile.best_iou:.2f}"
        ax.set_title(caption, fontsize=8, parse_math=False)
        ax.set_xlim(-0.5, tile.scoremap.shape[1] - 0.5)
        ax.set_ylim(tile.scoremap.shape[0] - 0.5, -0.5)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.suptitle(textwrap.fill(title, int(width * 12)), fontsize=10, parse_math=False)  # ~12 characters an inch
    figure.colorbar(mappable, ax=axes, shrink=0.5, aspect=30, label="score map")
    handles = [Line2D([], [], color=GT_COLOR, lw=2.5, path_effects=_STROKE,
                      label="ground-truth mask outline" if masks else "ground-truth box")]
    if not masks:
        handles.append(Line2D([], [], color=PREDICTED_COLOR, lw=2.5, path_effects=_STROKE,
                              label="predicted boxes (every contour)"))
    if ignored:
        handles.append(Line2D([], [], color=IGNORE_COLOR, lw=1.2, ls="--", path_effects=_STROKE, label="ignore region"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles) if columns > 1 else 1,
                  fontsize=9, frameon=False)
    return _png(figure)


def threshold_curves_figure(data: dict[int, tuple[np.ndarray, np.ndarray, int]], title: str) -> bytes:
    """Accuracy against CAM threshold for each IoU, each curve's first maximum marked and labelled; PNG."""
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = figure.add_subplot()
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for k, (iou, (thresholds, accuracies, best)) in enumerate(data.items()):
        color = colors[k % len(colors)]
        tau, peak = thresholds[best], accuracies[best]
        ax.plot(thresholds, accuracies, color=color, lw=1.8,
                label=f"IoU {iou}%: max {peak:.2f}% at \u03c4 = {tau:g}")
        ax.axvline(tau, color=color, lw=0.8, ls=":")
        ax.plot([tau], [peak], marker="o", ms=7, color=color, mec="black", mew=0.8, zorder=3, clip_on=False)
        ax.annotate(f"{peak:.1f}%", (tau, peak), xytext=(5, 5), textcoords="offset points", fontsize=8,
                    color=color, fontweight="bold")
    ax.set_xlim(-0.01, 1)
    ax.set_ylim(0, 105)
    ax.set_xlabel("CAM threshold \u03c4")
    ax.set_ylabel("box accuracy (%), all contours")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    ax.set_title(title, fontsize=10, parse_math=False)
    return _png(figure)


def pr_curve_data(scores: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` of the PxAP curve, thresholds where nothing is predicted left out."""
    if "pr_curve" not in scores:
        raise ValueError("the scores hold no precision-recall curve (report_json(..., curves=True) of a mask split)")
    precision = np.array([np.nan if p is None else p for p in scores["pr_curve"]["precision"]], dtype=np.float64)
    recall = np.asarray(scores["pr_curve"]["recall"], dtype=np.float64)
    kept = np.isfinite(precision)
    return recall[kept], precision[kept]


def pr_curve_figure(scores: dict, title: str) -> bytes:
    """The PxAP precision-recall curve of a mask split, the PxAP in the legend; PNG bytes."""
    recall, precision = pr_curve_data(scores)
    figure = Figure(figsize=(5.6, 5.0), layout="constrained")
    ax = figure.add_subplot()
    # PxAP sums precision_k x (recall_k - recall_k-1): the area under this step curve
    ax.step(recall, precision, where="pre", color="#1f77b4", lw=1.8, label=f"PxAP = {scores['pxap']:.2f}%")
    ax.fill_between(recall, precision, step="pre", color="#1f77b4", alpha=0.12)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (foreground pixels)")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=10)
    ax.set_title(title, fontsize=10, parse_math=False)
    return _png(figure)
