"""The protocol transforms against numpy references built from PIL's bilinear resize."""

import numpy as np
import pytest
import torch
from PIL import Image

from wsolbench.data.transforms import eval_transform, train_resize_size, train_transform

MEAN = np.array([0.485, 0.456, 0.406])[:, None, None]
STD = np.array([0.229, 0.224, 0.225])[:, None, None]


def random_image(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def reference(image, size):
    """Resize to size x size with PIL bilinear, scale to [0, 1], normalize: (3, size, size) float64."""
    pixels = np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.float64).transpose(2, 0, 1)
    return (pixels / 255 - MEAN) / STD


@pytest.mark.parametrize("crop, resize", [(224, 256), (64, 73), (32, 37), (96, 110)])
def test_train_resize_size_keeps_the_256_to_224_ratio(crop, resize):
    assert train_resize_size(crop) == resize


def test_eval_transform_is_resize_then_normalize():
    image = random_image(50, 30)
    out = eval_transform(24)(image)
    assert out.dtype == torch.float32 and out.shape == (3, 24, 24)
    np.testing.assert_allclose(out.numpy(), reference(image, 24), atol=1e-5)


def test_train_transform_is_some_crop_and_flip_of_the_resized_image():
    image = random_image(41, 57, seed=1)
    resized = reference(image, 37)  # crop 32 -> resize 37
    candidates = [window[..., ::-1] if flip else window
                  for top in range(6) for left in range(6) for flip in (False, True)
                  for window in [resized[:, top:top + 32, left:left + 32]]]
    torch.manual_seed(0)
    seen_flips = set()
    for _ in range(10):
        out = train_transform(32)(image).numpy()
        assert out.shape == (3, 32, 32)
        matches = [k for k, c in enumerate(candidates) if np.allclose(out, c, atol=1e-5)]
        assert matches, "output is no crop/flip of the resized image"
        seen_flips.add(matches[0] % 2)
    assert seen_flips == {0, 1}
