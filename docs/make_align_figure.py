"""CAM, norm map 𝓕 and similarity map 𝓢 of finished cam and align runs (Kim et al., CVPR 2022, Fig. A3 and
Table 5): scores each map of each run's selected checkpoint on the test split with the harness's own
evaluation, and draws the three maps of both methods on a few test images.

    python docs/make_align_figure.py runs/synthetic-cam-resnet18-seed0 runs/synthetic-align-resnet18-seed0 \
        [--json scores.json] [--out docs/images/align_maps_synthetic.png]

The test split is only reported here, never used to choose anything. Maps: CAM as the harness scores it;
𝓕 the per-location feature norm; 𝓢 the cosine similarity with the ground-truth class's weight.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from wsolbench.data.datasets import open_dataset, resolve_spec
from wsolbench.data.pipeline import make_loader
from wsolbench.engine.distributed import Processes
from wsolbench.engine.evaluation import evaluate_model
from wsolbench.method import Method
from wsolbench.metrics.functional import normalize_scoremap
from wsolbench.plugins import registry
from wsolbench.protocol import resolve_run
from wsolbench.results import read_record
from wsolbench_align import predict_map

MAPS = ("cam", "norm", "sim")


class _MapOf(Method):
    """Reads one of the three maps from any run's model (a CamBackbone, or align's network around one)."""

    name = "map_of"

    def __init__(self, kind: str, num_classes: int):
        super().__init__(num_classes=num_classes)
        self.kind = kind

    def predict(self, model, images, labels):
        return predict_map(getattr(model, "backbone", model), images, labels, self.kind)


def _load(run: Path):
    record = read_record(run / "record.json")
    config = resolve_run(record["method"], record["dataset"], record["backbone"], record["overrides"])
    method_class = registry("method").get(config.method)
    spec = resolve_spec(config.dataset)
    method = method_class(method_class.make_hparams(config.hparams), backbone=config.backbone,
                          num_classes=spec.num_classes, pretrained=False, large_feature_map=config.large_feature_map,
                          classifier_ratio=config.classifier_ratio)
    model = method.build_model()
    name = "best.pt" if record["selected"]["criterion"] != "last" else "last.pt"
    model.load_state_dict(torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=False)["model"])
    return record, config, spec, model.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="write the scores of every map of every run here")
    parser.add_argument("--out", type=Path, help="draw the maps of the first two runs here")
    parser.add_argument("--images", type=int, default=5)
    args = parser.parse_args()
    processes = Processes(0, 1, torch.device("cpu"))
    scores, drawn = {}, []
    for run in args.runs:
        record, config, spec, model = _load(run)
        test = open_dataset(spec, None, config.test_split, image_size=config.image_size)
        loader = make_loader(test, 64, shuffle=False)
        scores[str(run)] = {}
        for kind in MAPS:
            result = evaluate_model(_MapOf(kind, spec.num_classes), model, loader, metadata_dir=test.metadata.folder,
                                    annotation=spec.annotation, cam_curve_interval=config.cam_curve_interval,
                                    iou_thresholds=config.iou_thresholds, processes=processes)
            scores[str(run)][kind] = {k: result[k] for k in ("maxboxacc_v2", "gt_known_loc") if k in result}
            print(f"{run}  {kind:4s}  MaxBoxAccV2 {result.get('maxboxacc_v2', float('nan')):.2f}")
        drawn.append((record["method"], model, test, spec))
    if args.json:
        args.json.write_text(json.dumps(scores, indent=2) + "\n")
    if args.out:
        _draw(drawn[:2], args.images, args.out)


def _draw(runs, count: int, out: Path, size: int = 128) -> None:
    """A grid: one row per test image, the image, then CAM, F and S of each run, heat over the image."""
    test = runs[0][2]
    indices = [int(i) for i in np.linspace(0, len(test) - 1, count)]
    columns = 1 + len(MAPS) * len(runs)
    header = 16
    sheet = Image.new("RGB", (columns * size, header + count * size), "white")
    pen = ImageDraw.Draw(sheet)
    titles = ["image"] + [f"{method} {label}" for method, *_ in runs for label in ("CAM", "F", "S")]
    for col, title in enumerate(titles):
        pen.text((col * size + 4, 2), title, fill="black")
    for row, index in enumerate(indices):
        item = test[index]
        image = np.asarray(test.load_image(index).convert("RGB").resize((size, size)))
        sheet.paste(Image.fromarray(image), (0, header + row * size))
        for col, (_, model, _, spec) in enumerate(runs):
            for k, kind in enumerate(MAPS):
                with torch.no_grad():
                    maps = _MapOf(kind, spec.num_classes).predict(model, item["image"][None],
                                                                  torch.tensor([item["label"]])).maps
                heat = normalize_scoremap(maps[0].double().numpy())  # bicubic to 224, min-max, as scored
                heat = cv2.resize((heat * 255).astype(np.uint8), (size, size))
                colored = cv2.applyColorMap(heat, cv2.COLORMAP_JET)[:, :, ::-1]
                blend = (0.5 * image + 0.5 * colored).astype(np.uint8)
                sheet.paste(Image.fromarray(blend), ((1 + 3 * col + k) * size, header + row * size))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
