"""Read, validate and write wsolevaluation's metadata layout.

A split folder (``<root>/<DATASET>/<train|val|test>/``) holds four CSV files, no header, one record per
line, no final newline (a final newline is accepted on reading):

==================== ============================================================================
``image_ids.txt``     ``<image_id>``: path relative to the dataset root, extension kept; sets the order
``class_labels.txt``  ``<image_id>,<class index>`` (0-based)
``image_sizes.txt``   ``<image_id>,<W>,<H>`` original size in pixels; may be empty (OpenImages)
``localization.txt``  boxes ``<image_id>,<x0>,<y0>,<x1>,<y1>``: inclusive corners, one line per box;
                      or masks ``<image_id>,<mask_png>,<ignore_png>``: one line per instance, only an
                      image's first line names its ignore mask; or empty (no localization labels)
==================== ============================================================================

:func:`parse_split` collects every problem it finds (each naming file and line, or image id);
:func:`read_split` raises :class:`~wsolbench.errors.MetadataError` on the first of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from wsolbench.errors import MetadataError

IMAGE_IDS = "image_ids.txt"
CLASS_LABELS = "class_labels.txt"
IMAGE_SIZES = "image_sizes.txt"
LOCALIZATION = "localization.txt"
METADATA_FILES = (IMAGE_IDS, CLASS_LABELS, IMAGE_SIZES, LOCALIZATION)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class MaskAnnotation:
    """Instance mask PNG paths of one image and its ignore-region PNG (paths relative to a mask root)."""

    mask_paths: tuple[str, ...]
    ignore_path: str


@dataclass(frozen=True)
class SplitMetadata:
    """One split of a dataset in wsolevaluation's layout.

    ``boxes`` maps image id -> inclusive ``(x0, y0, x1, y1)`` boxes in original pixels; ``masks`` maps
    image id -> :class:`MaskAnnotation`. At most one of them is non-empty.
    """

    folder: Path
    image_ids: tuple[str, ...]
    class_labels: dict[str, int]
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    boxes: dict[str, tuple[Box, ...]] = field(default_factory=dict)
    masks: dict[str, MaskAnnotation] = field(default_factory=dict)

    @property
    def annotation(self) -> str:
        """``"boxes"``, ``"masks"`` or ``"none"``."""
        if self.boxes:
            return "boxes"
        if self.masks:
            return "masks"
        return "none"

    @property
    def num_classes(self) -> int:
        return max(self.class_labels.values(), default=-1) + 1


class _Problems:
    """Collects ``file:line: message`` problems."""

    def __init__(self):
        self.items: list[str] = []

    def add(self, path: Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        self.items.append(f"{where}: {message}")


def _read_records(path: Path, num_fields: tuple[int, ...], problems: _Problems):
    """Yield ``(line_number, fields)`` of a metadata CSV; malformed lines are reported and skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(path, None, "file is missing")
        return
    except (OSError, UnicodeDecodeError) as error:
        problems.add(path, None, f"cannot be read ({error})")
        return
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        fields = line.rstrip("\r").split(",")
        if len(fields) not in num_fields:
            expected = " or ".join(str(n) for n in num_fields)
            problems.add(path, number, f"expected {expected} comma-separated fields, got {len(fields)}: {line!r}")
            continue
        if not fields[0]:
            problems.add(path, number, "empty image id")
            continue
        yield number, fields


def _parse_int(value: str, path: Path, number: int, what: str, problems: _Problems) -> int | None:
    try:
        return int(value)
    except ValueError:
        problems.add(path, number, f"{what} is not an integer: {value!r}")
        return None


def parse_split(folder: str | os.PathLike) -> tuple[SplitMetadata, list[str]]:
    """Parse a split folder; return the metadata (valid records only) and every problem found."""
    folder = Path(folder)
    problems = _Problems()
    if not folder.is_dir():
        problems.add(folder, None, "metadata folder does not exist")
        return SplitMetadata(folder, (), {}), problems.items

    path = folder / IMAGE_IDS
    image_ids: list[str] = []
    seen: dict[str, int] = {}
    for number, (image_id,) in _read_records(path, (1,), problems):
        if image_id in seen:
            problems.add(path, number, f"duplicate image id {image_id!r} (first on line {seen[image_id]})")
            continue
        seen[image_id] = number
        image_ids.append(image_id)
    known = set(image_ids)

    def check_id(path: Path, number: int, image_id: str, table: dict) -> bool:
        if image_id not in known:
            problems.add(path, number, f"unknown image id {image_id!r} (not in {IMAGE_IDS})")
            return False
        if image_id in table:
            problems.add(path, number, f"duplicate record for image id {image_id!r}")
            return False
        return True

    path = folder / CLASS_LABELS
    labels: dict[str, int] = {}
    for number, (image_id, label) in _read_records(path, (2,), problems):
        value = _parse_int(label, path, number, "class label", problems)
        if value is None or not check_id(path, number, image_id, labels):
            continue
        if value < 0:
            problems.add(path, number, f"negative class label {value}")
            continue
        labels[image_id] = value
    if path.is_file():
        for image_id in image_ids:
            if image_id not in labels:
                problems.add(path, None, f"no class label for image id {image_id!r}")

    path = folder / IMAGE_SIZES
    sizes: dict[str, tuple[int, int]] = {}
    for number, (image_id, width, height) in _read_records(path, (3,), problems):
        w = _parse_int(width, path, number, "width", problems)
        h = _parse_int(height, path, number, "height", problems)
        if w is None or h is None or not check_id(path, number, image_id, sizes):
            continue
        if w <= 0 or h <= 0:
            problems.add(path, number, f"image size must be positive, got {w}x{h}")
            continue
        sizes[image_id] = (w, h)

    boxes, masks = _parse_localization(folder / LOCALIZATION, known, sizes, problems)
    annotated = boxes or masks
    if annotated:
        for image_id in image_ids:
            if image_id not in annotated:
                problems.add(folder / LOCALIZATION, None, f"no localization record for image id {image_id!r}")
    metadata = SplitMetadata(
        folder=folder,
        image_ids=tuple(image_ids),
        class_labels=labels,
        image_sizes=sizes,
        boxes={k: tuple(v) for k, v in boxes.items()},
        masks=masks,
    )
    return metadata, problems.items


def _parse_localization(path: Path, known: set[str], sizes: dict, problems: _Problems):
    boxes: dict[str, list[Box]] = {}
    mask_paths: dict[str, list[str]] = {}
    ignore_paths: dict[str, str] = {}
    kind = None
    for number, fields in _read_records(path, (3, 5), problems):
        line_kind = "boxes" if len(fields) == 5 else "masks"
        if kind is None:
            kind = line_kind
        elif kind != line_kind:
            problems.add(path, number, f"mixes box and mask records (earlier lines hold {kind})")
            continue
        image_id = fields[0]
        if image_id not in known:
            problems.add(path, number, f"unknown image id {image_id!r} (not in {IMAGE_IDS})")
            continue
        if kind == "boxes":
            coords = [_parse_int(v, path, number, name, problems) for v, name in zip(fields[1:], ("x0", "y0", "x1", "y1"))]
            if None in coords:
                continue
            x0, y0, x1, y1 = coords
            if x0 < 0 or y0 < 0 or x1 < x0 or y1 < y0:
                problems.add(path, number, f"box {tuple(coords)} of {image_id!r} is negative or inverted")
                continue
            if image_id not in sizes:
                problems.add(path, number, f"box of {image_id!r} but no size for it in {IMAGE_SIZES}")
                continue
            width, height = sizes[image_id]
            if x1 > width - 1 or y1 > height - 1:
                problems.add(path, number, f"box {tuple(coords)} of {image_id!r} lies outside its {width}x{height} image")
                continue
            boxes.setdefault(image_id, []).append((x0, y0, x1, y1))
        else:
            _, mask_path, ignore_path = fields
            if not mask_path:
                problems.add(path, number, f"empty mask path for {image_id!r}")
                continue
            if image_id not in mask_paths:
                if not ignore_path:
                    problems.add(path, number, f"empty ignore-mask path on the first line of {image_id!r} "
                                               "(name an all-zero PNG if the image has no ignore region)")
                    continue
                mask_paths[image_id] = []
                ignore_paths[image_id] = ignore_path
            elif ignore_path:
                problems.add(path, number, f"ignore-mask path on a later line of {image_id!r}; only the first line names it")
                continue
            mask_paths[image_id].append(mask_path)
    masks = {k: MaskAnnotation(tuple(v), ignore_paths[k]) for k, v in mask_paths.items()}
    return boxes, masks


def read_split(folder: str | os.PathLike) -> SplitMetadata:
    """Read and validate a split folder; raise :class:`MetadataError` naming the first problem."""
    metadata, problems = parse_split(folder)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise MetadataError(problems[0] + more)
    return metadata


def _write_lines(path: Path, lines: list[str]) -> None:
    """Write lines joined by newlines, with no final newline, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def write_split(folder: str | os.PathLike, metadata: SplitMetadata) -> None:
    """Write ``metadata`` as the four files of a split folder (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = metadata.image_ids
    _write_lines(folder / IMAGE_IDS, list(ids))
    _write_lines(folder / CLASS_LABELS, [f"{i},{metadata.class_labels[i]}" for i in ids])
    _write_lines(folder / IMAGE_SIZES, [f"{i},{w},{h}" for i in ids if i in metadata.image_sizes
                                        for w, h in [metadata.image_sizes[i]]])
    localization = []
    for image_id in ids:
        for box in metadata.boxes.get(image_id, ()):
            localization.append(",".join([image_id, *map(str, box)]))
        if image_id in metadata.masks:
            annotation = metadata.masks[image_id]
            for k, mask_path in enumerate(annotation.mask_paths):
                localization.append(f"{image_id},{mask_path},{annotation.ignore_path if k == 0 else ''}")
    _write_lines(folder / LOCALIZATION, localization)
