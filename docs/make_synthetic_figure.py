"""Draw docs/images/synthetic_samples.png: one synthetic test image per class with its ground truth.

Green: the ground-truth box (the whole object). Yellow: the box of the class-specific part alone, i.e.
what a CAM that fires only on the discriminative part would report. Run: python docs/make_synthetic_figure.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wsolbench.data.spec import SPLITS
from wsolbench.data.synthetic import SynthParams, render_sample

OUT = Path(__file__).parent / "images" / "synthetic_samples.png"
SIZE, ZOOM, COLUMNS, CAPTION = 128, 2, 5, 18


def part_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return cols[0], rows[0], cols[-1], rows[-1]


def scaled(box, pad=0):
    """The tile rectangle around the box's pixels, ``pad`` tile pixels outside them."""
    x0, y0, x1, y1 = box
    return x0 * ZOOM - pad, y0 * ZOOM - pad, (x1 + 1) * ZOOM - 1 + pad, (y1 + 1) * ZOOM - 1 + pad


def main() -> None:
    params = SynthParams(image_size=SIZE)
    tile = SIZE * ZOOM
    rows = -(-params.classes // COLUMNS)
    figure = Image.new("RGB", (COLUMNS * tile, rows * (tile + CAPTION)), "white")
    draw = ImageDraw.Draw(figure)
    for label in range(params.classes):
        # the first test image of each class, exactly as `wsolbench data synth --image-size 128` draws it
        rng = np.random.default_rng([params.seed, SPLITS.index("test"), label, 0])
        sample = render_sample(rng, label, params.classes, SIZE)
        image = Image.fromarray(sample.image).resize((tile, tile), Image.NEAREST)
        tile_draw = ImageDraw.Draw(image)
        tile_draw.rectangle(scaled(sample.box, pad=3), outline=(0, 255, 0), width=3)
        tile_draw.rectangle(scaled(part_box(sample.part_mask), pad=3), outline=(255, 255, 0), width=2)
        left, top = (label % COLUMNS) * tile, (label // COLUMNS) * (tile + CAPTION)
        figure.paste(image, (left, top + CAPTION))
        draw.text((left + 4, top + 3), f"class {label}: green GT box, yellow part", fill="black")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    figure.save(OUT, optimize=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
