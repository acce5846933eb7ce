"""The cached pipeline against torchvision's functional ops applied by hand to the original images."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from wsolbench.data.datasets import WsolDataset, open_dataset
from wsolbench.data.pipeline import (CachedLoader, DeviceLoader, RandomCropFlip, crop_flip_normalize,
                                     decoded_images, make_loader)
from wsolbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from wsolbench.errors import WsolbenchError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def by_hand(image, resize, crop=None, top=0, left=0, flip=False):
    """torchvision v1 functional: resize (PIL bilinear), crop, flip, to_tensor, normalize."""
    image = TF.resize(image, [resize, resize])
    if crop is not None:
        image = TF.crop(image, top, left, crop, crop)
    if flip:
        image = TF.hflip(image)
    return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("device", DEVICES)
def test_crop_flip_normalize_equals_torchvision_functional_by_hand(tiny_boxes_root, device):
    dataset = open_dataset("synthetic", tiny_boxes_root, "train", image_size=32)  # resize 37, crop 32
    images = torch.from_numpy(np.array(decoded_images(dataset, 37))).to(device)
    top, left = torch.tensor([0, 5, 2, 5]), torch.tensor([5, 0, 3, 5])
    flip = torch.tensor([True, False, True, False])
    out = crop_flip_normalize(images, top, left, flip, 32)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32 and out.device.type == device
    for b in range(4):
        expected = by_hand(dataset.load_image(b), 37, 32, int(top[b]), int(left[b]), bool(flip[b]))
        torch.testing.assert_close(out[b].cpu(), expected)


def test_training_batches_are_crops_and_flips_of_each_image_and_follow_the_seed(tiny_boxes_root):
    dataset = open_dataset("synthetic", tiny_boxes_root, "train", image_size=32)
    batches = list(CachedLoader(dataset, batch_size=3, seed=5))
    assert [len(b["image_id"]) for b in batches] == [3, 1]
    assert sorted(i for b in batches for i in b["image_id"]) == sorted(dataset.image_ids)
    for batch in batches:
        for image, image_id, label in zip(batch["image"], batch["image_id"], batch["label"].tolist()):
            index = dataset.image_ids.index(image_id)
            assert label == dataset.label(index)
            original = dataset.load_image(index)
            assert any(torch.allclose(image, by_hand(original, 37, 32, t, l, f), atol=1e-5)
                       for t in range(6) for l in range(6) for f in (False, True))
    again = list(CachedLoader(dataset, batch_size=3, seed=5))
    other = list(CachedLoader(dataset, batch_size=3, seed=6))
    for a, b in zip(batches, again):
        assert a["image_id"] == b["image_id"] and torch.equal(a["image"], b["image"])
    assert any(a["image_id"] != c["image_id"] or not torch.equal(a["image"], c["image"])
               for a, c in zip(batches, other))


def test_random_crop_flip_draws_every_offset_and_both_flips():
    augment = RandomCropFlip(4, torch.Generator().manual_seed(0))
    top, left, flip = augment.draw(2000, 7)
    assert set(top.tolist()) == set(left.tolist()) == {0, 1, 2, 3}
    assert 0.45 < flip.float().mean() < 0.55


def test_eval_batches_are_resized_normalized_images_with_targets(tiny_boxes_root):
    dataset = open_dataset("synthetic", tiny_boxes_root, "test", image_size=32)
    loader = CachedLoader(dataset, batch_size=3)
    batches = list(loader)
    assert len(loader) == 2
    assert [b["image_id"] for b in batches] == [list(dataset.image_ids[:3]), [dataset.image_ids[3]]]
    for batch in batches:
        for image, image_id, boxes in zip(batch["image"], batch["image_id"], batch["boxes"]):
            index = dataset.image_ids.index(image_id)
            torch.testing.assert_close(image, by_hand(dataset.load_image(index), 32))
            assert torch.equal(boxes, dataset[index]["boxes"])


def test_mask_targets_are_cached_like_the_dataset_reads_them(tiny_masks_root):
    dataset = open_dataset("synthetic-masks", tiny_masks_root, "test", image_size=32)
    batch = next(iter(CachedLoader(dataset, batch_size=4)))
    assert batch["mask"].shape == (4, 224, 224) and "boxes" not in batch
    for mask, image_id in zip(batch["mask"], batch["image_id"]):
        assert torch.equal(mask, dataset[dataset.image_ids.index(image_id)]["mask"])


def test_cache_is_reused_and_follows_file_changes(tiny_boxes_root, tmp_path):
    dataset = open_dataset("synthetic", tiny_boxes_root, "val", image_size=32)
    first = decoded_images(dataset, 32, cache_dir=tmp_path)
    assert isinstance(first, np.memmap) and first.shape == (2, 3, 32, 32) and first.dtype == np.uint8
    assert len(list((tmp_path / "decoded").glob("*.npy"))) == 1
    decoded_images(dataset, 32, cache_dir=tmp_path)
    assert len(list((tmp_path / "decoded").glob("*.npy"))) == 1  # no rebuild
    decoded_images(dataset, 16, cache_dir=tmp_path)
    assert len(list((tmp_path / "decoded").glob("*.npy"))) == 2  # another size, another entry
    expected = np.asarray(dataset.load_image(0).resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
    np.testing.assert_array_equal(first[0], expected)


def test_make_loader_picks_the_pipeline(tiny_boxes_root):
    dataset = open_dataset("synthetic", tiny_boxes_root, "val", image_size=32)
    assert isinstance(make_loader(dataset, 2), CachedLoader)
    assert isinstance(make_loader(dataset, 2, cache="off"), DeviceLoader)
    assert isinstance(make_loader(dataset, 2, max_cache_bytes=100), DeviceLoader)
    custom = WsolDataset(dataset.spec, tiny_boxes_root, "val", train=False, transform=eval_transform(16))
    assert isinstance(make_loader(custom, 2), DeviceLoader)
    with pytest.raises(WsolbenchError, match="custom"):
        make_loader(custom, 2, cache="on")


def test_plain_loader_gives_the_same_eval_batches(tiny_boxes_root):
    dataset = open_dataset("synthetic", tiny_boxes_root, "test", image_size=32)
    for cached, plain in zip(CachedLoader(dataset, 2), DeviceLoader(dataset, 2, num_workers=0)):
        assert cached["image_id"] == plain["image_id"] and torch.equal(cached["label"], plain["label"])
        torch.testing.assert_close(cached["image"], plain["image"])
        assert all(torch.equal(a, b) for a, b in zip(cached["boxes"], plain["boxes"]))
