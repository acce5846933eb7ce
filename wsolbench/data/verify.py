"""``wsolbench data verify``: check a dataset root against its metadata, reporting every problem.

For each split: the metadata problems that :func:`~wsolbench.data.metadata.parse_split` collects (each
naming file and line: malformed records, boxes outside their image, ...); the number of images against the
expected split size; and, for every image id, that the file exists, decodes (PIL ``verify`` and ``load``,
skipped with ``decode=False``, which reads only the header), and has the size ``image_sizes.txt`` gives;
for mask datasets, that every instance and ignore mask exists, decodes and has its image's size. Images
are checked in a thread pool (Pillow decodes without holding the GIL).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError
from tabulate import tabulate
from tqdm import tqdm

from wsolbench.data.metadata import IMAGE_IDS, IMAGE_SIZES, SplitMetadata, parse_split
from wsolbench.data.spec import SPLITS

_CHUNK = 64


@dataclass
class SplitReport:
    """What verifying one split found."""

    split: str
    images: int
    readable: int
    expected: int | None
    annotation: str  # "boxes", "masks" or "none"
    annotations: int
    problems: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    """Per-split results of :func:`verify_dataset`."""

    root: Path
    folder: str
    splits: list[SplitReport]

    @property
    def problems(self) -> list[str]:
        return [problem for split in self.splits for problem in split.problems]

    def table(self) -> str:
        rows = [(s.split, s.images, s.readable, "-" if s.expected is None else s.expected,
                 f"{s.annotations} {s.annotation}" if s.annotation != "none" else "-", len(s.problems))
                for s in self.splits]
        return tabulate(rows, headers=("split", "images", "readable", "expected", "boxes/masks", "problems"))


def verify_dataset(root: str | os.PathLike, folder: str, *, splits: Sequence[str] = SPLITS,
                   split_sizes: dict[str, int] | None = None, decode: bool = True, workers: int | None = None,
                   progress: bool = True) -> VerifyReport:
    """Check ``<root>/metadata/<folder>/<split>`` against ``<root>/dataset/<folder>`` for each of ``splits``.

    ``split_sizes`` gives the expected number of images of some splits. Returns every problem found.
    With ``progress``, a tqdm bar goes to stderr when it is a terminal.
    """
    root = Path(root)
    data_dir = root / "dataset" / folder
    workers = workers or min(32, os.cpu_count() or 1)
    reports = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for split in splits:
            metadata, problems = parse_split(root / "metadata" / folder / split)
            expected = (split_sizes or {}).get(split)
            ids = metadata.image_ids
            if expected is not None and len(ids) != expected:
                problems.append(f"{metadata.folder / IMAGE_IDS}: lists {len(ids)} images, "
                                f"expected {expected} for split {split!r}")
            chunks = [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
            readable = 0
            with tqdm(total=len(ids), desc=f"{folder}/{split}", unit="img", file=sys.stderr, leave=False,
                      disable=None if progress and ids else True) as bar:
                results = pool.map(lambda chunk: _check_images(chunk, data_dir, metadata, split, decode), chunks)
                for chunk, (chunk_problems, chunk_readable) in zip(chunks, results):
                    problems.extend(chunk_problems)
                    readable += chunk_readable
                    bar.update(len(chunk))
            counts = {"boxes": sum(map(len, metadata.boxes.values())),
                      "masks": sum(len(a.mask_paths) for a in metadata.masks.values())}
            reports.append(SplitReport(split, len(ids), readable, expected, metadata.annotation,
                                       counts.get(metadata.annotation, 0), problems))
    return VerifyReport(root, folder, reports)


def _check_images(image_ids: Sequence[str], data_dir: Path, metadata: SplitMetadata, split: str,
                  decode: bool) -> tuple[list[str], int]:
    """Problems of a batch of images (and their masks), and how many of the images were readable."""
    problems, readable = [], 0
    for image_id in image_ids:
        where = f"(image {image_id!r} of {split})"
        path = data_dir / image_id
        size, error = _open(path, decode)
        if error:
            problems.append(f"{path}: {error} {where}")
        else:
            readable += 1
            wanted = metadata.image_sizes.get(image_id)
            if wanted is not None and size != wanted:
                problems.append(f"{path}: image is {size[0]}x{size[1]} but {metadata.folder / IMAGE_SIZES} "
                                f"says {wanted[0]}x{wanted[1]} {where}")
        annotation = metadata.masks.get(image_id)
        if annotation is None:
            continue
        image_size = size if not error else metadata.image_sizes.get(image_id)
        for mask in (*annotation.mask_paths, annotation.ignore_path):
            mask_path = data_dir / mask
            mask_size, mask_error = _open(mask_path, decode)
            if mask_error:
                problems.append(f"{mask_path}: mask {mask_error} {where}")
            elif image_size is not None and mask_size != image_size:
                problems.append(f"{mask_path}: mask is {mask_size[0]}x{mask_size[1]}, its image "
                                f"{image_size[0]}x{image_size[1]} {where}")
    return problems, readable


def _open(path: Path, decode: bool) -> tuple[tuple[int, int] | None, str | None]:
    """``(size, None)`` for a readable image, ``(None, what is wrong)`` otherwise."""
    try:
        with Image.open(path) as image:
            size = image.size
            if decode:
                image.verify()
        if decode:
            with Image.open(path) as image:
                image.load()
        return size, None
    except FileNotFoundError:
        return None, "is missing"
    except UnidentifiedImageError:
        return None, "is not an image PIL can read"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:  # PIL's corrupt-data errors
        return None, f"does not decode ({error})"
