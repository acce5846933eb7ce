"""Resolve a report's inputs, score them, draw the figures and write the files.

Two sources of maps:

* a run folder (:func:`inputs_from_run`) whose record says where ``wsolbench run --save-scoremaps`` kept
  the test maps and class scores; the test split's metadata folder is the record's
  (``scores.test.metadata``), else the dataset's default root (the built-in synthetic datasets); images
  (and masks) are read from the dataset folder of the same root, ``<root>/dataset/<FOLDER>``;
* foreign heatmaps (:func:`inputs_from_scoremaps`): a folder of ``<image_id>.npy`` maps, a split's metadata
  folder and the folder image ids are relative to, as ``wsolbench evaluate`` takes them.

:func:`make_report` checks everything it needs (metadata, the images it draws, every map, masks, class
scores) before it draws, so bad input is one :class:`~wsolbench.errors.WsolbenchError` line naming the
file and nothing is written; then it writes each file to a temporary name and renames it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from wsolbench.atomic import write_bytes
from wsolbench.data.metadata import SplitMetadata, read_split
from wsolbench.errors import WsolbenchError
from wsolbench.metrics import functional as F
from wsolbench.results import read_record
from wsolbench.scoremaps import load_pixel_labels, load_scoremap

EXAMPLES, CURVES, PR_CURVE, PAGE = "examples.png", "threshold_curves.png", "pr_curve.png", "report.html"
#: test scores that re-scoring a run's kept maps must reproduce (the record's values)
CHECKED_SCORES = ("maxboxacc_v2", "maxboxacc", "gt_known_loc", "top1_loc", "top1_cls", "pxap")


@dataclass(frozen=True)
class ReportInputs:
    """What a report is drawn from; ``record`` and ``run_dir`` are set for a run folder."""

    metadata_dir: Path
    scoremap_dir: Path
    image_dir: Path
    out_dir: Path
    mask_root: Path | None = None
    class_scores: Path | None = None
    cam_curve_interval: float = 0.001
    iou_thresholds: tuple[int, ...] = (30, 50, 70)
    record: dict | None = None
    run_dir: Path | None = None
    #: the method's extra maps a run kept (``scoremaps.extra``: name -> folder), drawn beside the main map
    extra_maps: tuple[tuple[str, Path], ...] = ()


def _existing_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise WsolbenchError(f"{path}: {what} {'is not a folder' if path.exists() else 'does not exist'}")
    return path


def _layout_data_dir(metadata_dir: Path) -> Path | None:
    """``<root>/dataset/<FOLDER>`` for a split folder ``<root>/metadata/<FOLDER>/<split>``, else None."""
    metadata_dir = Path(metadata_dir)
    if len(metadata_dir.parts) >= 4 and metadata_dir.parent.parent.name == "metadata":
        return metadata_dir.parents[2] / "dataset" / metadata_dir.parent.name
    return None


def _default_root_split(record: dict, problem: str) -> tuple[Path, Path]:
    """The test split's metadata folder and data folder under the dataset's default root; ``problem`` says
    why they are needed, should there be no default root."""
    from wsolbench.data.datasets import default_root, resolve_spec

    try:
        spec = resolve_spec(record["dataset"])
        root = default_root(spec)
    except WsolbenchError as error:
        raise WsolbenchError(f"{problem} and {error}") from None
    return spec.metadata_dir(root, record["config"].get("test_split", "test")), spec.data_dir(root)


def inputs_from_run(run_dir: str | os.PathLike, *, out: str | os.PathLike | None = None,
                    images: str | os.PathLike | None = None, metadata: str | os.PathLike | None = None,
                    mask_root: str | os.PathLike | None = None) -> ReportInputs:
    """The inputs of a run folder's report (``images``, ``metadata``, ``mask_root`` override the record's)."""
    run_dir = _existing_dir(Path(run_dir), "run folder")
    record = read_record(run_dir / "record.json")
    kept = record.get("scoremaps")
    if not isinstance(kept, dict) or not kept.get("folder"):
        raise WsolbenchError(f"{run_dir / 'record.json'}: the run kept no score maps; rerun it with --save-scoremaps "
                             "(or pass its maps with --scoremaps DIR --metadata SPLIT --images ROOT)")
    scoremap_dir = run_dir / kept["folder"]
    if not scoremap_dir.is_dir():
        raise WsolbenchError(f"{scoremap_dir}: the run's score-map folder is missing; rerun it with --save-scoremaps")
    class_scores = None
    if kept.get("class_scores"):
        class_scores = run_dir / kept["class_scores"]
        if not class_scores.is_file():
            raise WsolbenchError(f"{class_scores}: the run's class-score file is missing")
    config = record["config"]
    recorded = record["scores"]["test"].get("metadata")
    recorded = Path(recorded) if isinstance(recorded, str) and recorded else run_dir / "record.json"
    data_dir = None
    if metadata is not None:
        metadata_dir = Path(metadata)
    elif recorded.is_dir():
        metadata_dir = recorded
    else:
        metadata_dir, data_dir = _default_root_split(
            record, f"{recorded}: the run's test metadata folder does not exist here; give --metadata and --images,")
    if images is not None:
        image_dir = Path(images)
    else:
        image_dir = _layout_data_dir(metadata_dir) or data_dir or _default_root_split(
            record, f"{metadata_dir}: not a <root>/metadata/<FOLDER>/<split> folder; give --images,")[1]
    return ReportInputs(
        metadata_dir=metadata_dir, scoremap_dir=scoremap_dir, image_dir=image_dir,
        out_dir=Path(out) if out is not None else run_dir / "report",
        mask_root=Path(mask_root) if mask_root is not None else image_dir, class_scores=class_scores,
        cam_curve_interval=float(config.get("cam_curve_interval", 0.001)),
        iou_thresholds=tuple(int(d) for d in config.get("iou_thresholds", (30, 50, 70))),
        record=record, run_dir=run_dir,
        extra_maps=tuple((name, run_dir / folder) for name, folder in (kept.get("extra") or {}).items()))


def inputs_from_scoremaps(scoremaps: str | os.PathLike, metadata: str | os.PathLike, images: str | os.PathLike, *,
                          out: str | os.PathLike | None = None, logits: str | os.PathLike | None = None,
                          mask_root: str | os.PathLike | None = None, cam_curve_interval: float = 0.001,
                          iou_thresholds=(30, 50, 70)) -> ReportInputs:
    """The inputs of foreign heatmaps; masks are read from ``images`` unless ``mask_root`` is given."""
    return ReportInputs(
        metadata_dir=Path(metadata), scoremap_dir=Path(scoremaps), image_dir=Path(images),
        out_dir=Path(out) if out is not None else Path("report"),
        mask_root=Path(mask_root) if mask_root is not None else Path(images),
        class_scores=None if logits is None else Path(logits), cam_curve_interval=cam_curve_interval,
        iou_thresholds=tuple(int(d) for d in iou_thresholds))


# --- reading -------------------------------------------------------------------------------------------------


def load_display_image(path: Path, image_id: str) -> np.ndarray:
    """The image as the metric sees it: RGB, resized to 224x224 (aspect not kept, as boxes and maps are)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except FileNotFoundError:
        raise WsolbenchError(f"{path}: image file of image id {image_id!r} is missing") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise WsolbenchError(f"{path}: cannot decode the image of image id {image_id!r} ({message})") from None
    size = (F.RESIZE_LENGTH, F.RESIZE_LENGTH)
    return np.asarray(image.resize(size, Image.BILINEAR) if image.size != size else image, dtype=np.uint8)


def _check_inputs(inputs: ReportInputs) -> SplitMetadata:
    metadata = read_split(_existing_dir(inputs.metadata_dir, "metadata folder"))
    _existing_dir(inputs.scoremap_dir, "score-map folder")
    for name, folder in inputs.extra_maps:
        _existing_dir(folder, f"folder of the extra map {name!r}")
    _existing_dir(inputs.image_dir, "image folder")
    if metadata.annotation == "masks":
        _existing_dir(inputs.mask_root, "mask folder")
    if inputs.out_dir.exists() and not inputs.out_dir.is_dir():
        raise WsolbenchError(f"{inputs.out_dir}: output path exists and is not a folder")
    return metadata


# --- figures and page ----------------------------------------------------------------------------------------


def _maps_name(inputs: ReportInputs) -> str:
    return inputs.scoremap_dir.name or str(inputs.scoremap_dir)


def _names(inputs: ReportInputs) -> tuple[str, list[tuple[str, str]]]:
    """The page title and its facts."""
    record = inputs.record
    if record is None:
        title = f"wsolbench report: score maps {_maps_name(inputs)} on {inputs.metadata_dir}"
        facts = [("Score maps", str(inputs.scoremap_dir)), ("Metadata", str(inputs.metadata_dir)),
                 ("Images", str(inputs.image_dir))]
        if inputs.class_scores is not None:
            facts.append(("Class scores", str(inputs.class_scores)))
        return title, facts
    title = f"wsolbench report: {record['method']} on {record['dataset']} ({record['backbone']})"
    selected = record["selected"]
    facts = [("Method", record["method"]), ("Dataset", record["dataset"]), ("Backbone", record["backbone"]),
             ("Run folder", str(inputs.run_dir)), ("Seed", "none" if record["seed"] is None else str(record["seed"])),
             ("Selected checkpoint", f"epoch {selected['epoch']} ({selected['criterion']})"),
             ("Protocol", record["protocol"]["id"] + (" (off-protocol: --set overrides)" if record["off_protocol"] else "")),
             ("Test metadata", str(inputs.metadata_dir)), ("Images", str(inputs.image_dir))]
    provenance = record.get("provenance", {})
    if isinstance(provenance, dict):
        if provenance.get("date"):
            facts.append(("Recorded", str(provenance["date"])))
        if provenance.get("command"):
            facts.append(("Command", str(provenance["command"])))
    return title, facts


def _short_title(inputs: ReportInputs) -> str:
    record = inputs.record
    if record is None:
        return f"{_maps_name(inputs)} on {inputs.metadata_dir.parent.name}/{inputs.metadata_dir.name}"
    return f"{record['method']} \u00b7 {record['dataset']} \u00b7 {record['backbone']}"


def example_tiles(metadata: SplitMetadata, inputs: ReportInputs, images: dict[str, np.ndarray], scores: dict):
    """The example tiles of the first images (those in ``images``) and the threshold their boxes use."""
    from wsolbench.report.figures import ExampleTile, example_threshold

    masks = metadata.annotation == "masks"
    threshold = None if masks else example_threshold(scores)[1]
    tiles = []
    for image_id, image in images.items():
        scoremap, _ = load_scoremap(inputs.scoremap_dir, image_id)
        tile = ExampleTile(image_id=image_id, label=metadata.class_labels[image_id], image=image, scoremap=scoremap)
        if masks:
            labels = load_pixel_labels(inputs.mask_root, image_id, metadata.masks[image_id])
            tile.gt_mask, tile.ignore_mask = labels == 1, labels == 255
        else:
            size = metadata.image_sizes[image_id]
            tile.gt_boxes = np.array([F.resize_box(box, size) for box in metadata.boxes[image_id]])
            tile.predicted = F.contour_boxes(scoremap, threshold)
        tiles.append(tile)
    return tiles, threshold


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        write_bytes(path, data)
    except OSError as error:
        raise WsolbenchError(f"{path}: cannot write ({error})") from None


def rescoring_mismatches(record: dict, scores: dict) -> list[str]:
    """The headline test scores of ``record`` that the kept maps do not reproduce, as ``key: recorded -> now``."""
    recorded = record["scores"]["test"]
    return [f"{key}: {recorded[key]} -> {scores[key]}" for key in CHECKED_SCORES
            if key in recorded and key in scores and recorded[key] != scores[key]]


@dataclass
class Report:
    """What :func:`make_report` wrote: the files, the score dict (with curves) and the figures' data."""

    files: list[Path]
    scores: dict
    example_ids: tuple[str, ...]
    example_threshold: float | None
    tiles: list  #: the :class:`~wsolbench.report.figures.ExampleTile` drawn in examples.png
    resized: list[tuple[str, tuple[int, ...]]]


def make_report(inputs: ReportInputs, *, images_per_figure: int = 12, workers: int = 1, progress: bool = True,
                leaderboard_html: str = "") -> Report:
    """Score ``inputs``, draw the figures, render the page and write them to ``inputs.out_dir``."""
    from wsolbench.evaluate import evaluate_split, report_json
    from wsolbench.report.figures import (examples_figure, pr_curve_figure, threshold_curve_data,
                                          threshold_curves_figure)
    from wsolbench.report.page import ReportFigure, render_page

    metadata = _check_inputs(inputs)
    shown = metadata.image_ids[:images_per_figure]
    images = {i: load_display_image(inputs.image_dir / i, i) for i in shown}
    evaluation = evaluate_split(inputs.metadata_dir, inputs.scoremap_dir, mask_root=inputs.mask_root,
                                class_scores_file=inputs.class_scores, cam_curve_interval=inputs.cam_curve_interval,
                                iou_thresholds=inputs.iou_thresholds, workers=workers, progress=progress)
    scores = report_json(evaluation, curves=True)
    tiles, threshold = example_tiles(metadata, inputs, images, scores)
    name = _short_title(inputs)
    masks = metadata.annotation == "masks"

    figures = []
    if masks:
        caption = (f"The first {len(tiles)} test images in split order, resized to 224x224, with the score map "
                   f"overlaid (viridis, 0 to 1) and the ground-truth foreground outlined in green "
                   "(the ignore region dashed). PxAP needs no threshold, so no box is predicted.")
        title = f"{name}: test images, score map and ground-truth mask"
    else:
        caption = (f"The first {len(tiles)} test images in split order, resized to 224x224, with the score map "
                   f"overlaid (viridis, 0 to 1), the ground-truth boxes in green and, in red, the box of every "
                   f"contour of the map thresholded at \u03c4 = {threshold:.10g}: the best MaxBoxAccV2 threshold at "
                   f"IoU 50 (best_threshold[\"50\"], also GT-known Loc's best threshold with all contours). "
                   "Each title gives the best IoU of the red boxes against the ground truth; "
                   "an image is a hit at IoU 50 when it is at least 0.50.")
        title = f"{name}: predicted boxes at \u03c4 = {threshold:.4g} (best MaxBoxAccV2 threshold, IoU 50)"
    figures.append(ReportFigure(EXAMPLES, examples_figure(tiles, title), caption,
                                f"Grid of {len(tiles)} test images with score maps and boxes", tuple(shown)))
    if masks:
        figures.append(ReportFigure(
            PR_CURVE, pr_curve_figure(scores, f"{name}: PxAP precision-recall"),
            f"Pixel precision against recall over the whole test split ({scores['num_images']} images), from "
            f"the highest score threshold down, step {inputs.cam_curve_interval:g}; PxAP = {scores['pxap']:.2f}% "
            "is the area under this step curve.", "PxAP precision-recall curve"))
    else:
        data = threshold_curve_data(scores)
        best = "; ".join(f"IoU {iou}: {acc[b]:.2f}% at \u03c4 = {t[b]:g}" for iou, (t, acc, b) in data.items())
        figures.append(ReportFigure(
            CURVES, threshold_curves_figure(data, f"{name}: accuracy against CAM threshold"),
            f"Box accuracy over the test split ({scores['num_images']} images) against the CAM threshold "
            f"\u03c4 (step {inputs.cam_curve_interval:g}), every contour's box counted: the terms of MaxBoxAccV2 "
            f"= {scores['maxboxacc_v2']:.2f}%. Each curve's first maximum is marked: {best}.",
            "Accuracy against CAM threshold for each IoU threshold"))

    for extra_name, folder in inputs.extra_maps:
        extra_inputs = dataclasses.replace(inputs, scoremap_dir=folder, class_scores=None, extra_maps=())
        extra_scores = report_json(evaluate_split(
            inputs.metadata_dir, folder, mask_root=inputs.mask_root, cam_curve_interval=inputs.cam_curve_interval,
            iou_thresholds=inputs.iou_thresholds, workers=workers, progress=progress), curves=True)
        extra_tiles, extra_threshold = example_tiles(metadata, extra_inputs, images, extra_scores)
        metric = (f"PxAP {extra_scores['pxap']:.2f}%" if masks else
                  f"MaxBoxAccV2 {extra_scores['maxboxacc_v2']:.2f}%, boxes at \u03c4 = {extra_threshold:.10g}, its best "
                  "threshold at IoU 50")
        figures.append(ReportFigure(
            f"examples-{extra_name}.png",
            examples_figure(extra_tiles, f"{name}: the method's {extra_name} map"),
            f"The same images with the method's extra map {extra_name!r} (Method.extra_maps) instead of its "
            f"localization map, normalised the same way; on the whole test split: {metric}.",
            f"Grid of {len(extra_tiles)} test images with the {extra_name} map", tuple(shown)))

    page_title, facts = _names(inputs)
    facts.append(("Test images", f"{scores['num_images']} (threshold step {inputs.cam_curve_interval:g})"))
    html = render_page(title=page_title, facts=facts, scores=scores, figures=figures,
                       leaderboard_html=leaderboard_html)

    inputs.out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for figure in figures:
        _write_atomically(inputs.out_dir / figure.name, figure.png)
        files.append(inputs.out_dir / figure.name)
    _write_atomically(inputs.out_dir / PAGE, html.encode("utf-8"))
    files.append(inputs.out_dir / PAGE)
    return Report(files, scores, tuple(shown), threshold, tiles, evaluation.resized)
