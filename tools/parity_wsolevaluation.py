"""Parity check: ``wsolbench evaluate --json`` against clovaai/wsolevaluation's own evaluator.

The reference is imported from a checkout the user names (``--reference DIR``); none of its code is
part of wsolbench. From a seed, the tool writes synthetic cases in wsolevaluation's layout:

* box splits (CUB-like): CAM-like smooth maps, rings (holes), specks and 1-pixel lines (contour area 0),
  constant maps, maps whose maximum is below 1, plateaus of exact 1.0, equal-area ties, blobs touching
  the border, piecewise-constant level maps, coarse noise; 1-4 ground-truth boxes per image at odd
  original sizes (``int()`` box rescaling), some boxes touching the image border;
* mask splits (OpenImages-like): 0/255 instance PNGs at odd original sizes, several instances per image,
  ignore PNGs (some all zero), maps of the same kinds;
* a speed split of CAM-like maps, on which the reference's ``accumulate()`` is timed (interval 0.001,
  one process) and which is compared as well.

Maps are 224x224 ``<scoremaps>/<image_id>.npy`` files (extension kept), float32 or float64; the
reference gets them cast to float64. Every value (MaxBoxAcc, MaxBoxAccV2 and its per-IoU entries, PxAP)
must be equal as floats; the tool prints a summary and exits 1 on any mismatch or failure.

Usage::

    python tools/parity_wsolevaluation.py --reference /path/to/wsolevaluation [--cases N] [--seed S]
        [--out DIR] [--speed-maps M]

The reference needs ``munch`` importable and, under numpy 2, the removed aliases ``np.float`` and
``np.int``, which this tool sets before importing it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from tabulate import tabulate

from wsolbench.data.metadata import MaskAnnotation, SplitMetadata, write_split

SIZE = 224
INTERVALS = (0.001, 0.01)
IOU_THRESHOLDS = [30, 50, 70]
SPEED_INTERVAL = 0.001
#: Original image sizes (W, H) that make the ``int()`` rescaling of boxes and masks matter.
ODD_SIZES = [(333, 517), (7, 1000), (1000, 7), (224, 224), (225, 223), (448, 672), (672, 3), (2, 3),
             (1, 1), (500, 375), (4000, 2999), (97, 1301)]
BOX_KINDS = ["cam", "ring", "specks", "constant", "scaled", "plateau", "ties", "border", "levels", "noise",
             "exact_iou"]
MASK_KINDS = ["cam", "ring", "specks", "constant", "scaled", "plateau", "levels", "border"]


# ----------------------------------------------------------------------------------------- score maps

def _minmax(x: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)``; a constant array becomes zeros (the trainer's normalisation)."""
    x = x - x.min()
    top = x.max()
    return x / top if top > 0 else np.zeros_like(x)


def cam_map(rng, center=None, border=False) -> np.ndarray:
    """Gaussian blobs plus noise on a 14x14 (sometimes 28x28) grid, bicubic-upsampled, min-max normalised."""
    grid = 14 if rng.random() < 0.8 else 28
    yy, xx = np.mgrid[0:grid, 0:grid].astype(np.float64)
    low = np.zeros((grid, grid))
    for k in range(rng.integers(1, 4)):
        if k == 0 and center is not None:
            cx, cy = ((np.asarray(center, dtype=np.float64) + 0.5) * grid / SIZE - 0.5)
        else:
            cx, cy = rng.uniform(-0.5, grid - 0.5, size=2)
        if border:
            if rng.random() < 0.5:
                cx = rng.choice([0.0, grid - 1.0])
            else:
                cy = rng.choice([0.0, grid - 1.0])
        sigma = rng.uniform(0.6, 3.0) * grid / 14
        low += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    low += rng.normal(0.0, rng.uniform(0.0, 0.15), size=low.shape)
    return _minmax(cv2.resize(low, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC))


def ring_map(rng) -> np.ndarray:
    """One or two rings (contours with holes), soft or hard-edged, sometimes with a blob inside the hole."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    out = np.zeros((SIZE, SIZE))
    hard = rng.random() < 0.5
    for _ in range(rng.integers(1, 3)):
        cy, cx = rng.uniform(30, SIZE - 30, size=2)
        radius, width = rng.uniform(12, 70), rng.uniform(1.5, 10)
        d = np.hypot(yy - cy, xx - cx)
        if hard:
            ring = (np.abs(d - radius) < width).astype(np.float64)
            inner = 0.6 * (d < radius / 4)
        else:
            ring = np.exp(-((d - radius) / width) ** 2)
            inner = 0.6 * np.exp(-(d / max(radius / 5, 1)) ** 2)
        out = np.maximum(out, ring)
        if rng.random() < 0.5:
            out = np.maximum(out, inner)
    return out if hard else _minmax(out)


def specks_map(rng) -> np.ndarray:
    """Isolated pixels and 1-pixel-wide lines (contour area 0), some on the border; sometimes a small blob."""
    out = np.full((SIZE, SIZE), 0.02 if rng.random() < 0.2 else 0.0)
    for _ in range(rng.integers(1, 20)):
        y, x = rng.integers(0, SIZE, size=2)
        if rng.random() < 0.3:
            y, x = rng.choice([0, SIZE - 1]), rng.choice([0, rng.integers(0, SIZE), SIZE - 1])
        out[y, x] = rng.uniform(0.05, 1.0)
    for _ in range(rng.integers(0, 5)):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, SIZE, size=4))
        shape = rng.integers(0, 3)
        if shape == 0:
            y1 = y0  # horizontal
        elif shape == 1:
            x1 = x0  # vertical
        cv2.line(out, (x0, y0), (x1, y1), float(rng.uniform(0.05, 1.0)), thickness=1, lineType=cv2.LINE_8)
    if rng.random() < 0.4:
        y, x = rng.integers(0, SIZE - 6, size=2)
        out[y:y + rng.integers(2, 6), x:x + rng.integers(2, 6)] = rng.uniform(0.05, 1.0)
    if rng.random() < 0.5:
        out[rng.integers(0, SIZE), rng.integers(0, SIZE)] = 1.0
    return out


def ties_map(rng) -> np.ndarray:
    """Equal-area blobs (same ``contourArea`` (w-1)(h-1), different boxes) at one value, in random order."""
    shapes = [[(4, 6), (6, 4), (2, 16), (16, 2)], [(10, 10)] * 4, [(5, 9), (9, 5), (3, 17), (17, 3)],
              [(1, 1)] * 4, [(1, 7), (7, 1), (1, 30)]][rng.integers(0, 5)]
    out = np.zeros((SIZE, SIZE))
    taken = np.zeros((SIZE, SIZE), dtype=bool)
    value = rng.uniform(0.2, 1.0) if rng.random() < 0.7 else 1.0
    for w, h in rng.permutation(shapes)[: rng.integers(2, len(shapes) + 1)]:
        for _ in range(50):
            x, y = rng.integers(0, SIZE - w + 1), rng.integers(0, SIZE - h + 1)
            if not taken[max(y - 2, 0):y + h + 2, max(x - 2, 0):x + w + 2].any():
                taken[y:y + h, x:x + w] = True
                out[y:y + h, x:x + w] = value
                break
    if rng.random() < 0.3:
        out = np.maximum(out, 0.5 * value * cam_map(rng))
    return out


def levels_map(rng) -> np.ndarray:
    """Piecewise-constant blocks at values on or next to quantisation levels and threshold-grid points."""
    grid = int(rng.choice([4, 7, 8, 16, 32]))
    pool = np.concatenate([
        [0.0, 1.0, 0.5, 0.3, 0.7, 0.1, 0.2],
        rng.integers(0, 256, size=8) / 255,
        np.arange(0, 1, 0.001)[rng.integers(0, 1000, size=8)],
        np.arange(0, 1, 0.01)[rng.integers(0, 100, size=8)],
        rng.integers(0, 1000, size=8) / 1000,
        np.nextafter(rng.integers(1, 256, size=4) / 255, 0),
    ])
    blocks = rng.choice(pool, size=(grid, grid))
    return np.clip(cv2.resize(blocks, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST), 0.0, 1.0)


def noise_map(rng) -> np.ndarray:
    """Coarse uniform noise (many small contours)."""
    grid = int(rng.choice([16, 28]))
    return cv2.resize(rng.random((grid, grid)), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)


def exact_iou_case(rng) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A hard rectangle whose predicted box has IoU exactly 0.3, 0.5 or 0.7 with a GT box (224x224 image).

    The rectangle spans ``w`` x ``h`` pixels with ``h + 1`` = 10 or 20, so its predicted box (one pixel too
    large, inclusive) has ``h + 1`` rows; a GT box on the same columns with ``m`` of those rows has IoU
    ``m / (h + 1)``.
    """
    out = np.zeros((SIZE, SIZE))
    height = int(rng.choice([9, 19]))
    width = int(rng.integers(3, 60))
    x0, y0 = int(rng.integers(1, SIZE - width - 2)), int(rng.integers(1, SIZE - height - 2))
    out[y0:y0 + height, x0:x0 + width] = 1.0 if rng.random() < 0.3 else rng.uniform(0.2, 1.0)
    rows = int(rng.choice([3, 5, 7])) * (height + 1) // 10
    top = y0 + int(rng.integers(0, height + 2 - rows))
    boxes = [(x0, top, x0 + width, top + rows - 1)]
    if rng.random() < 0.5:
        rows = int(rng.choice([3, 5, 7])) * (height + 1) // 10
        boxes.append((x0, y0, x0 + width, y0 + rows - 1))
    return out, boxes


def make_map(kind: str, rng, index: int, center=None) -> np.ndarray:
    """A 224x224 float64 map in [0, 1] of the given kind (``index`` cycles the fixed variants)."""
    if kind == "cam":
        return cam_map(rng, center)
    if kind == "border":
        return cam_map(rng, border=True)
    if kind == "ring":
        return ring_map(rng)
    if kind == "specks":
        return specks_map(rng)
    if kind == "constant":
        return np.full((SIZE, SIZE), [0.0, 0.5, 1.0][index % 3])
    if kind == "scaled":
        return cam_map(rng, center) * [0.3, 0.004, 0.003, 0.02, 0.9999][index % 5]
    if kind == "plateau":
        return np.minimum(cam_map(rng, center) * rng.uniform(1.2, 2.5), 1.0)
    if kind == "ties":
        return ties_map(rng)
    if kind == "levels":
        return levels_map(rng)
    if kind == "noise":
        return noise_map(rng)
    raise ValueError(f"unknown map kind {kind!r}")


def save_map(path: Path, scoremap: np.ndarray, rng) -> str:
    """Write the map as float64, or (about a third of the time) float32; return the dtype name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.float32 if rng.random() < 0.35 else np.float64
    np.save(path, np.clip(scoremap, 0.0, 1.0).astype(dtype))
    return np.dtype(dtype).name


def kinds_for(count: int, kinds: list[str], rng) -> list[str]:
    """Every kind at least once (when ``count`` allows), the rest drawn at random, in shuffled order."""
    chosen = list(kinds[:count]) + list(rng.choice(kinds, size=max(count - len(kinds), 0)))
    return list(rng.permutation(chosen))


# ---------------------------------------------------------------------------------------------- splits

@dataclass
class Split:
    """One generated split: where its metadata, maps and masks lie, and what it holds."""

    name: str
    annotation: str  # "boxes" or "masks"
    metadata_dir: Path
    scoremaps_dir: Path
    mask_root: Path | None = None
    image_ids: list[str] = field(default_factory=list)
    notes: str = ""


def _to_original(box224, width: int, height: int, rng) -> tuple[int, int, int, int]:
    """A box drawn in 224 coordinates, mapped to an original W x H image (some snapped to the border)."""
    x0, y0, x1, y1 = box224
    x0 = math.floor(x0 * width / SIZE)
    y0 = math.floor(y0 * height / SIZE)
    x1 = min(math.ceil(x1 * width / SIZE), width - 1)
    y1 = min(math.ceil(y1 * height / SIZE), height - 1)
    if rng.random() < 0.25:
        x0 = 0
    if rng.random() < 0.25:
        x1 = width - 1
    if rng.random() < 0.2:
        y0 = 0
    if rng.random() < 0.2:
        y1 = height - 1
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    return x0, y0, max(x0, x1), max(y0, y1)


def _anchor_box(scoremap: np.ndarray, rng):
    """A box around the map's foreground at a random relative cut, jittered; None if that is empty."""
    if scoremap.max() <= 0:
        return None
    ys, xs = np.nonzero(scoremap > rng.uniform(0.15, 0.7) * scoremap.max())
    if len(xs) == 0:
        return None
    jitter = rng.integers(-6, 7, size=4)
    x0, y0 = np.clip([xs.min() + jitter[0], ys.min() + jitter[1]], 0, SIZE - 1)
    x1, y1 = np.clip([xs.max() + 1 + jitter[2], ys.max() + 1 + jitter[3]], 0, SIZE - 1)
    return int(x0), int(y0), int(max(x0, x1)), int(max(y0, y1))


def _random_box(rng):
    x0, x1 = sorted(int(v) for v in rng.integers(0, SIZE, size=2))
    y0, y1 = sorted(int(v) for v in rng.integers(0, SIZE, size=2))
    return x0, y0, x1, y1


def _image_size(rng) -> tuple[int, int]:
    if rng.random() < 0.7:
        return ODD_SIZES[rng.integers(0, len(ODD_SIZES))]
    return int(rng.integers(2, 2000)), int(rng.integers(2, 2000))


def make_box_split(root: Path, name: str, rng, num_images: int, kinds: list[str] | None = None) -> Split:
    """A CUB-like split under ``root``: metadata, maps, and 1-4 GT boxes per image at odd original sizes."""
    split = Split(name, "boxes", root / "metadata" / "CUB" / "test", root / "scoremaps" / "CUB")
    labels, sizes, boxes, dtypes = {}, {}, {}, []
    for index, kind in enumerate(kinds or kinds_for(num_images, BOX_KINDS, rng)):
        cls = int(rng.integers(0, 200))
        image_id = f"{cls + 1:03d}.Class_{cls}/img_{index:03d}_{kind}.jpg"
        if kind == "exact_iou":
            scoremap, exact = exact_iou_case(rng)
            sizes[image_id], boxes[image_id] = (SIZE, SIZE), tuple(exact)
        else:
            scoremap = make_map(kind, rng, index)
            width, height = _image_size(rng)
            drawn = [_anchor_box(scoremap, rng) or _random_box(rng)]
            drawn += [_random_box(rng) if rng.random() < 0.5 else _anchor_box(scoremap, rng) or _random_box(rng)
                      for _ in range(rng.integers(0, 4))]
            sizes[image_id] = (width, height)
            boxes[image_id] = tuple(_to_original(b, width, height, rng) for b in drawn)
        dtypes.append(save_map(split.scoremaps_dir / f"{image_id}.npy", scoremap, rng))
        split.image_ids.append(image_id)
        labels[image_id] = cls
    write_split(split.metadata_dir, SplitMetadata(split.metadata_dir, tuple(split.image_ids), labels, sizes, boxes))
    split.notes = f"{len(split.image_ids)} images, {sum(map(len, boxes.values()))} boxes, " \
                  f"{dtypes.count('float32')} float32 maps"
    return split


def _draw_instance(rng, width: int, height: int) -> np.ndarray:
    """A uint8 instance mask, 0/255 (ellipses sometimes anti-aliased): ellipse, rectangle, polygon, pixel or all."""
    mask = np.zeros((height, width), dtype=np.uint8)
    shape = rng.choice(["ellipse", "rectangle", "polygon", "pixel", "full"], p=[0.35, 0.3, 0.25, 0.05, 0.05])
    if shape == "ellipse":
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(1, max(width // 2, 2))), int(rng.integers(1, max(height // 2, 2))))
        antialiased = rng.random() < 0.3  # edge values between 1 and 254
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, thickness=-1,
                    lineType=cv2.LINE_AA if antialiased else cv2.LINE_8)
    elif shape == "rectangle":
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, size=2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, size=2))
        mask[y0:y1 + 1, x0:x1 + 1] = 255
    elif shape == "polygon":
        points = np.stack([rng.integers(0, width, size=5), rng.integers(0, height, size=5)], axis=1)
        cv2.fillPoly(mask, [points.astype(np.int32)], 255)
    elif shape == "pixel":
        mask[rng.integers(0, height), rng.integers(0, width)] = 255
    else:
        mask[:] = 255
    return mask


def make_mask_split(root: Path, name: str, rng, num_images: int) -> Split:
    """An OpenImages-like split: 0/255 instance PNGs and ignore PNGs (some all zero), maps of many kinds."""
    data_root = root / "dataset" / "OpenImages"
    split = Split(name, "masks", root / "metadata" / "OpenImages" / "test", root / "scoremaps" / "OpenImages",
                  mask_root=data_root)
    labels, masks, dtypes, instances, empty_ignores = {}, {}, [], 0, 0
    for index, kind in enumerate(kinds_for(num_images, MASK_KINDS, rng)):
        cls = int(rng.integers(0, 100))
        stem = f"{rng.integers(0, 2 ** 48):012x}_{kind}"
        image_id = f"test/c{cls:02d}/{stem}.jpg"
        width, height = _image_size(rng) if index else (333, 517)
        paths = []
        foreground = np.zeros((height, width), dtype=bool)
        for k in range(rng.integers(1, 5)):
            mask = _draw_instance(rng, width, height) if (index or k) else _big_instance(width, height)
            foreground |= mask > 0
            path = f"test/c{cls:02d}/{stem}_m{k}.png"
            _write_png(data_root / path, mask)
            paths.append(path)
        ignore = np.zeros((height, width), dtype=np.uint8)
        if rng.random() < 0.6:
            for _ in range(rng.integers(1, 3)):
                x0, x1 = sorted(int(v) for v in rng.integers(0, width, size=2))
                y0, y1 = sorted(int(v) for v in rng.integers(0, height, size=2))
                ignore[y0:y1 + 1, x0:x1 + 1] = 255
        empty_ignores += not ignore.any()
        ignore_path = f"test/c{cls:02d}/{stem}_ignore.png"
        _write_png(data_root / ignore_path, ignore)
        center = None
        if foreground.any():
            ys, xs = np.nonzero(foreground)
            center = (xs.mean() * SIZE / width, ys.mean() * SIZE / height)
        scoremap = make_map(kind, rng, index, center=center)
        dtypes.append(save_map(split.scoremaps_dir / f"{image_id}.npy", scoremap, rng))
        split.image_ids.append(image_id)
        labels[image_id] = cls
        masks[image_id] = MaskAnnotation(tuple(paths), ignore_path)
        instances += len(paths)
    write_split(split.metadata_dir, SplitMetadata(split.metadata_dir, tuple(split.image_ids), labels, masks=masks))
    split.notes = f"{len(split.image_ids)} images, {instances} instance masks, {empty_ignores} empty ignore " \
                  f"masks, {dtypes.count('float32')} float32 maps"
    return split


def _big_instance(width: int, height: int) -> np.ndarray:
    """A centred ellipse covering about half the image, so that every split has foreground pixels."""
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.ellipse(mask, (width // 2, height // 2), (max(width // 3, 1), max(height // 3, 1)), 0, 0, 360, 255, -1)
    return mask


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


# ------------------------------------------------------------------------------------------- reference

def load_reference(folder: Path) -> SimpleNamespace:
    """Import wsolevaluation's ``evaluation`` and ``data_loaders`` from a checkout, under numpy 2."""
    if not (folder / "evaluation.py").is_file():
        raise SystemExit(f"parity: error: {folder} has no evaluation.py (pass a wsolevaluation checkout)")
    np.float = float  # removed aliases the reference still uses
    np.int = int
    sys.path.insert(0, str(folder))
    import data_loaders  # noqa: PLC0415  (the reference's modules, importable only now)
    import evaluation  # noqa: PLC0415
    return SimpleNamespace(evaluation=evaluation, data_loaders=data_loaders)


def load_maps(split: Split) -> dict[str, np.ndarray]:
    """Every map of the split, cast to float64 as the reference's loader does."""
    return {i: np.load(split.scoremaps_dir / f"{i}.npy").astype(np.float64) for i in split.image_ids}


def _box_evaluator(ref, split: Split, interval: float, multi_contour: bool):
    return ref.evaluation.BoxEvaluator(
        metadata=ref.data_loaders.configure_metadata(str(split.metadata_dir)), dataset_name="CUB", split="test",
        cam_threshold_list=list(np.arange(0, 1, interval)), iou_threshold_list=IOU_THRESHOLDS,
        mask_root=None, multi_contour_eval=multi_contour)


def _box_expectations(v1, v2) -> dict[tuple[str, ...], object]:
    """Expected JSON values from the reference's V1 and V2 evaluators (after ``accumulate``).

    Taken as returned by ``compute()``: ``maxboxacc`` (V1 at IoU 50), ``maxboxacc_per_iou`` (V1 list),
    ``maxboxacc_v2`` (mean of the V2 list), ``maxboxacc_v2_per_iou``. Derived from the evaluators' state
    with their own formula ``num_correct * 100. / cnt``: the accuracy curves, the best thresholds (first
    argmax, rounded to 10 decimals as wsolbench prints them) and GT-known Loc (V2 at IoU 50).
    """
    thresholds = v1.cam_threshold_list
    list_v1, list_v2 = v1.compute(), v2.compute()
    at50 = IOU_THRESHOLDS.index(50)
    expected = {("num_images",): v1.cnt, ("maxboxacc",): float(list_v1[at50]),
                ("maxboxacc_v2",): float(np.average(list_v2)), ("gt_known_loc",): float(list_v2[at50])}
    for delta, a, b in zip(IOU_THRESHOLDS, list_v1, list_v2):
        key = str(delta)
        expected[("maxboxacc_per_iou", key)] = float(a)
        expected[("maxboxacc_v2_per_iou", key)] = float(b)
        for mode, evaluator, best in (("largest", v1, "best_threshold_v1"), ("all", v2, "best_threshold")):
            curve = evaluator.num_correct[delta] * 100. / float(evaluator.cnt)
            expected[("curves", mode, key)] = [float(c) for c in curve]
            expected[(best, key)] = round(float(thresholds[int(np.argmax(curve))]), 10)
    return expected


def reference_values(ref, split: Split, interval: float, maps: dict[str, np.ndarray]):
    """The reference's numbers for one split at one threshold interval, keyed by wsolbench's JSON path."""
    if split.annotation == "boxes":
        evaluators = [_box_evaluator(ref, split, interval, multi_contour) for multi_contour in (False, True)]
        for evaluator in evaluators:
            for image_id in split.image_ids:
                evaluator.accumulate(maps[image_id], image_id)
        return _box_expectations(*evaluators)
    evaluator = ref.evaluation.MaskEvaluator(
        metadata=ref.data_loaders.configure_metadata(str(split.metadata_dir)), dataset_name="OpenImages",
        split="test", cam_threshold_list=list(np.arange(0, 1, interval)), iou_threshold_list=IOU_THRESHOLDS,
        mask_root=str(split.mask_root), multi_contour_eval=False)
    for image_id in split.image_ids:
        evaluator.accumulate(maps[image_id], image_id)
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(invalid="ignore"):  # compute() prints its result
        return {("num_images",): len(split.image_ids), ("pxap",): float(evaluator.compute())}


def time_reference(ref, split: Split, maps: dict[str, np.ndarray]):
    """Speed of the reference's ``accumulate()`` at interval 0.001 (V1, V2), and its values.

    Speed is ``(maps/s over the whole loop, maps/s from the median time per map)``; the median is less
    sensitive to other processes competing for the CPU.
    """
    speed, evaluators = {}, []
    for label, multi_contour in (("V1 (largest contour)", False), ("V2 (all contours)", True)):
        evaluator = _box_evaluator(ref, split, SPEED_INTERVAL, multi_contour)
        seconds = []
        for image_id in split.image_ids:
            start = time.perf_counter()
            evaluator.accumulate(maps[image_id], image_id)
            seconds.append(time.perf_counter() - start)
        speed[label] = (len(seconds) / sum(seconds), 1 / float(np.median(seconds)))
        evaluators.append(evaluator)
    from wsolbench.metrics.functional import best_ious_per_threshold, threshold_grid  # noqa: PLC0415

    thresholds, seconds = threshold_grid(SPEED_INTERVAL), []
    for image_id in split.image_ids:
        gt_boxes = np.array(evaluators[0].gt_bboxes[image_id])
        start = time.perf_counter()
        best_ious_per_threshold(maps[image_id], gt_boxes, thresholds)
        seconds.append(time.perf_counter() - start)
    speed["wsolbench (V1 and V2 together)"] = (len(seconds) / sum(seconds), 1 / float(np.median(seconds)))
    return speed, _box_expectations(*evaluators)


# ------------------------------------------------------------------------------------------- wsolbench

def wsolbench_command(split: Split, interval: float) -> list[str]:
    """The ``wsolbench evaluate`` command line for a split (the console script next to this Python)."""
    command = [str(Path(sys.executable).with_name("wsolbench")), "evaluate", "--metadata", str(split.metadata_dir),
               "--scoremaps", str(split.scoremaps_dir)]
    if split.mask_root is not None:
        command += ["--mask-root", str(split.mask_root)]
    return command + ["--cam-curve-interval", repr(interval),
                      "--iou-thresholds", *map(str, IOU_THRESHOLDS), "--curves", "--json"]


def wsolbench_values(split: Split, interval: float, in_process: bool) -> tuple[dict | None, str]:
    """The JSON object ``wsolbench evaluate`` prints, or None and why it failed.

    ``in_process`` calls the functions behind the command (``evaluate_split`` + ``report_json``) instead of
    the console script, for when the command line itself is broken.
    """
    if in_process:
        from wsolbench.errors import WsolbenchError  # noqa: PLC0415
        from wsolbench.evaluate import evaluate_split, report_json  # noqa: PLC0415
        try:
            evaluation = evaluate_split(split.metadata_dir, split.scoremaps_dir, mask_root=split.mask_root,
                                        cam_curve_interval=interval, iou_thresholds=IOU_THRESHOLDS, progress=False)
        except WsolbenchError as error:
            return None, f"WsolbenchError: {error}"
        return json.loads(json.dumps(report_json(evaluation, curves=True))), ""
    done = subprocess.run(wsolbench_command(split, interval), capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-400:]}"
    try:
        return json.loads(done.stdout), ""
    except json.JSONDecodeError as error:
        return None, f"stdout is not JSON ({error}): {done.stdout[:300]!r}"


# ---------------------------------------------------------------------------------------------- compare

_MISSING = object()


def _lookup(payload, path: tuple[str, ...]):
    for key in path:
        if not isinstance(payload, dict) or key not in payload:
            return _MISSING
        payload = payload[key]
    return payload


def _same(want, got) -> bool:
    """Exact equality: numbers as floats, lists element by element (bool is not a number here)."""
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(_same(w, g) for w, g in zip(want, got))
    return isinstance(got, (int, float)) and not isinstance(got, bool) and float(got) == float(want)


def _describe(want, got, thresholds) -> tuple[str, str]:
    """Readable reference / wsolbench values; for curves, the first differing point and the count."""
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        differ = [k for k, (w, g) in enumerate(zip(want, got)) if not _same(w, g)]
        k = differ[0]
        where = f"{len(differ)} points differ; first at index {k} (tau={float(thresholds[k])!r}): "
        return where + repr(want[k]), repr(got[k])
    if isinstance(want, list):
        return f"list of {len(want)}", "missing" if got is _MISSING else f"{type(got).__name__}: {str(got)[:60]}"
    return repr(want), "missing" if got is _MISSING else repr(got)


def compare(expected: dict, payload: dict, interval: float) -> list[tuple[str, str, str]]:
    """``(value, reference, wsolbench)`` for every expected value that wsolbench's JSON does not match."""
    thresholds = list(np.arange(0, 1, interval))
    return [(".".join(path), *_describe(want, _lookup(payload, path), thresholds))
            for path, want in expected.items() if not _same(want, _lookup(payload, path))]


def single_image_split(split: Split, index: int, root: Path) -> Split:
    """A one-image copy of ``split`` (its own metadata folder; same maps and masks)."""
    from wsolbench.data.metadata import read_split  # noqa: PLC0415
    full = read_split(split.metadata_dir)
    image_id = split.image_ids[index]
    folder = root / "single" / split.name / f"{index:03d}" / split.metadata_dir.relative_to(
        split.metadata_dir.parents[2])
    subset = SplitMetadata(folder, (image_id,), {image_id: full.class_labels[image_id]},
                           {k: v for k, v in full.image_sizes.items() if k == image_id},
                           {k: v for k, v in full.boxes.items() if k == image_id},
                           {k: v for k, v in full.masks.items() if k == image_id})
    write_split(folder, subset)
    return Split(f"{split.name}#{index}", split.annotation, folder, split.scoremaps_dir, split.mask_root, [image_id])


def localize(ref, split: Split, interval: float, maps, root: Path, in_process: bool) -> list[tuple]:
    """Score each image of a mismatching split alone; return the images whose values still differ."""
    found = []
    for index, image_id in enumerate(split.image_ids):
        single = single_image_split(split, index, root)
        try:
            expected = reference_values(ref, single, interval, maps)
        except RuntimeError as error:  # e.g. PxAP of an image with no foreground pixel left
            expected = None
            reference_error = str(error)
        payload, problem = wsolbench_values(single, interval, in_process)
        if expected is None or payload is None:
            if (expected is None) != (payload is None):
                found.append((image_id, "error" if expected is None else "ok",
                              reference_error if expected is None else problem, str(single.metadata_dir)))
            continue
        for name, want, got in compare(expected, payload, interval):
            found.append((image_id, name, f"ref {want} / wsolbench {got}", str(single.metadata_dir)))
    return found


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="a clovaai/wsolevaluation checkout")
    parser.add_argument("--cases", type=int, default=6, help="number of cases (each: one box and one mask split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write (and keep) the generated cases here")
    parser.add_argument("--images", type=int, default=20, help="images per box split (mask splits: half)")
    parser.add_argument("--speed-maps", type=int, default=100, help="CAM-like maps in the timed speed split")
    parser.add_argument("--in-process", action="store_true",
                        help="call wsolbench's evaluate functions instead of the `wsolbench evaluate` command")
    parser.add_argument("--no-localize", action="store_true",
                        help="do not re-score a mismatching split image by image")
    return parser.parse_args(argv)


def generate(root: Path, cases: int, seed: int, images: int, speed_maps: int) -> list[Split]:
    """The box and mask split of every case, then the speed split (last)."""
    splits = []
    for case in range(cases):
        rng = np.random.default_rng([seed, case])
        splits.append(make_box_split(root / f"case{case:02d}-boxes", f"case{case:02d}-boxes", rng, images))
        splits.append(make_mask_split(root / f"case{case:02d}-masks", f"case{case:02d}-masks", rng,
                                      max(images // 2, len(MASK_KINDS))))
    rng = np.random.default_rng([seed, 10 ** 6])
    splits.append(make_box_split(root / "speed-boxes", "speed-boxes", rng, speed_maps, ["cam"] * speed_maps))
    return splits


def run(args) -> int:
    ref = load_reference(args.reference.resolve())
    with contextlib.ExitStack() as stack:
        if args.out is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wsolbench-parity-")))
        else:
            root = args.out.resolve()
            root.mkdir(parents=True, exist_ok=True)
        splits = generate(root, args.cases, args.seed, args.images, args.speed_maps)
        print(f"generated {len(splits)} splits under {root} (seed {args.seed})")
        print(tabulate([(s.name, s.annotation, s.notes) for s in splits], headers=["split", "kind", "contents"]))

        speed_split = splits[-1]
        load = os.getloadavg()[0]
        speed, speed_expected = time_reference(ref, speed_split, load_maps(speed_split))

        rows, mismatches, failures, culprits, compared = [], [], [], [], 0
        for split in splits:
            maps = load_maps(split)
            for interval in INTERVALS:
                if split is speed_split and interval == SPEED_INTERVAL:
                    expected = speed_expected
                else:
                    expected = reference_values(ref, split, interval, maps)
                payload, problem = wsolbench_values(split, interval, args.in_process)
                if payload is None:
                    failures.append((split.name, interval, problem, " ".join(wsolbench_command(split, interval))))
                    rows.append((split.name, interval, len(expected), "-", "FAILED"))
                    continue
                bad = compare(expected, payload, interval)
                compared += len(expected)
                mismatches += [(split.name, interval, *m) for m in bad]
                rows.append((split.name, interval, len(expected), len(bad), "MISMATCH" if bad else "ok"))
                if bad and not args.no_localize:
                    culprits += [(split.name, interval, *c)
                                 for c in localize(ref, split, interval, maps, root, args.in_process)]
        print()
        print(tabulate(rows, headers=["split", "interval", "values", "mismatches", "status"]))
        if mismatches:
            print("\nmismatches (reference vs wsolbench):")
            print(tabulate(mismatches, headers=["split", "interval", "value", "reference", "wsolbench"]))
        if culprits:
            print("\nimages that differ when scored alone:")
            print(tabulate(culprits, headers=["split", "interval", "image", "value", "detail", "one-image split"]))
        for name, interval, problem, command in failures:
            print(f"\nwsolbench failed on {name} at interval {interval}:\n  $ {command}\n  {problem}")
        print(f"\nreference accumulate() and wsolbench speed at interval {SPEED_INTERVAL}, {len(speed_split.image_ids)} CAM-like "
              f"224x224 maps, one process ({os.cpu_count()} CPUs, load average {load:.2f} when timing began):")
        for label, (overall, median) in speed.items():
            print(f"  {label}: {overall:.1f} maps/s overall, {median:.1f} maps/s from the median time per map")
        ours = speed["wsolbench (V1 and V2 together)"][0]
        v1, v2 = speed["V1 (largest contour)"][0], speed["V2 (all contours)"][0]
        print(f"  wsolbench / reference: {ours / v2:.1f}x its V2 pass, {ours / v1:.1f}x its V1 pass, "
              f"{ours * (1 / v1 + 1 / v2):.1f}x the two passes that give both")
        how = "wsolbench's evaluate functions (in process)" if args.in_process else "`wsolbench evaluate --json`"
        print(f"\ncompared {compared} values ({how}) over {len(splits)} splits x {len(INTERVALS)} intervals: "
              f"{len(mismatches)} mismatches, {len(failures)} failures")
        return 1 if mismatches or failures else 0


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
