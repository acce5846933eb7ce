"""Score-map files and ground truth on disk -> metric statistics (torch-free, so worker processes start fast).

Score maps follow wsolevaluation's layout: ``<scoremap_dir>/<image_id>.npy`` with the image extension kept
(``val2/0/0.jpeg.npy``). A map must be 2-D, finite and within [0, 1]; one that is not 224x224 is resized
bicubically and min-max normalised (:func:`~wsolbench.metrics.functional.normalize_scoremap`) and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wsolbench.data.metadata import MaskAnnotation
from wsolbench.errors import ScoremapError, WsolbenchError
from wsolbench.metrics import functional as F


def scoremap_path(scoremap_dir: str | Path, image_id: str) -> Path:
    return Path(scoremap_dir) / f"{image_id}.npy"


def load_scoremap(scoremap_dir: str | Path, image_id: str) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """The 224x224 float64 map of ``image_id`` and, if it had to be resized, its original shape."""
    path = scoremap_path(scoremap_dir, image_id)
    try:
        scoremap = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ScoremapError(f"{path}: missing score map for image id {image_id!r}") from None
    except (OSError, ValueError) as error:
        raise ScoremapError(f"{path}: cannot be read as a .npy array ({error})") from None
    if not (np.issubdtype(scoremap.dtype, np.floating) or np.issubdtype(scoremap.dtype, np.integer)):
        raise ScoremapError(f"{path}: score map must hold numbers, got dtype {scoremap.dtype}")
    scoremap = scoremap.astype(np.float64)
    problem = F.scoremap_problem(scoremap)
    if problem:
        raise ScoremapError(f"{path}: {problem}")
    if scoremap.shape == (F.RESIZE_LENGTH, F.RESIZE_LENGTH):
        return scoremap, None
    return F.normalize_scoremap(scoremap), scoremap.shape


def _read_mask(path: Path, image_id: str) -> np.ndarray:
    if not path.is_file():
        raise WsolbenchError(f"{path}: missing mask PNG of image id {image_id!r}")
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise WsolbenchError(f"{path}: cannot be decoded as an image (mask of image id {image_id!r})")
    return F.resize_mask(mask)


def load_pixel_labels(mask_root: str | Path, image_id: str, annotation: MaskAnnotation) -> np.ndarray:
    """224x224 pixel labels (1 foreground, 0 background, 255 ignore) from an image's mask PNGs."""
    root = Path(mask_root)
    instances = [_read_mask(root / p, image_id) for p in annotation.mask_paths]
    return F.gt_pixel_labels(instances, _read_mask(root / annotation.ignore_path, image_id))


@dataclass(frozen=True)
class ScoringJob:
    """A chunk of images to score, self-contained so that it can be sent to a worker process.

    Box jobs carry ``gt_boxes`` (already at 224x224) and ``columns`` / ``iou_thresholds``; mask jobs carry
    ``masks`` with ``mask_root`` and ``edges``. ``labels`` / ``class_scores`` are optional (Top-k).
    """

    scoremap_dir: str
    image_ids: tuple[str, ...]
    gt_boxes: tuple[np.ndarray, ...] | None = None
    columns: np.ndarray | None = None
    iou_thresholds: tuple[int, ...] = ()
    masks: tuple[MaskAnnotation, ...] | None = None
    mask_root: str | None = None
    edges: np.ndarray | None = None
    labels: np.ndarray | None = None
    class_scores: np.ndarray | None = None


def single_threaded_worker() -> None:
    """Worker-process initializer: one OpenCV thread per worker, so N workers use N cores.

    It lives here, not in :mod:`wsolbench.evaluate`, so that spawned workers never import torch.
    """
    cv2.setNumThreads(1)


def score_job(job: ScoringJob) -> tuple[dict, list[tuple[str, tuple[int, ...]]]]:
    """Statistics of one chunk, and the ``(image_id, original shape)`` of every map that was resized."""
    scoremaps, resized = [], []
    for image_id in job.image_ids:
        scoremap, original_shape = load_scoremap(job.scoremap_dir, image_id)
        scoremaps.append(scoremap)
        if original_shape is not None:
            resized.append((image_id, original_shape))
    if job.masks is not None:
        labels = [load_pixel_labels(job.mask_root, i, a) for i, a in zip(job.image_ids, job.masks)]
        return F.mask_statistics(scoremaps, labels, job.edges), resized
    statistics = F.box_statistics(scoremaps, job.gt_boxes, job.columns, job.iou_thresholds,
                                  job.labels, job.class_scores)
    return statistics, resized
