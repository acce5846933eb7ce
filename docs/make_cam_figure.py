"""Draw docs/images/cam_synthetic.png: CAMs of a trained run on one synthetic test image per class.

Each tile: the test image with its CAM (after the harness's post-processing: bicubic resize to 224 and
min-max) as a heat overlay, the ground-truth box in green and the class-specific part's box in yellow.
Run: wsolbench run --method cam --dataset synthetic --out runs/cam-synthetic
     python docs/make_cam_figure.py runs/cam-synthetic
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from wsolbench.data.spec import SPLITS
from wsolbench.data.synthetic import SynthParams, render_sample
from wsolbench.data.transforms import eval_transform
from wsolbench.engine import checkpoint
from wsolbench.metrics.functional import normalize_scoremap
from wsolbench.plugins import registry

OUT = Path(__file__).parent / "images" / "cam_synthetic.png"
TILE, COLUMNS, CAPTION = 224, 5, 18


def part_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return cols[0], rows[0], cols[-1], rows[-1]


def to_tile(box, size):
    scale = TILE / size
    x0, y0, x1, y1 = box
    return x0 * scale, y0 * scale, (x1 + 1) * scale - 1, (y1 + 1) * scale - 1


def main(run_dir: Path) -> None:
    record = json.loads((run_dir / "record.json").read_text())
    config = record["config"]
    method_class = registry("method").get(config["method"])
    method = method_class(method_class.make_hparams(config["hparams"]), backbone=config["backbone"],
                          num_classes=SynthParams().classes, pretrained=False,
                          large_feature_map=config["large_feature_map"])
    model = method.build_model()
    model.load_state_dict(checkpoint.load(run_dir / "checkpoints" / checkpoint.LAST)["model"])
    model.eval()
    params, size = SynthParams(), config["image_size"]
    rows = -(-params.classes // COLUMNS)
    figure = Image.new("RGB", (COLUMNS * TILE, rows * (TILE + CAPTION)), "white")
    draw = ImageDraw.Draw(figure)
    for label in range(params.classes):
        rng = np.random.default_rng([params.seed, SPLITS.index("test"), label, 0])  # test image 0 of the class
        sample = render_sample(rng, label, params.classes, params.image_size)
        image = Image.fromarray(sample.image)
        with torch.no_grad():
            prediction = method.predict(model, eval_transform(size)(image)[None], torch.tensor([label]))
        cam = normalize_scoremap(prediction.maps[0].numpy())
        heat = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        base = np.asarray(image.resize((TILE, TILE), Image.BILINEAR))
        tile = Image.fromarray((0.5 * base + 0.5 * heat).astype(np.uint8))
        tile_draw = ImageDraw.Draw(tile)
        tile_draw.rectangle(to_tile(sample.box, params.image_size), outline=(0, 255, 0), width=3)
        tile_draw.rectangle(to_tile(part_box(sample.part_mask), params.image_size), outline=(255, 255, 0), width=2)
        left, top = (label % COLUMNS) * TILE, (label // COLUMNS) * (TILE + CAPTION)
        figure.paste(tile, (left, top + CAPTION))
        predicted = int(prediction.logits.argmax())
        draw.text((left + 4, top + 3), f"class {label} (predicted {predicted}): green GT, yellow part", fill="black")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    figure.save(OUT, optimize=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
