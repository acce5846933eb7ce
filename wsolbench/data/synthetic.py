"""A synthetic WSOL benchmark whose classifier shortcut is known: a small discriminative part.

Every image shows one object on a textured, cluttered background (low-frequency coloured noise, pixel
noise, 3 to 6 distractor shapes behind the object). The object is a striped ellipse, the **body**, drawn
from one distribution for all classes (size, aspect ratio, angle, position, dull colour), carrying a
**part** that alone tells the class: a saturated patch whose hue (``label / classes`` of the colour wheel)
and shape (disc, square, diamond, cross; ``label % 4``) encode the label. The part lies inside the body,
off its centre, and covers a fraction drawn from :data:`PART_FRACTION` of the body's area, so a
classifier only needs the part, and a CAM that finds only the part gives a box far smaller than the
ground truth, which is the whole object.

Everything derives from the seed: image ``k`` of class ``c`` in split ``s`` uses
``numpy.random.default_rng([seed, s, c, k])``, so the same arguments give byte-identical files.
Datasets are written in wsolevaluation's layout (PNG images; ``boxes``: one inclusive box per image,
``masks``: OpenImages-style instance and ignore PNGs for val and test).

A dataset is written into a temporary folder and renamed into place; :data:`PARAMS_FILE`, written last,
lists every other file with its size, so :func:`dataset_problem` can tell a complete dataset from one
whose generation was killed or whose files were deleted or truncated since.

This module holds the generator: :class:`SynthParams`, :func:`render_sample`, :func:`generate` (to a folder)
and :func:`cached` (into the cache, generated again when found damaged). Which registered datasets are
generated into the cache when no data root is given is decided where the built-in specs live:
:func:`wsolbench.data.builtin.generated_root`.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from wsolbench.atomic import remove_stale_temporaries, temporary_path
from wsolbench.data.cache import cache_root, entry_lock
from wsolbench.data.metadata import MaskAnnotation, SplitMetadata, write_split
from wsolbench.data.spec import SPLITS
from wsolbench.errors import WsolbenchError

GENERATOR_VERSION = 1  #: bump when the images change, so cached copies are regenerated
FOLDERS = {"boxes": "SYNTHETIC", "masks": "SYNTHETIC_MASKS"}  #: variant -> dataset folder
PARAMS_FILE = "synthetic.json"  #: written last at the root: parameters, generator version, other files' sizes
PART_SHAPES = ("disc", "square", "diamond", "cross")
PART_FRACTION = (0.12, 0.18)  #: part area / body area, drawn uniformly per image
BODY_SEMI_MAJOR = (0.15, 0.33)  #: times the image size
BODY_ASPECT = (0.6, 0.95)  #: semi-minor / semi-major
MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class SynthParams:
    """Everything that determines a synthetic dataset; ``val`` is train-fullsup."""

    variant: str = "boxes"
    classes: int = 10
    train_per_class: int = 40
    val_per_class: int = 5
    test_per_class: int = 20
    image_size: int = 64
    seed: int = 0

    def __post_init__(self):
        if self.variant not in FOLDERS:
            raise WsolbenchError(f"unknown synthetic variant {self.variant!r}; expected one of {', '.join(FOLDERS)}")
        if self.classes < 2:
            raise WsolbenchError(f"a synthetic dataset needs at least 2 classes, got {self.classes}")
        for split in SPLITS:
            if self.per_class(split) < 1:
                raise WsolbenchError(f"{split}_per_class must be at least 1, got {self.per_class(split)}")
        if self.image_size < MIN_IMAGE_SIZE:
            raise WsolbenchError(f"synthetic image size must be at least {MIN_IMAGE_SIZE}, got {self.image_size}")

    @property
    def folder(self) -> str:
        return FOLDERS[self.variant]

    def per_class(self, split: str) -> int:
        return getattr(self, f"{split}_per_class")

    def identity(self) -> dict:
        """The parameters and the generator version, as :data:`PARAMS_FILE` states them."""
        return {**asdict(self), "generator": GENERATOR_VERSION}

    def digest(self) -> str:
        """Hash of the parameters and generator version: the dataset's name in the cache."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sample:
    """One rendered image with its ground truth; masks are ``(S, S)`` bool."""

    image: np.ndarray  # (S, S, 3) uint8 RGB
    label: int
    object_mask: np.ndarray  # body and part
    part_mask: np.ndarray
    box: tuple[int, int, int, int]  # inclusive bounding box of object_mask
    part_fraction: float  # requested part area / body area (pi a b)


def _hsv(rng: np.random.Generator, saturation: tuple, value: tuple, hue: float | None = None) -> np.ndarray:
    hue = rng.uniform() if hue is None else hue
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value)), dtype=np.float32)


def _local(xx, yy, cx, cy, angle):
    """Pixel-centre coordinates in a frame centred at ``(cx, cy)`` and rotated by ``angle``."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a ``(g, g, C)`` grid to ``(size, size, C)`` (pixel-centre aligned)."""
    g = grid.shape[0]
    pos = np.clip((np.arange(size) + 0.5) * g / size - 0.5, 0, g - 1)
    i0 = np.minimum(pos.astype(np.int64), g - 2)
    w = (pos - i0).astype(np.float32)
    rows = grid[i0] * (1 - w)[:, None, None] + grid[i0 + 1] * w[:, None, None]
    return rows[:, i0] * (1 - w)[None, :, None] + rows[:, i0 + 1] * w[None, :, None]


def _background(rng, size, xx, yy) -> np.ndarray:
    base = _hsv(rng, (0.1, 0.5), (0.3, 0.8))
    image = base + _upsample(rng.normal(0, 0.12, (5, 5, 3)).astype(np.float32), size)
    u, _ = _local(xx, yy, 0, 0, rng.uniform(0, np.pi))
    image += 0.06 * np.sin(2 * np.pi * u / (size * rng.uniform(0.05, 0.15)))[..., None]
    return image + rng.normal(0, 0.04, image.shape).astype(np.float32)


def _distractor_mask(rng, size, xx, yy) -> np.ndarray:
    kind = rng.integers(4)
    u, v = _local(xx, yy, rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0, np.pi))
    r = size * rng.uniform(0.05, 0.22)
    if kind == 0:  # rectangle
        return (np.abs(u) <= r) & (np.abs(v) <= r * rng.uniform(0.3, 1))
    if kind == 1:  # ellipse
        return (u / r) ** 2 + (v / (r * rng.uniform(0.3, 1))) ** 2 <= 1
    if kind == 2:  # line
        return (np.abs(u) <= 2 * r) & (np.abs(v) <= max(0.6, size / 80))
    rho = np.hypot(u, v)  # ring
    return (rho <= r) & (rho >= 0.6 * r)


def _part_shape(shape: str, area: float):
    """``(inside(dx, dy), circumradius)`` of a part of ``area`` square pixels centred at the origin."""
    if shape == "disc":
        r = np.sqrt(area / np.pi)
        return (lambda dx, dy: dx ** 2 + dy ** 2 <= r ** 2), r
    if shape == "square":
        h = np.sqrt(area) / 2
        return (lambda dx, dy: (np.abs(dx) <= h) & (np.abs(dy) <= h)), h * np.sqrt(2)
    if shape == "diamond":
        d = np.sqrt(area / 2)
        return (lambda dx, dy: np.abs(dx) + np.abs(dy) <= d), d
    # cross: two bars of length 2L and width 2L/3, area 20 L^2 / 9
    length = np.sqrt(9 * area / 20)
    h = length / 3
    return (lambda dx, dy: ((np.abs(dx) <= length) & (np.abs(dy) <= h)) |
            ((np.abs(dx) <= h) & (np.abs(dy) <= length))), np.hypot(length, h)


def _farthest_fit(a: float, b: float, radius: float, phi: float) -> float:
    """Largest ``d`` such that the disc of ``radius`` centred at ``d (cos phi, sin phi)`` lies inside the
    ellipse with semi-axes ``a``, ``b`` (bisection; needs ``radius < b``). The disc is tested through the
    vertices of a 64-gon inscribed in a 1% larger circle: the 64-gon encloses the disc, the ellipse is convex."""
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    ring_x, ring_y = 1.01 * radius * np.cos(theta), 1.01 * radius * np.sin(theta)

    def fits(d):
        return (((d * np.cos(phi) + ring_x) / a) ** 2 + ((d * np.sin(phi) + ring_y) / b) ** 2 <= 1).all()

    low, high = 0.0, a
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def render_sample(rng: np.random.Generator, label: int, classes: int, size: int) -> Sample:
    """Draw one image of class ``label`` (see the module docstring); uses ``rng`` and nothing else."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = _background(rng, size, xx, yy)
    for _ in range(rng.integers(3, 7)):
        image[_distractor_mask(rng, size, xx, yy)] = _hsv(rng, (0, 0.6), (0.2, 0.9))

    a = size * rng.uniform(*BODY_SEMI_MAJOR)
    b = a * rng.uniform(*BODY_ASPECT)
    angle = rng.uniform(0, np.pi)
    half_w = np.hypot(a * np.cos(angle), b * np.sin(angle))
    half_h = np.hypot(a * np.sin(angle), b * np.cos(angle))
    cx = rng.uniform(half_w + 1, size - 2 - half_w)
    cy = rng.uniform(half_h + 1, size - 2 - half_h)
    u, v = _local(xx, yy, cx, cy, angle)
    body = (u / a) ** 2 + (v / b) ** 2 <= 1
    stripes = 1 + 0.2 * np.sin(2 * np.pi * (u + v) / (a * rng.uniform(0.25, 0.5)))
    body_colour = _hsv(rng, (0.15, 0.45), (0.35, 0.7))
    image[body] = (body_colour * stripes[body][:, None] +
                   rng.normal(0, 0.03, (int(body.sum()), 3)).astype(np.float32))

    # The part sits off the body's centre, towards its rim: 70-100% of the farthest offset in a random
    # direction at which the part's circumscribed disc still fits inside the body.
    fraction = rng.uniform(*PART_FRACTION)
    inside, radius = _part_shape(PART_SHAPES[label % len(PART_SHAPES)], fraction * np.pi * a * b)
    phi = rng.uniform(0, 2 * np.pi)
    offset = _farthest_fit(a, b, radius, phi) * rng.uniform(0.7, 1.0)
    pu, pv = offset * np.cos(phi), offset * np.sin(phi)
    px = cx + pu * np.cos(angle) - pv * np.sin(angle)
    py = cy + pu * np.sin(angle) + pv * np.cos(angle)
    part = inside(xx - px, yy - py)
    part_colour = _hsv(rng, (0.85, 1.0), (0.85, 1.0), hue=label / classes)
    image[part] = part_colour + rng.normal(0, 0.02, (int(part.sum()), 3)).astype(np.float32)

    obj = body | part
    rows, cols = np.flatnonzero(obj.any(axis=1)), np.flatnonzero(obj.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))
    pixels = np.clip(np.floor(image * 255 + 0.5), 0, 255).astype(np.uint8)
    return Sample(pixels, label, obj, part, box, float(fraction))


def ignore_band(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels within ``width`` of the mask's boundary, on either side (bool)."""
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    m = mask.astype(np.uint8)
    return cv2.dilate(m, kernel) > cv2.erode(m, kernel)


def _save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _write_dataset(root: Path, params: SynthParams) -> None:
    data_dir = root / "dataset" / params.folder
    digits = len(str(params.classes - 1))
    for split_index, split in enumerate(SPLITS):
        ids, labels, sizes, boxes, masks = [], {}, {}, {}, {}
        for label in range(params.classes):
            for k in range(params.per_class(split)):
                rng = np.random.default_rng([params.seed, split_index, label, k])
                sample = render_sample(rng, label, params.classes, params.image_size)
                stem = f"{split}/c{label:0{digits}d}/{split}_{label:0{digits}d}_{k:04d}"
                image_id = f"{stem}.png"
                _save_png(data_dir / image_id, sample.image)
                ids.append(image_id)
                labels[image_id] = label
                if params.variant == "boxes":
                    sizes[image_id] = (params.image_size, params.image_size)
                    boxes[image_id] = (sample.box,)
                elif split != "train":
                    mask_path, ignore_path = f"masks/{stem}_m{label}.png", f"masks/{stem}_ignore.png"
                    ignore = ignore_band(sample.object_mask, max(1, params.image_size // 64))
                    ignore &= rng.uniform() < 0.5  # about half the images have an all-zero ignore mask
                    _save_png(data_dir / mask_path, sample.object_mask.astype(np.uint8) * 255)
                    _save_png(data_dir / ignore_path, ignore.astype(np.uint8) * 255)
                    masks[image_id] = MaskAnnotation((mask_path,), ignore_path)
        write_split(root / "metadata" / params.folder / split,
                    SplitMetadata(root / "metadata" / params.folder / split, tuple(ids), labels, sizes, boxes, masks))
    files = {path.relative_to(root).as_posix(): path.stat().st_size for path in sorted(root.rglob("*"))
             if path.is_file()}
    text = json.dumps({**params.identity(), "files": files}, indent=2, sort_keys=True)
    (root / PARAMS_FILE).write_text(text + "\n", encoding="utf-8")


def dataset_problem(root: str | os.PathLike, params: SynthParams) -> str | None:
    """Why ``root`` does not hold the complete dataset of ``params``, or None when it does: its
    :data:`PARAMS_FILE` must state these parameters and every file it lists must have the size it states
    (a file changed in place to one of the same size is not noticed)."""
    root = Path(root)
    try:
        record = json.loads((root / PARAMS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{PARAMS_FILE} is missing"
    except (OSError, ValueError) as error:
        return f"{PARAMS_FILE} cannot be read ({' '.join(str(error).split())})"
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or {key: record.get(key) for key in params.identity()} != params.identity():
        return f"{PARAMS_FILE} does not describe a complete dataset of these parameters"
    for name, size in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            return f"{PARAMS_FILE} lists {name!r}, a file outside the dataset"
        try:
            found = (root / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if found != size:
            return f"{name} has {found} bytes, not {size}"
    return None


def _build(out: Path, params: SynthParams) -> None:
    """Write the dataset into a temporary folder beside ``out``, then rename it to ``out``. An existing
    ``out`` (empty, or a damaged dataset) is first renamed to a temporary name and deleted afterwards: a
    killed process leaves only temporaries (:func:`wsolbench.atomic.remove_stale_temporaries` deletes
    them) and ``out`` complete or absent."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = temporary_path(out), temporary_path(out)
    try:
        tmp.mkdir()
        _write_dataset(tmp, params)
        if os.path.lexists(out):
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def generate(out: str | os.PathLike, params: SynthParams = SynthParams()) -> Path:
    """Generate the dataset at ``out``, which must not exist or be empty; return ``out``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WsolbenchError(f"{out} already exists and is not an empty folder; choose a new output folder")
    try:
        _build(out, params)
    except OSError as error:
        raise WsolbenchError(f"cannot write the synthetic dataset to {out}: {error}") from None
    return out


def cached(params: SynthParams = SynthParams()) -> Path:
    """The dataset's root in the cache (``<cache>/synthetic/<params hash>``), generated on first use and
    generated again, with one warning line on stderr, when :func:`dataset_problem` finds it damaged.

    Every use deletes the temporaries of killed generators in ``<cache>/synthetic`` (one listing of it).
    Processes that find the dataset absent or damaged take turns through
    :func:`~wsolbench.data.cache.entry_lock`: one generates it, the others, having waited, use it.
    """
    root = cache_root() / "synthetic" / params.digest()
    remove_stale_temporaries(root.parent, recursive=False)
    if dataset_problem(root, params) is None:
        return root
    with entry_lock(root):
        problem = dataset_problem(root, params)  # another process may have generated it meanwhile
        if problem is None:
            return root
        if os.path.lexists(root):
            print(f"wsolbench: warning: the cached synthetic dataset {root} is incomplete or damaged ({problem}); "
                  "generating it again", file=sys.stderr)
        try:
            _build(root, params)
        except OSError as error:
            raise WsolbenchError(f"cannot write the synthetic dataset to {root}: {error}") from None
    return root

