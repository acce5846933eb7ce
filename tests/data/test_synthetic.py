"""The synthetic benchmark: determinism, layout, ground truth, and the size of the discriminative part."""

import colorsys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wsolbench.cli import cli
from wsolbench.data.metadata import read_split
from wsolbench.data.synthetic import PART_FRACTION, SynthParams, generate, render_sample
from wsolbench.errors import WsolbenchError


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def bbox(mask):
    rows, cols = np.nonzero(mask)
    return cols.min(), rows.min(), cols.max(), rows.max()


def test_same_seed_gives_identical_files_and_another_seed_other_images(tmp_path, tiny_boxes_root, tiny_params):
    again = tree(generate(tmp_path / "again", SynthParams(variant="boxes", **tiny_params)))
    assert again == tree(tiny_boxes_root)
    other = tree(generate(tmp_path / "other", SynthParams(variant="boxes", **{**tiny_params, "seed": 8})))
    assert other.keys() == again.keys()
    images = [k for k in again if k.endswith(".png")]
    assert all(other[k] != again[k] for k in images)


@pytest.mark.parametrize("variant", ["boxes", "masks"])
def test_generated_metadata_reads_back(variant, tiny_boxes_root, tiny_masks_root):
    root, folder = (tiny_boxes_root, "SYNTHETIC") if variant == "boxes" else (tiny_masks_root, "SYNTHETIC_MASKS")
    counts = {"train": 2, "val": 1, "test": 2}
    for split, per_class in counts.items():
        meta = read_split(root / "metadata" / folder / split)
        assert sorted(meta.class_labels.values()) == sorted([0, 1] * per_class)
        for image_id in meta.image_ids:
            with Image.open(root / "dataset" / folder / image_id) as image:
                assert image.size == (32, 32) and image.mode == "RGB"
        expected = variant if variant == "boxes" or split != "train" else "none"
        assert meta.annotation == expected
        if variant == "boxes":
            assert all(len(b) == 1 for b in meta.boxes.values())
            assert all(sizes == (32, 32) for sizes in meta.image_sizes.values())


def test_boxes_are_the_bounding_boxes_of_the_object_masks(tiny_boxes_root, tiny_masks_root):
    """The two variants draw the same images; each box encloses exactly the mask written for it."""
    for split in ("val", "test"):
        boxes = read_split(tiny_boxes_root / "metadata/SYNTHETIC" / split)
        masks = read_split(tiny_masks_root / "metadata/SYNTHETIC_MASKS" / split)
        assert boxes.image_ids == masks.image_ids
        for image_id in boxes.image_ids:
            data = tiny_masks_root / "dataset/SYNTHETIC_MASKS"
            assert (tiny_boxes_root / "dataset/SYNTHETIC" / image_id).read_bytes() == (data / image_id).read_bytes()
            annotation = masks.masks[image_id]
            mask = np.asarray(Image.open(data / annotation.mask_paths[0]))
            ignore = np.asarray(Image.open(data / annotation.ignore_path))
            assert set(np.unique(mask)) == {0, 255} and set(np.unique(ignore)) <= {0, 255}
            assert boxes.boxes[image_id] == (bbox(mask),)


def test_part_is_inside_the_object_and_covers_10_to_20_percent_of_it():
    """Measured at 96 px on 40 images: part pixels / object pixels lies in [0.10, 0.20] and within 0.03
    of the generator's requested fraction; the part's own box overlaps the object box by less than 0.3."""
    for k in range(40):
        sample = render_sample(np.random.default_rng([3, k]), k % 5, 5, 96)
        assert PART_FRACTION[0] <= sample.part_fraction <= PART_FRACTION[1]
        part, obj = sample.part_mask, sample.object_mask
        assert not (part & ~obj).any()
        measured = part.sum() / obj.sum()
        assert 0.10 <= measured <= 0.20 and abs(measured - sample.part_fraction) <= 0.03
        assert sample.box == bbox(obj)
        x0, y0, x1, y1 = sample.box
        assert 0 <= x0 <= x1 <= 95 and 0 <= y0 <= y1 <= 95
        px0, py0, px1, py1 = bbox(part)
        part_box_area, box_area = (px1 - px0 + 1) * (py1 - py0 + 1), (x1 - x0 + 1) * (y1 - y0 + 1)
        assert part_box_area / box_area < 0.3  # IoU of the part's box with the GT box (it lies inside)


def test_part_colour_and_shape_encode_the_class():
    """The part is saturated, with hue label / classes of the colour wheel."""
    for label in range(8):
        sample = render_sample(np.random.default_rng([0, label]), label, 8, 96)
        hue, saturation, _ = colorsys.rgb_to_hsv(*(sample.image[sample.part_mask].mean(axis=0) / 255))
        assert min(abs(hue - label / 8), 1 - abs(hue - label / 8)) < 0.03 and saturation > 0.7


def test_cli_writes_the_dataset_and_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "synth"
    args = ["data", "synth", "--out", str(out), "--classes", "2", "--train-per-class", "1", "--val-per-class", "1",
            "--test-per-class", "1", "--image-size", "32", "--variant", "masks"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "wrote SYNTHETIC_MASKS (train 2, val 2, test 2 images, 32x32)" in result.output
    assert read_split(out / "metadata/SYNTHETIC_MASKS/test").annotation == "masks"
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "already exists and is not an empty folder" in again.output


@pytest.mark.parametrize("bad, message", [({"classes": 1}, "at least 2 classes"),
                                          ({"image_size": 16}, "image size must be at least 32"),
                                          ({"test_per_class": 0}, "test_per_class must be at least 1"),
                                          ({"variant": "polygons"}, "unknown synthetic variant")])
def test_bad_parameters_are_errors(bad, message):
    with pytest.raises(WsolbenchError, match=message):
        SynthParams(**bad)
