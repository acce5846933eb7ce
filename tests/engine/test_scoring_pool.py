"""Evaluation maps scored in worker processes give exactly the scores of scoring them in the main process."""

import numpy as np
import pytest

import naive_reference
from scoremap_factory import cam_like
from wsolbench.engine.scoring_pool import ScoringPool
from wsolbench.metrics.boxacc import BoxAccuracy
from wsolbench.metrics.pxap import PxAP

INTERVAL = 0.01


def _box_batches(rng, batches=6, size=4):
    for _ in range(batches):
        maps = [cam_like(rng, size=48) for _ in range(size)]
        boxes = [np.array([[int(rng.integers(0, 20)), int(rng.integers(0, 20)), int(rng.integers(24, 47)),
                            int(rng.integers(24, 47))]]) for _ in range(size)]
        logits = rng.normal(size=(size, 7))
        yield maps, boxes, rng.integers(0, 7, size), logits


def test_a_pool_of_two_workers_gives_the_scores_of_one_process():
    batches = list(_box_batches(np.random.default_rng(0)))
    inline, pooled = BoxAccuracy(cam_curve_interval=INTERVAL), BoxAccuracy(cam_curve_interval=INTERVAL)
    for batch in batches:
        inline.update(*batch)
    with ScoringPool(2) as pool:
        for batch in batches:
            pool.submit(pooled, *batch)
        pool.drain()
    assert all(np.array_equal(a, b) for a, b in zip(pooled.sums().values(), inline.sums().values()))
    maps = [m for batch in batches for m in batch[0]]
    boxes = [b for batch in batches for b in batch[1]]
    naive = naive_reference.max_box_acc(maps, boxes, np.arange(0, 1, INTERVAL), (30, 50, 70), multi_contour=True)
    assert pooled.compute().maxboxacc_v2_per_iou == {d: value for d, (value, _) in naive.items()}


def test_masks_through_the_pool_and_a_worker_error_reaches_the_caller():
    rng = np.random.default_rng(1)
    maps = [cam_like(rng, size=32) for _ in range(6)]
    labels = [(rng.random((32, 32)) > 0.6).astype(np.uint8) for _ in range(6)]
    inline, pooled = PxAP(cam_curve_interval=INTERVAL), PxAP(cam_curve_interval=INTERVAL)
    inline.update(maps, labels)
    with ScoringPool(2) as pool:
        for start in range(0, 6, 2):
            pool.submit(pooled, maps[start:start + 2], labels[start:start + 2])
        pool.drain()
        assert pooled.compute().pxap == inline.compute().pxap == \
            pytest.approx(naive_reference.pxap(maps, labels, np.arange(0, 1, INTERVAL)))
        pool.submit(BoxAccuracy(), [np.full((8, 8), 2.0)], [np.array([[0, 0, 1, 1]])])
        with pytest.raises(ValueError, match="values must lie in"):
            pool.drain()


def test_a_run_scoring_in_two_workers_records_the_scores_of_one_process(tmp_path):
    from wsolbench.data.synthetic import SynthParams, generate
    from wsolbench.engine import fit
    from wsolbench.protocol import resolve_run

    root = generate(tmp_path / "synth", SynthParams(variant="boxes", classes=2, train_per_class=2, val_per_class=2,
                                                     test_per_class=3, image_size=32, seed=1))
    config = resolve_run("cam", "synthetic", "resnet18", {"epochs": "1", "batch_size": "2", "image_size": "32"})
    records = [fit.run(config, out_dir=tmp_path / f"run{workers}", root=root, device="cpu", eval_workers=workers)
               for workers in (1, 2)]
    assert records[0]["scores"] == records[1]["scores"] and records[0]["history"] == records[1]["history"]
