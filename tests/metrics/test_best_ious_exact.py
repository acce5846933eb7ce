"""best_ious_per_threshold against a straightforward per-threshold cv2 implementation, bit for bit.

The reference below is written from the definition (research note §2.3): at every threshold, threshold the
full uint8 map, trace every contour (RETR_TREE), V1 keeps the first contour of maximal contourArea, V2 all
of them; boxes (x, y, min(x+w, W-1), min(y+h, H-1)); no contour gives [0, 0, 0, 0]. Maps cover holes and
rings, specks, 1-pixel lines, constant and all-zero maps, plateaus of 1.0, equal-area ties, border-touching
blobs, level maps, coarse noise, maps whose max is below 1, odd sizes and several GT boxes.
"""

import cv2
import numpy as np
import pytest

from wsolbench.metrics import functional as F


def _iou(a, b):
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def straightforward(scoremap, gt_boxes, thresholds):
    """(2, T) best IoUs, one full-map threshold + findContours per threshold."""
    q = (scoremap * 255).astype(np.uint8)
    height, width = q.shape
    out = np.empty((2, len(thresholds)))
    for t, tau in enumerate(thresholds):
        binary = cv2.threshold(q, int(tau * np.max(q)), 255, cv2.THRESH_BINARY)[1]
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
        for row, chosen in ((F.LARGEST, [max(contours, key=cv2.contourArea)] if contours else []),
                            (F.ALL, list(contours))):
            boxes = []
            for contour in chosen:
                x, y, w, h = cv2.boundingRect(contour)
                boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
            boxes = boxes or [[0, 0, 0, 0]]
            out[row, t] = max(_iou(p, g) for p in boxes for g in gt_boxes)
    return out


def _blobs(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    out = 0.1 * rng.random((h, w))
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(-2, h + 2), rng.uniform(-2, w + 2)  # sometimes past the border
        s = rng.uniform(1, max(h, w) / 3)
        out += rng.uniform(0.3, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return out / out.max()


def _ring(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(yy - rng.uniform(0, h), xx - rng.uniform(0, w))
    r, width = rng.uniform(2, max(h, w) / 2), rng.uniform(0.5, 4)
    out = np.exp(-((d - r) / width) ** 2)
    if rng.random() < 0.5:
        out = (np.abs(d - r) < width).astype(float) + 0.6 * (d < r / 3)
        out /= out.max()
    return out


def _specks_and_lines(rng, h, w):
    out = np.zeros((h, w))
    for _ in range(rng.integers(1, 12)):
        out[rng.integers(0, h), rng.integers(0, w)] = rng.uniform(0.05, 1)
    for _ in range(rng.integers(0, 4)):
        x0, x1 = sorted(rng.integers(0, w, 2))
        y0, y1 = sorted(rng.integers(0, h, 2))
        kind = rng.integers(0, 3)
        if kind == 0:
            out[y0, x0:x1 + 1] = rng.uniform(0.05, 1)
        elif kind == 1:
            out[y0:y1 + 1, x0] = rng.uniform(0.05, 1)
        else:
            cv2.line(out, (int(x0), int(y0)), (int(x1), int(y1)), float(rng.uniform(0.05, 1)), 1, cv2.LINE_8)
    return out


def _ties(rng, h, w):
    out = np.zeros((h, w))
    shapes = [(3, 5), (5, 3), (2, 9), (9, 2), (4, 4), (1, 1), (1, 6), (6, 1)]
    value = 1.0 if rng.random() < 0.5 else rng.uniform(0.2, 1)
    for sh, sw in rng.permutation(shapes)[: rng.integers(2, 6)]:
        y, x = rng.integers(0, max(h - sh, 1)), rng.integers(0, max(w - sw, 1))
        out[y:y + sh, x:x + sw] = value
    return out


def _levels(rng, h, w):
    grid = rng.integers(2, 9)
    pool = np.concatenate([[0.0, 1.0, 0.5], rng.integers(0, 256, 6) / 255,
                           np.nextafter(rng.integers(1, 256, 3) / 255, 0), rng.random(3)])
    blocks = rng.choice(pool, size=(grid, grid))
    return cv2.resize(blocks, (w, h), interpolation=cv2.INTER_NEAREST)


def _noise(rng, h, w):
    grid = rng.integers(3, 12)
    return cv2.resize(rng.random((grid, grid)), (w, h), interpolation=cv2.INTER_NEAREST)


def _fixed_maps():
    ring = np.zeros((40, 50))
    ring[5:30, 5:40] = 0.9
    ring[10:20, 10:20] = 0.1
    ring[12:14, 25:35] = 0.3
    thin_ring = np.zeros((9, 9))
    thin_ring[2:7, 2:7] = 1.0
    thin_ring[3:6, 3:6] = 0.0  # a 1-pixel-wide ring: its hole contour is as large as it gets
    single_hole = np.ones((3, 3))
    single_hole[1, 1] = 0.0
    diagonal = np.eye(12)
    border = np.zeros((15, 17))
    border[0, :] = 1.0
    border[:, -1] = 0.5
    border[7:, 0] = 0.7
    nested = np.zeros((21, 21))
    nested[1:20, 1:20] = 0.3
    nested[3:18, 3:18] = 0.0
    nested[5:16, 5:16] = 0.6
    nested[8:13, 8:13] = 0.0
    nested[10, 10] = 1.0
    return [ring, thin_ring, single_hole, diagonal, border, nested, np.zeros((20, 20)), np.zeros((1, 1)),
            np.ones((1, 1)), np.full((13, 7), 0.5), np.ones((20, 20)), np.ones((224, 224)),
            np.full((5, 5), 0.003)]


_KINDS = [_blobs, _ring, _specks_and_lines, _ties, _levels, _noise]


def _random_case(rng):
    h, w = (224, 224) if rng.random() < 0.2 else tuple(int(v) for v in rng.integers(2, 70, 2))
    scoremap = _KINDS[rng.integers(0, len(_KINDS))](rng, h, w)
    scoremap = np.clip(scoremap, 0, 1)
    roll = rng.random()
    if roll < 0.15:
        scoremap = scoremap * rng.choice([0.3, 0.02, 0.004, 0.9999])  # max below 1
    elif roll < 0.3:
        scoremap = np.minimum(scoremap * rng.uniform(1.2, 3), 1.0)  # plateaus of 1.0
    return scoremap, _gt(rng, h, w)


def _gt(rng, h, w):
    boxes = []
    for _ in range(rng.integers(1, 5)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        boxes.append([x0, y0, rng.integers(x0, w + 2), rng.integers(y0, h + 2)])
    return np.array(boxes)


def _check(scoremap, gt, thresholds):
    fast = F.best_ious_per_threshold(scoremap, gt, thresholds)
    want = straightforward(scoremap, gt, thresholds)
    assert fast.shape == want.shape
    bad = np.argwhere(fast != want)
    assert not len(bad), f"first mismatch (row, t) {bad[0].tolist()}: {fast[tuple(bad[0])]} != {want[tuple(bad[0])]}"


@pytest.mark.parametrize("index", range(len(_fixed_maps())))
def test_fixed_adversarial_maps(index):
    rng = np.random.default_rng(100 + index)
    scoremap = _fixed_maps()[index]
    _check(scoremap, _gt(rng, *scoremap.shape), F.threshold_grid(0.01))


@pytest.mark.parametrize("seed", range(6))
def test_random_maps_bit_identical(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):  # 300 maps in all
        scoremap, gt = _random_case(rng)
        thresholds = F.threshold_grid(rng.choice([0.01, 0.05, 0.1, 0.37]))
        _check(scoremap, gt, thresholds)


def test_every_level_of_cam_like_maps_at_step_0001():
    """Step 0.001 reaches every level of a full-range map; the thresholds are subsampled for time."""
    rng = np.random.default_rng(11)
    for _ in range(3):
        scoremap = F.normalize_scoremap(_blobs(rng, 14, 14))
        gt = _gt(rng, 224, 224)
        thresholds = F.threshold_grid(0.001)
        fast = F.best_ious_per_threshold(scoremap, gt, thresholds)
        subset = thresholds[::4]
        assert (fast[:, ::4] == straightforward(scoremap, gt, subset)).all()


def test_contour_boxes_are_what_is_scored():
    rng = np.random.default_rng(5)
    for _ in range(20):
        scoremap, gt = _random_case(rng)
        for tau in (0.0, 0.3, 0.77):
            boxes = F.contour_boxes(scoremap, tau)
            best = F.best_ious_per_threshold(scoremap, gt, np.array([tau]))[F.ALL, 0]
            assert best == F.box_iou(boxes, gt).max()
