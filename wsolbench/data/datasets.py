"""Torch datasets over one split of a dataset root in wsolevaluation's layout.

An item is a dict: ``image`` (normalized float tensor), ``label`` (int), ``image_id`` (str) and, for
evaluation items only, the localization target in the ``target_size`` x ``target_size`` grid where every
metric is computed (224, wsolevaluation §2.5 and §2.7, whatever the input size):

* ``boxes``: ``(K, 4)`` int64 inclusive boxes, each corner ``int(c * target / W)`` (x) or
  ``int(c * target / H)`` (y) with ``W, H`` from ``image_sizes.txt``; no clipping;
* ``mask``: ``(target, target)`` uint8 pixel labels, 1 foreground, 0 background, 255 ignore.

:func:`collate` batches items (boxes stay a list: their count varies per image). :func:`open_dataset`
opens a registered dataset, a :class:`DatasetSpec`, or any folder of a root in the layout by its name.
:func:`sample_per_class` keeps a seeded random subset of each class (wsolevaluation's
``--num_val_sample_per_class``, the paper's reduced train-fullsup); :func:`hold_out_per_class` splits
one off (the held-out selection images of a method that trains on train-fullsup).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from wsolbench.data.metadata import CLASS_LABELS, read_split
from wsolbench.data.spec import SPLITS, DatasetSpec
from wsolbench.data.transforms import PROTOCOL_CROP_SIZE, eval_transform, train_transform
from wsolbench.errors import WsolbenchError
from wsolbench.metrics.functional import RESIZE_LENGTH, gt_pixel_labels, resize_box, resize_mask
from wsolbench.registry import UnknownNameError


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def load_image(path: str | os.PathLike, image_id: str) -> Image.Image:
    """Decode an image as PIL RGB; a missing, corrupt or truncated file is a one-line error."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise WsolbenchError(f"image file {path} (image id {image_id!r}) is missing") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise WsolbenchError(f"cannot decode image {path} (image id {image_id!r}): {_one_line(error)}") from None


def load_mask(path: str | os.PathLike, image_id: str) -> np.ndarray:
    """Read a mask PNG as grayscale with OpenCV; a missing or unreadable file is a one-line error."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        problem = "cannot be decoded" if Path(path).is_file() else "is missing"
        raise WsolbenchError(f"mask file {path} (image id {image_id!r}) {problem}")
    return mask


class WsolDataset(Dataset):
    """One split of ``spec`` under ``root``; training items carry no localization target.

    ``transform`` defaults to the protocol's train or eval transform at ``image_size``
    (``protocol_transform`` tells which).
    """

    def __init__(self, spec: DatasetSpec, root: str | os.PathLike, split: str, *, train: bool,
                 image_size: int = PROTOCOL_CROP_SIZE, target_size: int = RESIZE_LENGTH, transform=None):
        if split not in SPLITS:
            raise WsolbenchError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self.spec, self.root, self.split = spec, Path(root), split
        self.train, self.image_size, self.target_size = train, image_size, target_size
        self.metadata = read_split(spec.metadata_dir(root, split))
        self.data_dir = spec.data_dir(root)
        self.image_ids = self.metadata.image_ids
        if not self.image_ids:
            raise WsolbenchError(f"{self.metadata.folder}: the split lists no images")
        self.protocol_transform = transform is None
        self.transform = transform or (train_transform(image_size) if train else eval_transform(image_size))
        self._check_labels()
        if not train and self.metadata.annotation != spec.annotation:
            raise WsolbenchError(
                f"{self.metadata.folder}: dataset {spec.name!r} expects {spec.annotation} localization "
                f"labels but the split holds {self.metadata.annotation}")

    def _check_labels(self) -> None:
        for image_id in self.image_ids:
            label = self.metadata.class_labels[image_id]
            if label >= self.spec.num_classes:
                raise WsolbenchError(
                    f"{self.metadata.folder / CLASS_LABELS}: image id {image_id!r} has class label {label} "
                    f"but dataset {self.spec.name!r} has {self.spec.num_classes} classes")

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def with_localization(self) -> bool:
        """Whether items carry a localization target (evaluation items do)."""
        return not self.train

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self.data_dir / self.image_ids[index]

    def label(self, index: int) -> int:
        return self.metadata.class_labels[self.image_ids[index]]

    def load_image(self, index: int) -> Image.Image:
        """The decoded original image (PIL RGB)."""
        return load_image(self.image_path(index), self.image_ids[index])

    def localization_target(self, index: int) -> dict[str, torch.Tensor]:
        """``{"boxes": (K, 4) int64}`` or ``{"mask": (T, T) uint8}`` in the ``target_size`` grid."""
        image_id = self.image_ids[index]
        size = (self.target_size, self.target_size)
        if self.metadata.annotation == "boxes":
            original = self.metadata.image_sizes[image_id]
            boxes = [resize_box(box, original, size) for box in self.metadata.boxes[image_id]]
            return {"boxes": torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)}
        annotation = self.metadata.masks[image_id]
        instances = [resize_mask(load_mask(self.data_dir / path, image_id), self.target_size)
                     for path in annotation.mask_paths]
        ignore = resize_mask(load_mask(self.data_dir / annotation.ignore_path, image_id), self.target_size)
        return {"mask": torch.from_numpy(gt_pixel_labels(instances, ignore))}

    def __getitem__(self, index: int) -> dict:
        item = {"image": self.transform(self.load_image(index)), "label": self.label(index),
                "image_id": self.image_ids[index]}
        if self.with_localization:
            item.update(self.localization_target(index))
        return item


def sample_per_class(dataset: WsolDataset, per_class: int, seed: int) -> WsolDataset:
    """``dataset`` reduced to ``per_class`` images of each class, drawn at random without replacement.

    Class ``c``'s images are drawn with ``numpy.random.default_rng([seed, c]).choice(n_c, per_class,
    replace=False)`` over its ``n_c`` images in split order, so a seed fixes the subset and each class's
    draw is independent of the others. A class with at most ``per_class`` images keeps all of them (CUB's
    train-fullsup has a class of 3). The result keeps the split's order of ids and shares the spec, root,
    transform and target size of ``dataset``; its metadata lists only the kept ids. ``per_class=0`` returns
    ``dataset`` itself.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 0:
        raise WsolbenchError(f"num_val_sample_per_class must be a non-negative integer (0 = all images), "
                             f"got {per_class!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise WsolbenchError(f"the sampling seed must be a non-negative integer, got {seed!r}")
    if per_class == 0:
        return dataset
    by_class: dict[int, list[int]] = {}
    for index in range(len(dataset)):
        by_class.setdefault(dataset.label(index), []).append(index)
    kept = []
    for label, indices in by_class.items():
        if len(indices) <= per_class:
            kept += indices
        else:
            chosen = np.random.default_rng([seed, label]).choice(len(indices), per_class, replace=False)
            kept += [indices[i] for i in chosen]
    return _with_image_ids(dataset, tuple(dataset.image_ids[i] for i in sorted(kept)))


def hold_out_per_class(dataset: WsolDataset, per_class: int, seed: int) -> tuple[WsolDataset, WsolDataset]:
    """``(rest, held_out)``: ``per_class`` images of each class drawn into ``held_out``, the others in ``rest``.

    Class ``c``'s held-out images are ``numpy.random.default_rng([seed, c, 1]).choice(n_c, per_class,
    replace=False)`` of its ``n_c`` images in split order (independent of :func:`sample_per_class`'s draw); a
    class with at most ``per_class`` images is held out of nothing (all of them stay in ``rest``). Both parts
    keep the split's order of ids. An empty held-out part is an error: nothing could be selected on.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise WsolbenchError(f"holdout_per_class must be a positive integer, got {per_class!r}")
    by_class: dict[int, list[int]] = {}
    for index in range(len(dataset)):
        by_class.setdefault(dataset.label(index), []).append(index)
    held_out = set()
    for label, indices in by_class.items():
        if len(indices) > per_class:
            chosen = np.random.default_rng([seed, label, 1]).choice(len(indices), per_class, replace=False)
            held_out.update(indices[i] for i in chosen)
    if not held_out:
        raise WsolbenchError(f"{dataset.metadata.folder}: no class has more than {per_class} image(s), so none "
                             "can be held out of training to select on (lower holdout_per_class)")
    ids = dataset.image_ids
    return (_with_image_ids(dataset, tuple(ids[i] for i in range(len(ids)) if i not in held_out)),
            _with_image_ids(dataset, tuple(ids[i] for i in sorted(held_out))))


def _with_image_ids(dataset: WsolDataset, image_ids: tuple[str, ...]) -> WsolDataset:
    """A copy of ``dataset`` over ``image_ids`` (a subset of its ids), metadata restricted to them."""
    metadata = dataset.metadata
    ids = set(image_ids)

    def restricted(table: dict) -> dict:
        return {image_id: value for image_id, value in table.items() if image_id in ids}

    subset = copy.copy(dataset)
    subset.metadata = dataclasses.replace(
        metadata, image_ids=image_ids, class_labels=restricted(metadata.class_labels),
        image_sizes=restricted(metadata.image_sizes), boxes=restricted(metadata.boxes),
        masks=restricted(metadata.masks))
    subset.image_ids = image_ids
    return subset


def collate(items: list[dict]) -> dict:
    """Batch items: stacked ``image`` and ``mask``, ``label`` as int64, ``image_id`` and ``boxes`` as lists."""
    batch = {"image": torch.stack([item["image"] for item in items]),
             "label": torch.tensor([item["label"] for item in items], dtype=torch.int64),
             "image_id": [item["image_id"] for item in items]}
    if "boxes" in items[0]:
        batch["boxes"] = [item["boxes"] for item in items]
    if "mask" in items[0]:
        batch["mask"] = torch.stack([item["mask"] for item in items])
    return batch


def spec_from_layout(root: str | os.PathLike, folder: str) -> DatasetSpec:
    """A spec for ``<root>/metadata/<folder>``, a dataset wsolbench has never seen.

    The number of classes is ``max label + 1`` over the splits present; the annotation kind is that of
    the splits with localization labels (``"none"`` if no split has any).
    """
    metadata_root = Path(root) / "metadata" / folder
    splits = [split for split in SPLITS if (metadata_root / split).is_dir()]
    if not splits:
        raise WsolbenchError(f"{metadata_root} holds no split folder ({', '.join(SPLITS)})")
    metadata = [read_split(metadata_root / split) for split in splits]
    kinds = {m.annotation for m in metadata} - {"none"}
    if len(kinds) > 1:
        raise WsolbenchError(f"{metadata_root}: splits mix box and mask localization labels")
    return DatasetSpec(name=folder, folder=folder, num_classes=max(m.num_classes for m in metadata),
                       annotation=kinds.pop() if kinds else "none",
                       description=f"folder {folder!r} of {root} (wsolevaluation layout)")


def resolve_spec(name_or_spec: str | DatasetSpec, root: str | os.PathLike | None = None) -> DatasetSpec:
    """A registered dataset by name, else the folder ``<root>/metadata/<name>`` (see :func:`spec_from_layout`)."""
    if isinstance(name_or_spec, DatasetSpec):
        return name_or_spec
    from wsolbench.plugins import registry

    datasets = registry("dataset")
    if name_or_spec in datasets:
        return datasets.get(name_or_spec)
    if root is not None and (Path(root) / "metadata" / name_or_spec).is_dir():
        return spec_from_layout(root, name_or_spec)
    try:
        return datasets.get(name_or_spec)
    except UnknownNameError as error:
        where = f"nor a folder of {Path(root) / 'metadata'}" if root is not None else \
            "give a data root to open a folder in wsolevaluation's layout by its name"
        raise UnknownNameError(f"{error} ({where})") from None


def default_root(spec: DatasetSpec) -> Path:
    """The root used when none is given: the generated cache for the built-in synthetic datasets, an error
    naming the dataset for any other (a plugin's dataset is never read from the cache implicitly)."""
    from wsolbench.data.builtin import generated_root  # the built-in plugin (pluggy, prepare): only when needed

    root = generated_root(spec)
    if root is None:
        raise WsolbenchError(f"dataset {spec.name!r} needs a data root (the folder holding metadata/ and dataset/)")
    return root


def open_dataset(name_or_spec: str | DatasetSpec, root: str | os.PathLike | None = None, split: str = "test", *,
                 train: bool | None = None, image_size: int = PROTOCOL_CROP_SIZE,
                 target_size: int = RESIZE_LENGTH) -> WsolDataset:
    """Open ``split`` of a dataset; ``train`` defaults to ``split == "train"`` (training transform, no targets).

    ``root`` may be left out for the built-in synthetic datasets, which are then generated into the cache once.
    """
    spec = resolve_spec(name_or_spec, root)
    root = default_root(spec) if root is None else root
    train = split == "train" if train is None else train
    return WsolDataset(spec, root, split, train=train, image_size=image_size, target_size=target_size)
