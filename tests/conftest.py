import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from wsolbench.data.metadata import MaskAnnotation, SplitMetadata, write_split  # noqa: E402


@pytest.fixture
def make_box_split(tmp_path):
    """Write a box split: ``make_box_split(records)`` with records (image_id, label, (W, H), [boxes], map)."""

    def make(records, name="split"):
        root = tmp_path / name
        maps = root / "scoremaps"
        metadata = SplitMetadata(
            folder=root / "meta",
            image_ids=tuple(r[0] for r in records),
            class_labels={r[0]: r[1] for r in records},
            image_sizes={r[0]: r[2] for r in records},
            boxes={r[0]: tuple(tuple(b) for b in r[3]) for r in records},
        )
        write_split(root / "meta", metadata)
        for image_id, *_, scoremap in records:
            if scoremap is not None:
                path = maps / f"{image_id}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, scoremap)
        return root / "meta", maps

    return make


@pytest.fixture
def make_mask_split(tmp_path):
    """Write a mask split: records (image_id, label, [instance masks], ignore mask, map); PNGs under masks/."""
    import cv2

    def make(records, name="masksplit"):
        root = tmp_path / name
        masks_root, maps = root / "masks", root / "scoremaps"
        annotations = {}
        for image_id, _, instances, ignore, scoremap in records:
            stem = image_id.rsplit(".", 1)[0]
            paths = []
            for k, mask in enumerate(instances):
                rel = f"{stem}_m{k}.png"
                (masks_root / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(masks_root / rel), mask.astype(np.uint8) * 255)
                paths.append(rel)
            cv2.imwrite(str(masks_root / f"{stem}_ignore.png"), ignore.astype(np.uint8) * 255)
            annotations[image_id] = MaskAnnotation(tuple(paths), f"{stem}_ignore.png")
            path = maps / f"{image_id}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, scoremap)
        metadata = SplitMetadata(folder=root / "meta", image_ids=tuple(r[0] for r in records),
                                 class_labels={r[0]: r[1] for r in records}, masks=annotations)
        write_split(root / "meta", metadata)
        return root / "meta", maps, masks_root

    return make
