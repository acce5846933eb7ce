"""sample_per_class (wsolevaluation's --num_val_sample_per_class) over a hand-written split, and the cached
pipeline over the subset."""

from collections import Counter

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from wsolbench.data.datasets import open_dataset, sample_per_class
from wsolbench.data.pipeline import CachedLoader
from wsolbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsolbench.errors import WsolbenchError

# class 0: 5 images, class 1: 2 images, class 2: 4 images, interleaved
LABELS = [0, 1, 2, 0, 0, 2, 1, 0, 2, 2, 0]
IDS = [f"img/{k:02d}.png" for k in range(len(LABELS))]


@pytest.fixture
def split(tmp_path):
    meta = tmp_path / "metadata" / "MINE" / "val"
    meta.mkdir(parents=True)
    (meta / "image_ids.txt").write_text("\n".join(IDS))
    (meta / "class_labels.txt").write_text("\n".join(f"{i},{c}" for i, c in zip(IDS, LABELS)))
    (meta / "image_sizes.txt").write_text("\n".join(f"{i},8,8" for i in IDS))
    (meta / "localization.txt").write_text("\n".join(f"{i},1,1,6,6" for i in IDS))
    for k, image_id in enumerate(IDS):
        path = tmp_path / "dataset" / "MINE" / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (20 * k, 10, 200)).save(path)
    return open_dataset("MINE", tmp_path, "val", image_size=8, target_size=8)


def _labels(dataset):
    return [dataset.label(i) for i in range(len(dataset))]


def test_counts_per_class_and_a_small_class_keeps_all(split):
    subset = sample_per_class(split, 3, seed=0)
    assert Counter(_labels(subset)) == {0: 3, 1: 2, 2: 3}  # class 1 has only 2: both kept
    assert len(subset) == 8 and set(subset.image_ids) <= set(IDS)
    everything = sample_per_class(split, 5, seed=0)
    assert everything.image_ids == tuple(IDS)  # no class has more than 5


def test_ids_keep_the_split_order_and_labels_stay_with_their_ids(split):
    subset = sample_per_class(split, 2, seed=3)
    positions = [IDS.index(i) for i in subset.image_ids]
    assert positions == sorted(positions)
    assert [subset.label(k) for k in range(len(subset))] == [LABELS[p] for p in positions]
    assert subset.metadata.image_ids == subset.image_ids
    assert set(subset.metadata.class_labels) == set(subset.image_ids) == set(subset.metadata.boxes)


def test_the_draw_is_the_documented_one_and_follows_the_seed(split):
    subset = sample_per_class(split, 2, seed=11)
    expected = []
    for label, members in ((0, [0, 3, 4, 7, 10]), (2, [2, 5, 8, 9])):  # positions of each class, by hand
        chosen = np.random.default_rng([11, label]).choice(len(members), 2, replace=False)
        expected += [members[c] for c in chosen]
    expected += [1, 6]  # class 1: both images
    assert subset.image_ids == tuple(IDS[p] for p in sorted(expected))
    assert sample_per_class(split, 2, seed=11).image_ids == subset.image_ids
    draws = {sample_per_class(split, 2, seed=s).image_ids for s in range(8)}
    assert len(draws) > 1  # 10 * 6 possible subsets: eight seeds do not all draw the same one


def test_zero_returns_the_dataset_unchanged(split):
    assert sample_per_class(split, 0, seed=5) is split


def test_the_subset_shares_spec_root_and_transform(split):
    subset = sample_per_class(split, 1, seed=0)
    assert subset.spec is split.spec and subset.root == split.root and subset.transform is split.transform
    assert subset.protocol_transform and not subset.train and subset.target_size == 8
    assert len(split) == len(IDS)  # the original is untouched
    first = subset[0]
    index = IDS.index(first["image_id"])
    assert first["label"] == LABELS[index] and first["boxes"].tolist() == [[1, 1, 6, 6]]


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_a_bad_count_is_one_line(split, bad):
    with pytest.raises(WsolbenchError, match="num_val_sample_per_class must be a non-negative integer") as error:
        sample_per_class(split, bad, seed=0)
    assert "\n" not in str(error.value)


def test_a_negative_seed_is_one_line(split):
    with pytest.raises(WsolbenchError, match="seed must be a non-negative integer, got -1"):
        sample_per_class(split, 1, seed=-1)


@pytest.mark.parametrize("variant", ["boxes", "masks"])
def test_the_cached_pipeline_reads_the_subset(tiny_boxes_root, tiny_masks_root, tmp_path, variant):
    name, root = ("synthetic", tiny_boxes_root) if variant == "boxes" else ("synthetic-masks", tiny_masks_root)
    full = open_dataset(name, root, "test", image_size=32)  # 2 classes x 2 images
    list(CachedLoader(full, batch_size=4, cache_dir=tmp_path))  # the full split's cache exists first
    subset = sample_per_class(full, 1, seed=0)
    batches = list(CachedLoader(subset, batch_size=4, cache_dir=tmp_path))
    assert len(batches) == 1 and batches[0]["image_id"] == list(subset.image_ids) and len(subset) == 2
    batch = batches[0]
    for k, image_id in enumerate(batch["image_id"]):
        index = full.image_ids.index(image_id)
        by_hand = TF.normalize(TF.to_tensor(TF.resize(full.load_image(index), [32, 32])), IMAGENET_MEAN, IMAGENET_STD)
        torch.testing.assert_close(batch["image"][k], by_hand)
        assert int(batch["label"][k]) == full.label(index)
        target = full.localization_target(index)
        if variant == "masks":
            assert torch.equal(batch["mask"][k], target["mask"])
        else:
            assert torch.equal(batch["boxes"][k], target["boxes"])
