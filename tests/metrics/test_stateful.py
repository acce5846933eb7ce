"""BoxAccuracy and PxAP against the naive per-image reference, for any batch split and across processes."""

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scoremap_factory import cam_like
from naive_reference import hit_counts, max_box_acc, pxap

from wsolbench.metrics import functional as F
from wsolbench.metrics.boxacc import BoxAccuracy
from wsolbench.metrics.pxap import PxAP

INTERVAL = 0.02


def _box_data(seed=0, count=9, size=64):
    rng = np.random.default_rng(seed)
    maps, boxes = [], []
    for i in range(count):
        maps.append(cam_like(rng, size=size, grid=8) if i % 4 else rng.random((size, size)) * (rng.random((size, size)) > 0.95))
        gt = []
        for _ in range(rng.integers(1, 3)):
            x0, y0 = rng.integers(0, size - 8, 2)
            gt.append([x0, y0, x0 + rng.integers(4, size - x0), y0 + rng.integers(4, size - y0)])
        boxes.append(np.array(gt) .clip(0, size - 1))
    labels = rng.integers(0, 7, count)
    scores = rng.random((count, 7))
    scores[np.arange(count) % 2 == 0, labels[np.arange(count) % 2 == 0]] = 2.0  # half the images classified right
    return maps, boxes, labels, scores


def _update_in_batches(metric, batch_size, maps, boxes, labels=None, scores=None):
    for start in range(0, len(maps), batch_size):
        s = slice(start, start + batch_size)
        metric.update(maps[s], boxes[s], None if labels is None else labels[s], None if scores is None else scores[s])
    return metric.compute()


@pytest.mark.parametrize("batch_size", [1, 7, 9])
def test_maxboxacc_v1_and_v2_equal_naive(batch_size):
    maps, boxes, _, _ = _box_data()
    thresholds = F.threshold_grid(INTERVAL)
    result = _update_in_batches(BoxAccuracy(cam_curve_interval=INTERVAL), batch_size, maps, boxes)
    v2 = max_box_acc(maps, boxes, thresholds, (30, 50, 70), multi_contour=True)
    v1 = max_box_acc(maps, boxes, thresholds, (30, 50, 70), multi_contour=False)
    assert result.maxboxacc_v2_per_iou == {d: v2[d][0] for d in (30, 50, 70)}
    assert result.maxboxacc_v2 == np.mean([v2[d][0] for d in (30, 50, 70)])
    assert result.best_threshold == {d: round(thresholds[v2[d][1]], 10) for d in (30, 50, 70)}
    assert result.maxboxacc == v1[50][0]
    assert result.best_threshold_v1[50] == round(thresholds[v1[50][1]], 10)
    assert result.loc["gt_known"].best == v2[50][0]


def test_topk_loc_needs_the_class_and_the_box():
    maps, boxes, labels, scores = _box_data(seed=1)
    thresholds = F.threshold_grid(INTERVAL)
    tau = 0.2
    result = _update_in_batches(BoxAccuracy(cam_curve_interval=INTERVAL, loc_threshold=tau), 4, maps, boxes,
                                labels, scores)
    top1 = [int(np.argmax(s)) == y for s, y in zip(scores, labels)]
    top5 = [y in np.argsort(-s, kind="stable")[:5] for s, y in zip(scores, labels)]
    for kind, correct in (("top1", top1), ("top5", top5)):
        counts = hit_counts(maps, boxes, thresholds, (50,), True, correct)[50]
        assert result.loc[kind].best == counts.max() * 100.0 / len(maps)
        fixed = hit_counts(maps, boxes, [tau], (50,), True, correct)[50][0]
        assert result.loc[kind].fixed == fixed * 100.0 / len(maps)
    assert result.loc["top1"].best <= result.loc["top5"].best <= result.loc["gt_known"].best


def test_loc_with_largest_contour_uses_v1_boxes():
    maps, boxes, _, _ = _box_data(seed=2)
    thresholds = F.threshold_grid(INTERVAL)
    result = _update_in_batches(BoxAccuracy(cam_curve_interval=INTERVAL, loc_contours="largest"), 3, maps, boxes)
    assert result.loc["gt_known"].best == max_box_acc(maps, boxes, thresholds, (50,), False)[50][0]


def test_partial_class_scores_are_an_error():
    maps, boxes, labels, scores = _box_data(count=4)
    metric = BoxAccuracy(cam_curve_interval=INTERVAL)
    metric.update(maps[:2], boxes[:2], labels[:2], scores[:2])
    metric.update(maps[2:], boxes[2:])
    with pytest.raises(ValueError, match="class scores"):
        metric.compute()


def test_invalid_map_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        BoxAccuracy().update([np.full((8, 8), np.nan)], [np.array([[0, 0, 1, 1]])])


def _mask_data(seed=0, count=6, size=48):
    rng = np.random.default_rng(seed)
    maps, labels = [], []
    for _ in range(count):
        maps.append(cam_like(rng, size=size, grid=6))
        label = np.zeros((size, size), dtype=np.uint8)
        y, x = rng.integers(0, size // 2, 2)
        label[y:y + size // 3, x:x + size // 2] = 1
        label[rng.random((size, size)) > 0.97] = 255
        labels.append(label)
    return maps, labels


@pytest.mark.parametrize("batch_size", [1, 4, 6])
def test_pxap_equals_naive(batch_size):
    maps, labels = _mask_data()
    metric = PxAP(cam_curve_interval=INTERVAL)
    for start in range(0, len(maps), batch_size):
        metric.update(maps[start:start + batch_size], labels[start:start + batch_size])
    assert metric.compute().pxap == pytest.approx(pxap(maps, labels, F.threshold_grid(INTERVAL)), abs=1e-9)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _distributed_worker(rank, world_size, port, queue):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        maps, boxes, labels, scores = _box_data(seed=4)
        box_metric = BoxAccuracy(cam_curve_interval=INTERVAL, loc_threshold=0.3)
        shard = slice(rank, None, world_size)  # uneven shards: 5 and 4 images
        box_metric.update(maps[shard], boxes[shard], labels[shard], scores[shard])
        mask_maps, mask_labels = _mask_data(seed=4)
        mask_metric = PxAP(cam_curve_interval=INTERVAL)
        mask_metric.update(mask_maps[shard], mask_labels[shard])
        box, mask = box_metric.compute(), mask_metric.compute()
        if rank == 0:
            queue.put((box.maxboxacc_v2_per_iou, box.maxboxacc, {k: vars(v) for k, v in box.loc.items()},
                       box.num_images, mask.pxap))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one():
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_distributed_worker, args=(2, _free_port(), queue), nprocs=2, start_method="spawn")
    distributed = queue.get()
    maps, boxes, labels, scores = _box_data(seed=4)
    single = BoxAccuracy(cam_curve_interval=INTERVAL, loc_threshold=0.3)
    single.update(maps, boxes, labels, scores)
    box = single.compute()
    mask_maps, mask_labels = _mask_data(seed=4)
    mask = PxAP(cam_curve_interval=INTERVAL)
    mask.update(mask_maps, mask_labels)
    assert distributed == (box.maxboxacc_v2_per_iou, box.maxboxacc, {k: vars(v) for k, v in box.loc.items()},
                           9, mask.compute().pxap)
    assert torch.distributed.is_available()
