"""The protocol's image transforms (wsolevaluation §4.4), for any input size.

* train: ``Resize((R, R))`` (aspect ratio not kept) -> ``RandomCrop(C)`` -> ``RandomHorizontalFlip`` ->
  to float in [0, 1] -> ``Normalize`` with ImageNet mean and std;
* eval: ``Resize((C, C))`` -> to float -> ``Normalize`` (no centre crop).

``C`` is the crop (input) size, 224 in the protocol, and ``R = round(C * 256 / 224)`` (256 at 224, 73 at
64). Resizing is PIL bilinear, as torchvision does for PIL images.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROTOCOL_CROP_SIZE = 224
PROTOCOL_RESIZE_SIZE = 256


def train_resize_size(crop_size: int) -> int:
    """Side of the square resize before the random crop: ``round(crop * 256 / 224)``."""
    return round(crop_size * PROTOCOL_RESIZE_SIZE / PROTOCOL_CROP_SIZE)


def resize_image(image: Image.Image, size: int) -> Image.Image:
    """The protocol's resize: to ``size`` x ``size``, PIL bilinear (the same call the transforms make)."""
    return F.resize(image, [size, size], interpolation=v2.InterpolationMode.BILINEAR)


def _to_normalized_tensor() -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(crop_size: int = PROTOCOL_CROP_SIZE) -> v2.Compose:
    """PIL RGB image -> normalized ``(3, crop, crop)`` float tensor, randomly cropped and flipped."""
    size = train_resize_size(crop_size)
    return v2.Compose([v2.Resize((size, size)), v2.RandomCrop(crop_size), v2.RandomHorizontalFlip(),
                       *_to_normalized_tensor()])


def eval_transform(size: int = PROTOCOL_CROP_SIZE) -> v2.Compose:
    """PIL RGB image -> normalized ``(3, size, size)`` float tensor."""
    return v2.Compose([v2.Resize((size, size)), *_to_normalized_tensor()])
