"""Speed of wsolbench's box metrics against a straightforward per-threshold implementation, in one run.

The straightforward implementation follows wsolevaluation's algorithm (research note §2.3): for every
threshold of ``np.arange(0, 1, step)``, threshold the full uint8 map with ``cv2.threshold``, run
``cv2.findContours`` on it, take the boxes of one contour mode, then the IoU of every box with the ground
truth. It needs one pass per contour mode; wsolbench computes both modes (MaxBoxAcc and MaxBoxAccV2) in one
pass. The bench checks that both give identical best IoUs, then prints maps/s and the ratios, and the
maps/s of ``evaluate`` with 1 and N worker processes on the same maps written to disk.

Usage: python bench/bench_metrics.py [--maps 40] [--step 0.001] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from wsolbench.data.metadata import SplitMetadata, write_split
from wsolbench.metrics import functional as F

# wsolbench.evaluate (torch) is imported inside main(): worker processes are spawned and re-import this file.


def realistic_cam(rng: np.random.Generator, grid: int = 14) -> np.ndarray:
    """A CAM-like map: 1-3 Gaussian activations plus low noise on a 14x14 grid, post-processed as a CAM."""
    yy, xx = np.mgrid[0:grid, 0:grid]
    low = 0.15 * rng.random((grid, grid))
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(1, grid - 1, 2)
        sigma = rng.uniform(0.8, grid / 4)
        low += rng.uniform(0.3, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return F.normalize_scoremap(low)


def straightforward_best_ious(scoremap, gt_boxes, thresholds, multi_contour):
    """Per-threshold reference algorithm for one contour mode: best IoU at each threshold."""
    q = (scoremap * 255).astype(np.uint8)
    height, width = q.shape
    best = np.empty(len(thresholds))
    for index, tau in enumerate(thresholds):
        _, binary = cv2.threshold(q, int(tau * np.max(q)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
        if len(contours) == 0:
            boxes = [[0, 0, 0, 0]]
        else:
            if not multi_contour:
                contours = [max(contours, key=cv2.contourArea)]
            boxes = []
            for contour in contours:
                x, y, w, h = cv2.boundingRect(contour)
                boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        best[index] = F.box_iou(np.array(boxes), gt_boxes).max()
    return best


def _rate(function, items) -> float:
    return _timed(function, items)[0]


def _timed(function, items):
    """(maps/s, results) of ``function`` over ``items``."""
    start = time.perf_counter()
    results = [function(item) for item in items]
    return len(items) / (time.perf_counter() - start), results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=40)
    parser.add_argument("--step", type=float, default=0.001)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--evaluate-maps", type=int, default=400, help="maps for the end-to-end evaluate timing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    thresholds = F.threshold_grid(args.step)
    cases = []
    for _ in range(args.maps):
        x0, y0 = rng.integers(0, 120, 2)
        cases.append((realistic_cam(rng), np.array([[x0, y0, x0 + rng.integers(40, 100), y0 + rng.integers(40, 100)]])))

    for scoremap, gt in cases[:3]:  # identical results before timing anything
        fast = F.best_ious_per_threshold(scoremap, gt, thresholds)
        assert (fast[F.ALL] == straightforward_best_ious(scoremap, gt, thresholds, True)).all()
        assert (fast[F.LARGEST] == straightforward_best_ious(scoremap, gt, thresholds, False)).all()

    reference_v2, want_v2 = _timed(lambda c: straightforward_best_ious(*c, thresholds, True), cases)
    reference_v1, want_v1 = _timed(lambda c: straightforward_best_ious(*c, thresholds, False), cases)
    both_passes = 1 / (1 / reference_v1 + 1 / reference_v2)
    wsolbench, got = _timed(lambda c: F.best_ious_per_threshold(*c, thresholds), cases)
    identical = all((g[F.ALL] == v2).all() and (g[F.LARGEST] == v1).all() for g, v1, v2 in zip(got, want_v1, want_v2))
    assert identical, "wsolbench and the straightforward implementation disagree on a timed map"

    from wsolbench.evaluate import evaluate_split

    with tempfile.TemporaryDirectory() as tmp:
        cases = [cases[i % len(cases)] for i in range(args.evaluate_maps)]
        ids = [f"c/{i}.jpg" for i in range(len(cases))]
        split = SplitMetadata(Path(tmp) / "meta", tuple(ids), {i: 0 for i in ids}, {i: (224, 224) for i in ids},
                              {i: tuple(map(tuple, c[1].tolist())) for i, c in zip(ids, cases)})
        write_split(split.folder, split)
        for image_id, (scoremap, _) in zip(ids, cases):
            (Path(tmp) / "maps" / image_id).parent.mkdir(parents=True, exist_ok=True)
            np.save(Path(tmp) / "maps" / f"{image_id}.npy", scoremap)
        rates = {}
        for workers in (1, args.workers):
            start = time.perf_counter()
            evaluate_split(split.folder, Path(tmp) / "maps", cam_curve_interval=args.step, workers=workers,
                           progress=False)
            rates[workers] = len(cases) / (time.perf_counter() - start)

    print(f"{len(cases)} maps written to disk, evaluate end to end (load + score, process start-up included):")
    print(f"  1 worker {rates[1]:.1f} maps/s, {args.workers} workers {rates[args.workers]:.1f} maps/s "
          f"(scaling {rates[args.workers] / rates[1]:.2f}x)")
    print(f"{args.maps} realistic 224x224 maps, threshold step {args.step} ({len(thresholds)} thresholds), 1 process")
    print(f"straightforward, MaxBoxAccV2 boxes only (1 pass):  {reference_v2:8.1f} maps/s")
    print(f"straightforward, MaxBoxAcc boxes only (1 pass):    {reference_v1:8.1f} maps/s")
    print(f"straightforward, both (2 passes, as the reference):{both_passes:8.1f} maps/s")
    print(f"wsolbench, both in one pass:                       {wsolbench:8.1f} maps/s "
          f"({1000 / wsolbench:.2f} ms/map; identical to the straightforward results on all {args.maps} maps)")
    print(f"ratio vs one straightforward pass:  {wsolbench / reference_v2:5.1f}x")
    print(f"ratio vs the two passes V1 + V2:    {wsolbench / both_passes:5.1f}x")


if __name__ == "__main__":
    main()
