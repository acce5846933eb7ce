"""The parity harness's generated cases are valid inputs (the harness itself needs a wsolevaluation checkout)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from wsolbench.data.metadata import read_split

TOOL = Path(__file__).resolve().parents[2] / "tools" / "parity_wsolevaluation.py"


@pytest.fixture(scope="module")
def parity():
    spec = importlib.util.spec_from_file_location("parity_wsolevaluation", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_generated_splits_are_valid_wsolevaluation_layout(parity, tmp_path):
    splits = parity.generate(tmp_path, cases=1, seed=3, images=12, speed_maps=2)
    assert [s.annotation for s in splits] == ["boxes", "masks", "boxes"]
    for split in splits:
        metadata = read_split(split.metadata_dir)  # raises on any malformed record
        assert list(metadata.image_ids) == split.image_ids
        for image_id in split.image_ids:
            scoremap = np.load(split.scoremaps_dir / f"{image_id}.npy")
            assert scoremap.shape == (224, 224)
            assert scoremap.dtype in (np.float32, np.float64)
            assert 0.0 <= scoremap.min() and scoremap.max() <= 1.0
        if split.annotation == "masks":
            for annotation in metadata.masks.values():
                for path in (*annotation.mask_paths, annotation.ignore_path):
                    assert (split.mask_root / path).is_file()
    kinds = {image_id.rsplit("_", 1)[1].split(".")[0] for image_id in splits[0].image_ids}
    assert kinds == {"cam", "ring", "specks", "constant", "scaled", "plateau", "ties", "border", "levels", "noise",
                     "iou"}  # every box kind ("exact_iou" ends in "iou")


def test_exact_iou_case_hits_the_iou_thresholds_exactly(parity):
    rng = np.random.default_rng(0)
    for _ in range(20):
        scoremap, gt_boxes = parity.exact_iou_case(rng)
        rows, cols = np.nonzero(scoremap)
        # wsolevaluation's predicted box of a solid rectangle: (x, y, x + w, y + h), inclusive corners
        predicted = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        for x0, y0, x1, y1 in gt_boxes:
            inter = (min(x1, predicted[2]) - max(x0, predicted[0]) + 1) * (min(y1, predicted[3]) - max(y0, predicted[1]) + 1)
            area_p = (predicted[2] - predicted[0] + 1) * (predicted[3] - predicted[1] + 1)
            area_g = (x1 - x0 + 1) * (y1 - y0 + 1)
            assert inter / (area_p + area_g - inter) in (0.3, 0.5, 0.7)
