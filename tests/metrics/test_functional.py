"""The metric core against hand-computed values and the naive per-threshold reference."""

import numpy as np
import pytest
from scoremap_factory import cam_like
from naive_reference import best_iou

from wsolbench.metrics import functional as F


def test_iou_examples_from_the_protocol():
    assert F.box_iou(np.array([[2, 2, 3, 3]]), np.array([[2, 2, 2, 2]]))[0, 0] == 0.25
    assert F.box_iou(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 9, 9]]))[0, 0] == 0.01
    assert F.box_iou(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))[0, 0] == pytest.approx(8 / 27)
    assert F.box_iou(np.zeros((2, 4)), np.zeros((3, 4))).tolist() == [[1.0] * 3] * 2


def test_resize_box_truncates():
    assert F.resize_box((1, 2, 4, 3), (10, 20), (35, 10)) == (3, 1, 14, 1)
    # 224 * 332 / 333 = 223.33 -> 223; 224 * 100 / 517 = 43.33 -> 43
    assert F.resize_box((0, 100, 332, 516), (333, 517)) == (0, 43, 223, 223)


def test_threshold_grid_matches_arange_and_excludes_one():
    grid = F.threshold_grid(0.001)
    assert len(grid) == 1000 and grid[0] == 0 and grid[-1] < 1
    assert grid[700] == 0.7000000000000001


def test_normalize_scoremap_resizes_then_normalizes():
    out = F.normalize_scoremap(np.array([[1.0, 3.0], [5.0, 9.0]]), size=2)
    assert out.tolist() == [[0.0, 0.25], [0.5, 1.0]]
    assert not F.normalize_scoremap(np.full((3, 5), 7.0)).any()
    nan_map = np.ones((4, 4))
    nan_map[1, 1] = np.nan
    assert F.normalize_scoremap(nan_map).shape == (224, 224) and not F.normalize_scoremap(nan_map).any()
    resized = F.normalize_scoremap(np.arange(12.0).reshape(3, 4))
    assert resized.shape == (224, 224) and resized.min() == 0 and resized.max() == 1


def _boxes_by_hand(best):
    return best[F.LARGEST].tolist(), best[F.ALL].tolist()


def test_single_pixel_gives_a_box_one_pixel_too_large():
    scoremap = np.zeros((6, 8))
    scoremap[1, 2] = 1.0
    # the box of pixel (row 1, col 2) is [2, 1, 3, 2]; against GT [2, 1, 3, 2] IoU is 1
    best = F.best_ious_per_threshold(scoremap, np.array([[2, 1, 3, 2]]), np.array([0.0, 0.5]))
    assert _boxes_by_hand(best) == ([1.0, 1.0], [1.0, 1.0])
    # corner pixel: x1 = min(8, 7) = 7, y1 = min(6, 5) = 5, so the box is [7, 5, 7, 5]
    corner = np.zeros((6, 8))
    corner[5, 7] = 1.0
    best = F.best_ious_per_threshold(corner, np.array([[7, 5, 7, 5]]), np.array([0.3]))
    assert best.tolist() == [[1.0], [1.0]]


def test_empty_foreground_is_the_box_0000():
    gt = np.array([[0, 0, 9, 9]])
    best = F.best_ious_per_threshold(np.zeros((20, 20)), gt, np.array([0.0, 0.5]))
    assert best.tolist() == [[0.01, 0.01], [0.01, 0.01]]


def test_threshold_is_relative_to_quantized_max_and_strict():
    scoremap = np.zeros((10, 10))
    scoremap[2:4, 2:4] = 0.4  # q = 102
    scoremap[6, 6] = 0.2  # q = 51; 51 > int(0.5 * 102) = 51 is false: the speck drops out at tau 0.5
    gt = np.array([[6, 6, 7, 7]])
    best = F.best_ious_per_threshold(scoremap, gt, np.array([0.49, 0.5]))
    # tau 0.49: T = int(49.98) = 49 < 51 -> speck present, box [6,6,7,7] matches exactly (V2);
    # V1 keeps the 2x2 square (area 1 > speck's 0): box [2,2,4,4] vs [6,6,7,7] -> 0
    assert best[F.ALL].tolist() == [1.0, 0.0]
    assert best[F.LARGEST].tolist() == [0.0, 0.0]


def test_hole_contour_counts_for_all_contours_only():
    scoremap = np.zeros((10, 10))
    scoremap[1:8, 1:8] = 1.0
    scoremap[4, 4] = 0.0  # a one-pixel hole: its border box is [3, 3, 6, 6]; the outer box is [1, 1, 8, 8]
    gt = np.array([[3, 3, 5, 5]])
    best = F.best_ious_per_threshold(scoremap, gt, np.array([0.5]))
    assert best[F.ALL, 0] == 9 / 16  # [3,3,6,6] vs [3,3,5,5]
    assert best[F.LARGEST, 0] == 9 / 64  # [1,1,8,8] vs [3,3,5,5]


def test_map_with_max_below_one_is_effectively_renormalised():
    scoremap = np.zeros((12, 12))
    scoremap[3:9, 3:9] = 0.004  # q = 1: foreground is q > int(tau * 1) = 0 for every tau
    best = F.best_ious_per_threshold(scoremap, np.array([[3, 3, 9, 9]]), np.array([0.0, 0.9]))
    assert best.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def _adversarial_maps(rng):
    """Holes, specks, lines, ties, constant maps, maps whose max is below 1, odd sizes."""
    maps = []
    ring = np.zeros((40, 50))
    ring[5:30, 5:40] = 0.9
    ring[10:20, 10:20] = 0.1
    ring[12:14, 25:35] = 0.3
    maps.append(ring)
    specks = rng.random((33, 47)) * (rng.random((33, 47)) > 0.9)
    maps.append(specks)
    lines = np.zeros((30, 30))
    lines[5, 2:25] = 1.0
    lines[10:25, 20] = 0.6
    lines[15:17, 3:5] = 0.6  # ties in area between blobs at some thresholds
    lines[20:22, 8:10] = 0.6
    maps.append(lines)
    maps.append(np.full((20, 20), 0.5))
    maps.append(np.ones((20, 20)))
    maps.append(cam_like(rng, size=64, grid=8) * 0.3)
    maps.append(cam_like(rng, size=64, grid=8) * 0.004)
    maps.append(np.round(cam_like(rng, size=64, grid=8) * 4) / 4)  # few levels, plateaus
    maps.append(rng.random((64, 64)))
    return maps


@pytest.mark.parametrize("seed", range(3))
def test_fast_path_equals_naive_reference(seed):
    rng = np.random.default_rng(seed)
    thresholds = F.threshold_grid(0.01)
    maps = _adversarial_maps(rng) + [cam_like(rng, size=96, grid=14) for _ in range(3)]
    for scoremap in maps:
        h, w = scoremap.shape
        gt = []
        for _ in range(rng.integers(1, 4)):
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            gt.append([x0, y0, rng.integers(x0, w), rng.integers(y0, h)])
        fast = F.best_ious_per_threshold(scoremap, np.array(gt), thresholds)
        for t, tau in enumerate(thresholds):
            assert fast[F.ALL, t] == best_iou(scoremap, gt, tau, multi_contour=True), (seed, t)
            assert fast[F.LARGEST, t] == best_iou(scoremap, gt, tau, multi_contour=False), (seed, t)


def test_fast_path_equals_naive_reference_at_step_0001():
    rng = np.random.default_rng(7)
    thresholds = F.threshold_grid(0.001)
    scoremap = cam_like(rng)
    gt = [[40, 30, 150, 170], [100, 120, 200, 210]]
    fast = F.best_ious_per_threshold(scoremap, np.array(gt), thresholds)
    for t in range(0, 1000, 3):
        assert fast[F.ALL, t] == best_iou(scoremap, gt, thresholds[t], True)
        assert fast[F.LARGEST, t] == best_iou(scoremap, gt, thresholds[t], False)


def test_scoremap_problems():
    assert F.scoremap_problem(np.zeros((3, 3))) is None
    assert "2-D" in F.scoremap_problem(np.zeros((3, 3, 1)))
    assert "NaN" in F.scoremap_problem(np.array([[np.nan]]))
    assert "Inf" in F.scoremap_problem(np.array([[np.inf]]))
    assert "[0, 1]" in F.scoremap_problem(np.array([[1.5]]))


def test_topk_correct_breaks_ties_towards_lower_index():
    scores = np.array([0.1, 0.5, 0.5, 0.2, 0.0, 0.3])
    assert F.topk_correct(scores, 1, 1) and not F.topk_correct(scores, 2, 1)
    assert F.topk_correct(scores, 3, 5) and not F.topk_correct(scores, 4, 5)


def test_pxap_hand_computed():
    # thresholds [0, 0.5]: bins [0,.5) [.5,1) [1,2) [2,3]; fg {0.9, 0.3}, bg {0.6, 0.1}
    scoremap = np.array([[0.9, 0.3, 0.6, 0.1]])
    labels = np.array([[1, 1, 0, 0]], dtype=np.uint8)
    edges = F.pxap_bin_edges(F.threshold_grid(0.5))
    fg, bg = F.score_histograms(scoremap, labels, edges)
    assert fg.tolist() == [1, 1, 0, 0] and bg.tolist() == [1, 1, 0, 0]
    value, precision, recall = F.pxap_from_histograms(fg, bg)
    # precision 0.5 at recall 0.5 and at recall 1: 0.5 * 0.5 + 0.5 * 0.5
    assert value == 50.0
    assert recall.tolist() == [0.0, 0.0, 0.5, 1.0]


def test_pxap_ignores_255_and_constant_map_gives_the_prior():
    labels = np.zeros((10, 10), dtype=np.uint8)
    labels[2:5, 2:6] = 1  # 12 foreground pixels
    labels[8:, :] = 255  # 20 ignored
    edges = F.pxap_bin_edges(F.threshold_grid(0.01))
    value, _, _ = F.pxap_from_histograms(*F.score_histograms(np.full((10, 10), 0.37), labels, edges))
    assert value == pytest.approx(100 * 12 / 80)
    perfect = (labels == 1).astype(float)
    assert F.pxap_from_histograms(*F.score_histograms(perfect, labels, edges))[0] == 100.0


def test_pxap_errors_without_positives():
    edges = F.pxap_bin_edges(F.threshold_grid(0.1))
    fg, bg = F.score_histograms(np.ones((4, 4)), np.zeros((4, 4), dtype=np.uint8), edges)
    with pytest.raises(ValueError, match="foreground"):
        F.pxap_from_histograms(fg, bg)


def test_score_histograms_equal_numpy_histogram():
    rng = np.random.default_rng(3)
    scoremap = rng.random((50, 50))
    scoremap[0, :5] = [0.0, 1.0, 0.5, 0.25, 0.999]
    labels = rng.integers(0, 2, (50, 50)).astype(np.uint8)
    edges = F.pxap_bin_edges(F.threshold_grid(0.001))
    fg, bg = F.score_histograms(scoremap, labels, edges)
    assert fg.tolist() == np.histogram(scoremap[labels == 1], bins=edges)[0].tolist()
    assert bg.tolist() == np.histogram(scoremap[labels == 0], bins=edges)[0].tolist()
