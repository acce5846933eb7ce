"""Datasets over hand-written layouts: box and mask targets, bad images, unseen folders, registration."""

import numpy as np
import pytest
import torch
from PIL import Image

from wsolbench.data.datasets import WsolDataset, collate, open_dataset, spec_from_layout
from wsolbench.data.spec import DatasetSpec
from wsolbench.errors import WsolbenchError
from wsolbench.plugins import registry
from wsolbench.registry import UnknownNameError


def write_layout(root, folder, split, records, localization):
    """A split written by hand: records are (image_id, label, (W, H)); localization lines verbatim."""
    meta = root / "metadata" / folder / split
    meta.mkdir(parents=True)
    (meta / "image_ids.txt").write_text("\n".join(r[0] for r in records))
    (meta / "class_labels.txt").write_text("\n".join(f"{r[0]},{r[1]}" for r in records))
    (meta / "image_sizes.txt").write_text("\n".join(f"{r[0]},{r[2][0]},{r[2][1]}" for r in records if r[2]))
    (meta / "localization.txt").write_text("\n".join(localization))
    for image_id, _, size in records:
        path = root / "dataset" / folder / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size or (8, 8), (200, 30, 30)).save(path)


@pytest.fixture
def box_root(tmp_path):
    write_layout(tmp_path, "BIRDS", "test",
                 [("a/one.png", 0, (10, 20)), ("b/two.png", 2, (40, 30))],
                 ["a/one.png,1,2,4,3", "a/one.png,9,19,9,19", "b/two.png,0,0,39,29"])
    return tmp_path


def test_boxes_are_rescaled_by_truncation_to_the_224_grid(box_root):
    dataset = open_dataset("BIRDS", box_root, "test")
    first, second = dataset[0], dataset[1]
    # by hand: x * 224 / 10 and y * 224 / 20, truncated; no clipping
    assert first["boxes"].tolist() == [[22, 22, 89, 33], [201, 212, 201, 212]]
    assert second["boxes"].tolist() == [[0, 0, 218, 216]]  # 39 * 224 / 40 = 218.4, 29 * 224 / 30 = 216.5
    assert first["label"] == 0 and second["label"] == 2 and first["image_id"] == "a/one.png"
    assert first["image"].shape == (3, 224, 224) and first["boxes"].dtype == torch.int64


def test_target_size_is_configurable(box_root):
    dataset = open_dataset("BIRDS", box_root, "test", image_size=32, target_size=35)
    assert dataset[0]["image"].shape == (3, 32, 32)
    assert dataset[0]["boxes"].tolist()[0] == [3, 3, 14, 5]  # 1*3.5, 2*1.75, 4*3.5, 3*1.75


def test_collate_keeps_boxes_per_image(box_root):
    dataset = open_dataset("BIRDS", box_root, "test")
    batch = collate([dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 3, 224, 224)
    assert batch["label"].tolist() == [0, 2] and batch["image_id"] == ["a/one.png", "b/two.png"]
    assert [b.shape[0] for b in batch["boxes"]] == [2, 1]


def test_training_items_have_no_localization_target(box_root):
    item = open_dataset("BIRDS", box_root, "test", train=True, image_size=32)[0]
    assert set(item) == {"image", "label", "image_id"} and item["image"].shape == (3, 32, 32)


def test_masks_are_nearest_resized_with_ignore_outside_foreground(tmp_path):
    write_layout(tmp_path, "PARTS", "val", [("x.jpg", 1, None)], ["x.jpg,m/x_m1.png,m/x_ignore.png"])
    (tmp_path / "dataset/PARTS/m").mkdir()
    mask = np.zeros((4, 4), np.uint8)
    mask[0:2, 0:2] = 255
    ignore = np.zeros((4, 4), np.uint8)
    ignore[0, 0] = ignore[3, 3] = 255  # (0, 0) is foreground: stays foreground
    Image.fromarray(mask).save(tmp_path / "dataset/PARTS/m/x_m1.png")
    Image.fromarray(ignore).save(tmp_path / "dataset/PARTS/m/x_ignore.png")
    item = open_dataset("PARTS", tmp_path, "val", target_size=8)[0]
    expected = np.zeros((8, 8), np.uint8)
    expected[0:4, 0:4] = 1
    expected[6:8, 6:8] = 255
    assert item["mask"].dtype == torch.uint8
    np.testing.assert_array_equal(item["mask"].numpy(), expected)


def test_missing_mask_file_names_file_and_image(tmp_path):
    write_layout(tmp_path, "PARTS", "val", [("x.jpg", 0, None)], ["x.jpg,m/gone.png,m/gone_ignore.png"])
    with pytest.raises(WsolbenchError, match=r"mask file .*m/gone\.png \(image id 'x\.jpg'\) is missing"):
        open_dataset("PARTS", tmp_path, "val")[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_bad_image_is_a_one_line_error_naming_file_and_id(box_root, damage):
    path = box_root / "dataset/BIRDS/b/two.png"
    if damage == "garbage":
        path.write_bytes(b"this is not an image")
    elif damage == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.unlink()
    dataset = open_dataset("BIRDS", box_root, "test")
    with pytest.raises(WsolbenchError) as error:
        dataset[1]
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "'b/two.png'" in message
    assert ("missing" in message) == (damage == "missing")


def test_a_never_seen_layout_folder_opens_by_name(tmp_path):
    write_layout(tmp_path, "NEWSET", "train", [("t0.png", 0, (8, 8)), ("t1.png", 4, (8, 8))],
                 ["t0.png,0,0,7,7", "t1.png,1,1,2,2"])
    write_layout(tmp_path, "NEWSET", "test", [("e0.png", 1, (16, 8))], ["e0.png,2,1,15,7"])
    spec = spec_from_layout(tmp_path, "NEWSET")
    assert (spec.name, spec.folder, spec.num_classes, spec.annotation) == ("NEWSET", "NEWSET", 5, "boxes")
    dataset = open_dataset("NEWSET", tmp_path, "test")
    assert dataset.num_classes == 5 and dataset[0]["boxes"].tolist() == [[28, 28, 210, 196]]


def test_a_never_seen_layout_folder_can_be_trained_on(tmp_path):
    records = [(f"c{k % 2}/t{k}.png", k % 2, (24, 20)) for k in range(6)]
    write_layout(tmp_path, "MINE", "train", records, [f"{i},1,1,20,15" for i, _, _ in records])
    for image_id, _, _ in records:
        (tmp_path / "dataset" / "MINE" / image_id).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
            tmp_path / "dataset" / "MINE" / image_id)
    dataset = open_dataset("MINE", tmp_path, "train", image_size=32)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, dataset.num_classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    from wsolbench.data.pipeline import make_loader

    steps = 0
    for batch in make_loader(dataset, batch_size=3, cache_dir=tmp_path / "cache", num_workers=0):
        loss = torch.nn.functional.cross_entropy(model(batch["image"]), batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss) and batch["image"].shape == (3, 3, 32, 32)
        steps += 1
    assert steps == 2


def test_unknown_name_suggests_and_mentions_the_layout(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'cubb'; did you mean cub.*metadata"):
        open_dataset("cubb", tmp_path, "test")


def test_label_beyond_the_spec_classes_is_an_error(box_root):
    spec = DatasetSpec("two-classes", "BIRDS", num_classes=2, annotation="boxes")
    with pytest.raises(WsolbenchError, match=r"class_labels\.txt: image id 'b/two\.png' has class label 2 "
                                             r"but dataset 'two-classes' has 2 classes"):
        WsolDataset(spec, box_root, "test", train=False)


def test_annotation_kind_must_match_the_spec(box_root):
    spec = DatasetSpec("masked", "BIRDS", num_classes=3, annotation="masks")
    with pytest.raises(WsolbenchError, match="expects masks localization labels but the split holds boxes"):
        WsolDataset(spec, box_root, "test", train=False)
    WsolDataset(spec, box_root, "test", train=True)  # training never needs localization


def test_builtin_datasets_are_registered():
    datasets = registry("dataset")
    expected = {"cub": ("CUB", 200, "boxes", {"train": 5994, "val": 1000, "test": 5794}),
                "imagenet": ("ILSVRC", 1000, "boxes", {"train": 1281167, "val": 10000, "test": 50000}),
                "openimages": ("OpenImages", 100, "masks", {"train": 29819, "val": 2500, "test": 5000}),
                "synthetic": ("SYNTHETIC", 10, "boxes", {"train": 400, "val": 50, "test": 200}),
                "synthetic-masks": ("SYNTHETIC_MASKS", 10, "masks", {"train": 400, "val": 50, "test": 200})}
    for name, (folder, classes, annotation, sizes) in expected.items():
        spec = datasets.get(name)
        assert (spec.folder, spec.num_classes, spec.annotation) == (folder, classes, annotation)
        assert spec.split_sizes == sizes
        assert datasets.source(name).startswith("wsolbench ")


def test_synthetic_opens_without_a_root_from_the_cache():
    dataset = open_dataset("synthetic", split="val", image_size=32)
    assert len(dataset) == 50 and dataset.num_classes == 10
    item = dataset[0]
    assert item["image"].shape == (3, 32, 32) and item["boxes"].shape == (1, 4)
    assert open_dataset("synthetic", split="val").root == dataset.root  # generated once


def test_a_real_dataset_needs_a_root():
    with pytest.raises(WsolbenchError, match="dataset 'cub' needs a data root"):
        open_dataset("cub", split="test")


@pytest.mark.parametrize("name", ["mine", "synthetic"])
def test_a_plugin_dataset_in_a_builtin_synthetic_folder_still_needs_a_root(name):
    # same folder, classes and annotation as the built-in "synthetic", but not the registered spec
    spec = DatasetSpec(name=name, folder="SYNTHETIC", num_classes=10, annotation="boxes")
    with pytest.raises(WsolbenchError, match=f"dataset '{name}' needs a data root"):
        open_dataset(spec, split="val")


def test_only_the_builtin_synthetic_specs_are_generated_into_the_cache():
    from wsolbench.data.builtin import BUILTIN_DATASETS, GENERATED_DATASETS, generated_root

    assert sorted(GENERATED_DATASETS) == ["synthetic", "synthetic-masks"]
    for spec in BUILTIN_DATASETS:
        if spec.name not in GENERATED_DATASETS:
            assert generated_root(spec) is None
    assert generated_root(DatasetSpec(name="synthetic", folder="SYNTHETIC", num_classes=10,
                                      annotation="boxes")) is None
