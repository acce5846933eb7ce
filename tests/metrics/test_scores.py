"""The score schema: report_json of hand-built results against hand-written dicts, every key documented,
torch-free, and the old import paths."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from wsolbench.metrics import scores
from wsolbench.metrics.scores import BoxAccuracyResult, Evaluation, LocAccuracy, PxAPResult, report_json


def _box_result(**overrides):
    fields = dict(
        num_images=4, thresholds=np.arange(0, 1, 0.1), iou_thresholds=(30, 70),
        curves={"largest": {30: np.array([75.0, 50.0]), 50: np.array([25.0, 0.0]), 70: np.array([0.0, 0.0])},
                "all": {30: np.array([100.0, 50.0]), 50: np.array([50.0, 25.0]), 70: np.array([25.0, 0.0])}},
        maxboxacc=25.0, maxboxacc_per_iou={30: 75.0, 70: 0.0}, best_threshold_v1={30: 0.0, 50: 0.0, 70: 0.0},
        maxboxacc_v2=62.5, maxboxacc_v2_per_iou={30: 100.0, 70: 25.0}, best_threshold={30: 0.0, 70: 0.0},
        loc_contours="all", loc_threshold=None, loc={"gt_known": LocAccuracy(50.0, 0.0)})
    fields.update(overrides)
    return BoxAccuracyResult(**fields)


def test_box_scores_by_hand():
    evaluation = Evaluation(Path("meta/SET/test"), 0.1, _box_result())
    assert report_json(evaluation) == {
        "metadata": str(Path("meta/SET/test")), "num_images": 4, "cam_curve_interval": 0.1,
        "iou_thresholds": [30, 70], "maxboxacc": 25.0, "maxboxacc_per_iou": {"30": 75.0, "70": 0.0},
        "best_threshold_v1": {"30": 0.0, "50": 0.0, "70": 0.0}, "maxboxacc_v2": 62.5,
        "maxboxacc_v2_per_iou": {"30": 100.0, "70": 25.0}, "best_threshold": {"30": 0.0, "70": 0.0},
        "loc_contours": "all", "loc_threshold": None, "gt_known_loc": 50.0, "gt_known_loc_best_threshold": 0.0}


def test_topk_fixed_threshold_classification_and_curves_by_hand():
    loc = {"gt_known": LocAccuracy(50.0, 0.1, 25.0), "top1": LocAccuracy(25.0, 0.2, 0.0),
           "top5": LocAccuracy(50.0, 0.1, 25.0)}
    evaluation = Evaluation(Path("m"), 0.1, _box_result(loc=loc, loc_threshold=0.5), top1_cls=50.0, top5_cls=100.0)
    out = report_json(evaluation, curves=True)
    assert {k: out[k] for k in ("gt_known_loc", "gt_known_loc_best_threshold", "gt_known_loc_at_threshold",
                                "top1_loc", "top1_loc_best_threshold", "top1_loc_at_threshold", "top5_loc",
                                "top5_loc_best_threshold", "top5_loc_at_threshold", "top1_cls", "top5_cls",
                                "loc_threshold")} == {
        "gt_known_loc": 50.0, "gt_known_loc_best_threshold": 0.1, "gt_known_loc_at_threshold": 25.0,
        "top1_loc": 25.0, "top1_loc_best_threshold": 0.2, "top1_loc_at_threshold": 0.0, "top5_loc": 50.0,
        "top5_loc_best_threshold": 0.1, "top5_loc_at_threshold": 25.0, "top1_cls": 50.0, "top5_cls": 100.0,
        "loc_threshold": 0.5}
    # np.arange(0, 1, 0.1) holds 0.30000000000000004: printed rounded to 10 decimals
    assert out["thresholds"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert out["curves"] == {"largest": {"30": [75.0, 50.0], "50": [25.0, 0.0], "70": [0.0, 0.0]},
                             "all": {"30": [100.0, 50.0], "50": [50.0, 25.0], "70": [25.0, 0.0]}}


def test_mask_scores_by_hand_with_undefined_precision_as_null():
    result = PxAPResult(num_images=2, pxap=40.0, precision=np.array([np.nan, 1.0, 0.5]),
                        recall=np.array([0.0, 0.25, 1.0]))
    evaluation = Evaluation(Path("m"), 0.5, result)
    assert report_json(evaluation) == {"metadata": "m", "num_images": 2, "cam_curve_interval": 0.5, "pxap": 40.0}
    assert report_json(evaluation, curves=True)["pr_curve"] == {"precision": [None, 1.0, 0.5],
                                                                "recall": [0.0, 0.25, 1.0]}


def _documented_names() -> set[str]:
    return set(re.findall(r"``([a-z0-9_]+)``", scores.__doc__)) | set(re.findall(r'"([a-z0-9_]+)"', scores.__doc__))


def _keys(value, into):
    if isinstance(value, dict):
        for key, item in value.items():
            if not key.isdigit():  # IoU thresholds as keys
                into.add(key)
            _keys(item, into)
    return into


def test_every_reported_key_is_documented():
    loc = {kind: LocAccuracy(1.0, 0.1, 1.0) for kind in ("gt_known", "top1", "top5")}
    box = Evaluation(Path("m"), 0.1, _box_result(loc=loc, loc_threshold=0.5), top1_cls=1.0, top5_cls=1.0)
    mask = Evaluation(Path("m"), 0.5, PxAPResult(1, 1.0, np.array([1.0]), np.array([1.0])), top1_cls=1.0,
                      top5_cls=1.0)
    reported = _keys(report_json(box, curves=True), set()) | _keys(report_json(mask, curves=True), set())
    assert len(reported) == 31  # 21 box keys + thresholds, curves, largest, all + 2 cls + 4 mask keys
    assert reported - _documented_names() == set()


def test_the_schema_is_torch_free_and_the_old_paths_still_work():
    code = "import sys, wsolbench.metrics.scores; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    from wsolbench import evaluate
    from wsolbench.metrics import boxacc, pxap

    assert evaluate.Evaluation is Evaluation and evaluate.report_json is report_json
    assert boxacc.BoxAccuracyResult is BoxAccuracyResult and boxacc.LocAccuracy is LocAccuracy
    assert pxap.PxAPResult is PxAPResult
