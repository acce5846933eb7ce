"""Input pipelines: a decoded-once cache with augmentation on the device, or a plain DataLoader.

:class:`CachedLoader` decodes a split once into a uint8 ``(N, 3, S, S)`` ``.npy`` array, resized as the
protocol does (``S = round(C * 256 / 224)`` for training, ``S = C`` for evaluation), kept under the cache
folder (``decoded/<key>.npy``, memory-mapped; the key hashes the image folder, the ids, each file's size
and mtime, ``S`` and the Pillow and OpenCV versions; an entry found incomplete or damaged is rebuilt,
with one warning line). Per batch it copies the rows to the device and there applies ``RandomCrop(C)``,
``RandomHorizontalFlip`` and ``Normalize`` as batched tensor ops, the crop offsets and flips drawn from a
seeded CPU ``torch.Generator`` (the same draws on CPU and CUDA).
Mask targets are cached the same way.

:class:`DeviceLoader` is a ``torch.utils.data.DataLoader`` (PIL decoding and transforms in worker
processes) for data too large to cache or datasets with a custom transform. :func:`make_loader` picks.

Both yield :func:`~wsolbench.data.datasets.collate` batches whose tensors are on the device (``boxes``
stay on the CPU).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import PIL
import torch
from torch.utils.data import DataLoader

from wsolbench.atomic import atomic_path, remove_stale_temporaries
from wsolbench.data.cache import cache_root, entry_lock
from wsolbench.data.datasets import WsolDataset, collate, load_mask
from wsolbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_image, train_resize_size
from wsolbench.errors import WsolbenchError
from wsolbench.metrics.functional import gt_pixel_labels, resize_mask

CACHE_FORMAT = 1  #: bump when the decoded arrays change
DEFAULT_MAX_CACHE_BYTES = 16 * 2 ** 30  #: ``make_loader(cache="auto")`` caches splits up to this size
_CHUNK = 256  #: images decoded per thread-pool round while filling a cache


def _file_stamp(path: Path, image_id: str) -> str:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise WsolbenchError(f"file {path} (image id {image_id!r}) is missing") from None
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _cache_key(what: str, size: int, dataset: WsolDataset, files: Callable[[int], list[Path]]) -> str:
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, "what": what, "size": size, "pillow": PIL.__version__,
                                        "opencv": cv2.__version__, "folder": str(dataset.data_dir.resolve())}).encode())
    for index, image_id in enumerate(dataset.image_ids):
        stamps = ",".join(_file_stamp(path, image_id) for path in files(index))
        digest.update(f"{image_id}\0{stamps}\n".encode())
    return digest.hexdigest()[:24]


_MISSING = "is missing"


def _open_entry(path: Path, shape: tuple) -> np.ndarray | str:
    """The cache entry at ``path`` memory-mapped read-only if it is complete, else why it is not.

    Complete means: a ``.npy`` header stating uint8, C order and ``shape``, and a file size of exactly the
    header plus ``prod(shape)`` bytes. That suffices because an entry is only ever filled under a
    temporary name and renamed into place once flushed (:func:`_fill`): a file under the entry's name was
    whole when it got there, so any later damage that matters (a truncated copy, a full disk, zero bytes,
    another array saved over it, garbage) shows in the header or the size. Damage that keeps both (flipped
    bytes) is not detected: hashing the array on every use would cost more than decoding it again.
    """
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                return f"has .npy format version {version[0]}.{version[1]}"
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            found_shape, fortran_order, dtype = read_header(handle)
            expected_size = handle.tell() + math.prod(shape)
            size = os.fstat(handle.fileno()).st_size
        if (found_shape, fortran_order, dtype) != (shape, False, np.dtype(np.uint8)):
            order = "Fortran-order " if fortran_order else ""
            return f"holds a {order}{dtype} array of shape {found_shape}, not uint8 {shape}"
        if size != expected_size:
            return f"has {size} bytes, not {expected_size}"
        return np.load(path, mmap_mode="r")
    except FileNotFoundError:
        return _MISSING
    except (OSError, ValueError) as error:
        return f"is not a readable .npy file ({' '.join(str(error).split()) or type(error).__name__})"


def _fill(path: Path, shape: tuple, fill: Callable[[int], np.ndarray], workers: int) -> None:
    """Write the array whose row ``i`` is ``fill(i)`` to ``path`` atomically (:mod:`wsolbench.atomic`);
    rows are computed by ``workers`` threads (PIL and OpenCV release the GIL)."""
    try:
        with atomic_path(path) as tmp:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            with ThreadPoolExecutor(workers) as pool:
                for start in range(0, shape[0], _CHUNK):
                    rows = range(start, min(start + _CHUNK, shape[0]))
                    array[rows.start:rows.stop] = np.stack(list(pool.map(fill, rows)))
            array.flush()
            del array
    except OSError as error:
        raise WsolbenchError(f"cannot write the decoded cache entry {path}: {error.strerror or error}") from None


def _cached_array(path: Path, shape: tuple, fill: Callable[[int], np.ndarray], workers: int) -> np.ndarray:
    """The uint8 array of ``shape`` cached at ``path`` (memory-mapped, read-only), built by :func:`_fill`
    first if it is absent, and built again, with one warning line on stderr, if it is not complete
    (:func:`_open_entry`).

    Every use deletes the temporaries of killed writers in its folder (one listing of it). Processes
    that find the entry unusable take turns through :func:`~wsolbench.data.cache.entry_lock`, so one builds
    it and the others, having waited, open it.
    """
    remove_stale_temporaries(path.parent, recursive=False)
    entry = _open_entry(path, shape)
    if not isinstance(entry, str):
        return entry
    with entry_lock(path):
        entry = _open_entry(path, shape)  # another process may have built it meanwhile
        if not isinstance(entry, str):
            return entry
        if entry != _MISSING:
            print(f"wsolbench: warning: the decoded cache entry {path} {entry}; rebuilding it", file=sys.stderr)
        _fill(path, shape, fill, workers)
        return np.load(path, mmap_mode="r")


def decoded_images(dataset: WsolDataset, size: int, cache_dir: Path | None = None,
                   workers: int | None = None) -> np.ndarray:
    """The split's images resized to ``size`` x ``size`` as uint8 ``(N, 3, size, size)``, decoded once."""
    key = _cache_key("images", size, dataset, lambda i: [dataset.image_path(i)])
    path = Path(cache_dir or cache_root()) / "decoded" / f"{key}.npy"

    def fill(index: int) -> np.ndarray:
        return np.asarray(resize_image(dataset.load_image(index), size)).transpose(2, 0, 1)

    return _cached_array(path, (len(dataset), 3, size, size), fill, workers or os.cpu_count() or 1)


def decoded_masks(dataset: WsolDataset, cache_dir: Path | None = None, workers: int | None = None) -> np.ndarray:
    """The split's pixel labels (1 foreground, 0 background, 255 ignore) as uint8 ``(N, T, T)``, read once."""
    masks = dataset.metadata.masks

    def files(index: int) -> list[Path]:
        annotation = masks[dataset.image_ids[index]]
        return [dataset.data_dir / p for p in (*annotation.mask_paths, annotation.ignore_path)]

    size = dataset.target_size
    key = _cache_key("masks", size, dataset, files)
    path = Path(cache_dir or cache_root()) / "decoded" / f"{key}.npy"

    def fill(index: int) -> np.ndarray:
        image_id = dataset.image_ids[index]
        *instances, ignore = [resize_mask(load_mask(p, image_id), size) for p in files(index)]
        return gt_pixel_labels(instances, ignore)

    return _cached_array(path, (len(dataset), size, size), fill, workers or os.cpu_count() or 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> float32 ``(x / 255 - mean) / std`` (ImageNet mean and std), computed as
    ``x * (1 / (255 std)) - mean / std`` in two passes."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    scale, shift = (1 / (255 * std)).to(images.device, torch.float32), (mean / std).to(images.device, torch.float32)
    return images.to(torch.float32).mul_(scale).sub_(shift)


def crop_flip_normalize(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
                        crop_size: int) -> torch.Tensor:
    """Crop image ``b`` to rows ``top[b]:top[b]+C``, columns ``left[b]:left[b]+C``, mirror it where
    ``flip[b]``, then :func:`normalize`; two gathers for the whole batch, on ``images``' device."""
    device = images.device
    batch, channels, _, width = images.shape
    steps = torch.arange(crop_size, device=device)
    rows = top.to(device)[:, None] + steps
    cols = left.to(device)[:, None] + torch.where(flip.to(device)[:, None], crop_size - 1 - steps, steps)
    cropped = images.gather(2, rows[:, None, :, None].expand(batch, channels, crop_size, width))
    cropped = cropped.gather(3, cols[:, None, None, :].expand(batch, channels, crop_size, crop_size))
    return normalize(cropped)


class RandomCropFlip:
    """``RandomCrop(crop_size)`` + ``RandomHorizontalFlip(0.5)`` + ``Normalize`` on uint8 batches.

    Offsets and flips come from ``generator`` (a CPU ``torch.Generator``), so a seed fixes them whatever
    the device of the images.
    """

    def __init__(self, crop_size: int, generator: torch.Generator):
        self.crop_size, self.generator = crop_size, generator

    def draw(self, batch_size: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(top, left, flip)`` for a batch of ``image_size`` x ``image_size`` images."""
        high = image_size - self.crop_size + 1
        top = torch.randint(0, high, (batch_size,), generator=self.generator)
        left = torch.randint(0, high, (batch_size,), generator=self.generator)
        flip = torch.rand(batch_size, generator=self.generator) < 0.5
        return top, left, flip

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return crop_flip_normalize(images, *self.draw(images.shape[0], images.shape[-1]), self.crop_size)


class CachedLoader:
    """Batches of ``dataset`` from its decoded cache, augmented (training) or normalized on ``device``.

    Training batches follow a permutation drawn from the seeded generator each epoch (``shuffle``
    defaults to ``dataset.train``). Needs the protocol transform (a dataset built without ``transform``).
    """

    def __init__(self, dataset: WsolDataset, batch_size: int, *, device: str | torch.device = "cpu",
                 seed: int = 0, shuffle: bool | None = None, drop_last: bool = False,
                 cache_dir: Path | None = None, workers: int | None = None, rank: int = 0, world_size: int = 1,
                 batch_sampler=None):
        if not dataset.protocol_transform:
            raise WsolbenchError("the cached pipeline applies the protocol transform; "
                                 "this dataset has a custom one (use the plain DataLoader pipeline)")
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.device = torch.device(device)
        self.shuffle = dataset.train if shuffle is None else shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.shard = Shard(rank, world_size)
        self.batch_sampler = batch_sampler
        size = train_resize_size(dataset.image_size) if dataset.train else dataset.image_size
        self.images = decoded_images(dataset, size, cache_dir, workers)
        self.labels = torch.tensor([dataset.label(i) for i in range(len(dataset))], dtype=torch.int64)
        self.masks = None
        if dataset.with_localization and dataset.metadata.annotation == "masks":
            self.masks = decoded_masks(dataset, cache_dir, workers)
        self.augment = RandomCropFlip(dataset.image_size, self.generator) if dataset.train else None

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(_ShardedBatches(self.batch_sampler, self.shard))
        n, b = self.shard.size(len(self.dataset)), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _batch_indices(self) -> list[np.ndarray]:
        """This process's index batches for one pass: its part of each batch of the batch sampler, or its
        shard of the (shuffled) order cut into ``batch_size`` pieces."""
        if self.batch_sampler is not None:
            return [np.asarray(b, dtype=np.int64) for b in _ShardedBatches(self.batch_sampler, self.shard)]
        n = len(self.dataset)
        order = self.shard.take(torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n))
        indices = [order[i:i + self.batch_size].numpy() for i in range(0, len(order), self.batch_size)]
        if self.drop_last and indices and len(indices[-1]) < self.batch_size:
            indices.pop()
        return indices

    def _host_batch(self, index: np.ndarray) -> dict:
        batch = {"image": torch.from_numpy(self.images[index]), "label": self.labels[torch.from_numpy(index)],
                 "image_id": [self.dataset.image_ids[i] for i in index]}
        if self.masks is not None:
            batch["mask"] = torch.from_numpy(self.masks[index])
        elif self.dataset.with_localization:
            batch["boxes"] = [self.dataset.localization_target(i)["boxes"] for i in index]
        if self.device.type == "cuda":
            batch.update({k: v.pin_memory() for k, v in batch.items() if isinstance(v, torch.Tensor)})
        return batch

    def _on_device(self, batch: dict) -> dict:
        batch = _to_device(batch, self.device)
        batch["image"] = self.augment(batch["image"]) if self.augment else normalize(batch["image"])
        return batch

    def __iter__(self):
        indices = self._batch_indices()
        with ThreadPoolExecutor(1) as reader:  # reads batch k + 1 while batch k is used
            pending = reader.submit(self._host_batch, indices[0]) if indices else None
            for k in range(len(indices)):
                batch = pending.result()
                if k + 1 < len(indices):
                    pending = reader.submit(self._host_batch, indices[k + 1])
                yield self._on_device(batch)


@dataclass(frozen=True)
class Shard:
    """The part of an index order that process ``rank`` of ``world_size`` handles: every world_size-th index
    from ``rank``. Shards never overlap and nothing is padded, so an evaluation counts each image once."""

    rank: int = 0
    world_size: int = 1

    def take(self, order: torch.Tensor) -> torch.Tensor:
        return order[self.rank::self.world_size]

    def size(self, n: int) -> int:
        return len(range(self.rank, n, self.world_size))


class _ShardSampler(torch.utils.data.Sampler):
    """Indices of one :class:`Shard`, reshuffled each epoch from ``generator`` when ``shuffle``."""

    def __init__(self, n: int, shard: Shard, shuffle: bool, generator: torch.Generator):
        self.n, self.shard, self.shuffle, self.generator = n, shard, shuffle, generator

    def __len__(self) -> int:
        return self.shard.size(self.n)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        return iter(self.shard.take(order).tolist())


class _ShardedBatches:
    """This process's part of every batch of a batch sampler: each global batch is split across processes."""

    def __init__(self, batch_sampler, shard: Shard):
        self.batch_sampler, self.shard = batch_sampler, shard

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        return (list(batch)[self.shard.rank::self.shard.world_size] for batch in self.batch_sampler)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class DeviceLoader:
    """A ``DataLoader`` over ``dataset`` with ``num_workers`` processes; batches moved to ``device``.

    Shuffling follows the seed; so do random transforms when ``num_workers > 0`` (torch seeds each worker
    from the loader's generator), otherwise they use the process's global torch seed.
    """

    def __init__(self, dataset: WsolDataset, batch_size: int, *, device: str | torch.device = "cpu",
                 seed: int = 0, shuffle: bool | None = None, drop_last: bool = False, num_workers: int = 0,
                 rank: int = 0, world_size: int = 1, batch_sampler=None):
        self.device = torch.device(device)
        self.generator = generator = torch.Generator().manual_seed(seed)  # shuffling (and worker seeds)
        common = dict(num_workers=num_workers, collate_fn=collate, pin_memory=self.device.type == "cuda",
                      generator=generator, persistent_workers=num_workers > 0)
        if batch_sampler is not None:
            batches = _ShardedBatches(batch_sampler, Shard(rank, world_size))
            self.loader = DataLoader(dataset, batch_sampler=batches, **common)
        else:
            sampler = _ShardSampler(len(dataset), Shard(rank, world_size),
                                    dataset.train if shuffle is None else shuffle, generator)
            self.loader = DataLoader(dataset, batch_size, sampler=sampler, drop_last=drop_last, **common)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield _to_device(batch, self.device)


def decoded_bytes(dataset: WsolDataset) -> int:
    """Size of the decoded image cache of ``dataset``."""
    size = train_resize_size(dataset.image_size) if dataset.train else dataset.image_size
    return len(dataset) * 3 * size * size


def make_loader(dataset: WsolDataset, batch_size: int, *, device: str | torch.device = "cpu", seed: int = 0,
                shuffle: bool | None = None, drop_last: bool = False, cache: str = "auto",
                num_workers: int | None = None, cache_dir: Path | None = None,
                max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES, rank: int = 0, world_size: int = 1,
                batch_sampler=None):
    """A :class:`CachedLoader` (``cache="on"``, or ``"auto"`` for a protocol-transform split whose decoded
    images fit in ``max_cache_bytes``) or a :class:`DeviceLoader` (``"off"``, or ``"auto"`` otherwise)."""
    if cache not in ("auto", "on", "off"):
        raise WsolbenchError(f"cache must be auto, on or off, got {cache!r}")
    workers = min(os.cpu_count() or 1, 8) if num_workers is None else num_workers
    use_cache = cache == "on" or (cache == "auto" and dataset.protocol_transform
                                  and decoded_bytes(dataset) <= max_cache_bytes)
    if use_cache:
        return CachedLoader(dataset, batch_size, device=device, seed=seed, shuffle=shuffle, drop_last=drop_last,
                            cache_dir=cache_dir, workers=max(workers, 1), rank=rank, world_size=world_size,
                            batch_sampler=batch_sampler)
    return DeviceLoader(dataset, batch_size, device=device, seed=seed, shuffle=shuffle, drop_last=drop_last,
                        num_workers=workers, rank=rank, world_size=world_size, batch_sampler=batch_sampler)
