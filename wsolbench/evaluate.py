"""Score heatmaps produced by any codebase against a split in wsolevaluation's layout.

:func:`evaluate_split` reads the split's metadata, scores every ``<image_id>.npy`` map (in worker processes
if asked: the statistics are sums, so the result does not depend on how images are divided), and returns
:class:`~wsolbench.metrics.boxacc.BoxAccuracyResult` for box splits or
:class:`~wsolbench.metrics.pxap.PxAPResult` for mask splits, plus Top-k classification when class scores
are given, as an :class:`~wsolbench.metrics.scores.Evaluation`. :func:`report_table` formats it for people;
the JSON score dict is :func:`wsolbench.metrics.scores.report_json`, the schema the training engine reports
too (``Evaluation`` and ``report_json`` are importable from here as well).
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tabulate import tabulate
from tqdm import tqdm

from wsolbench.data.metadata import SplitMetadata, read_split
from wsolbench.errors import WsolbenchError
from wsolbench.metrics import functional as F
from wsolbench.metrics.boxacc import BoxAccuracy
from wsolbench.metrics.pxap import PxAP
from wsolbench.metrics.scores import Evaluation, PxAPResult, report_json
from wsolbench.scoremaps import ScoringJob, score_job, single_threaded_worker

__all__ = ["Evaluation", "evaluate_split", "load_class_scores", "report_json", "report_table"]


def load_class_scores(path: str | Path, metadata: SplitMetadata) -> np.ndarray:
    """Per-image class scores, ordered as ``metadata.image_ids``: an (N, C) float64 array.

    Accepted files: ``.npz`` with arrays ``image_ids`` (N strings) and ``scores`` (N x C); or CSV lines
    ``<image_id>,<score_0>,...,<score_C-1>`` (no header). Every image of the split needs exactly one row.
    """
    path = Path(path)
    if not path.is_file():
        raise WsolbenchError(f"{path}: class-score file does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                ids, scores = [str(i) for i in archive["image_ids"]], np.asarray(archive["scores"], dtype=np.float64)
        except (KeyError, ValueError, OSError) as error:
            raise WsolbenchError(f"{path}: expected arrays 'image_ids' and 'scores' ({error})") from None
        if scores.ndim != 2 or len(ids) != len(scores):
            raise WsolbenchError(f"{path}: 'scores' must be N x C with one row per image id, got {scores.shape}")
        rows = {}
        for number, (image_id, row) in enumerate(zip(ids, scores)):
            if image_id in rows:
                raise WsolbenchError(f"{path}: duplicate image id {image_id!r} (entry {number})")
            rows[image_id] = row
    else:
        rows = _read_score_csv(path)
    unknown = [i for i in rows if i not in metadata.class_labels]
    if unknown:
        raise WsolbenchError(f"{path}: unknown image id {unknown[0]!r} (not in {metadata.folder})")
    missing = [i for i in metadata.image_ids if i not in rows]
    if missing:
        raise WsolbenchError(f"{path}: no class scores for image id {missing[0]!r} ({len(missing)} images missing)")
    widths = {len(r) for r in rows.values()}
    if len(widths) != 1:
        raise WsolbenchError(f"{path}: rows have different numbers of classes {sorted(widths)}")
    scores = np.stack([rows[i] for i in metadata.image_ids])
    if not np.isfinite(scores).all():
        bad = metadata.image_ids[int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])]
        raise WsolbenchError(f"{path}: class scores of image id {bad!r} hold NaN or Inf")
    return scores


def _read_score_csv(path: Path) -> dict[str, np.ndarray]:
    rows = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        image_id, *values = line.split(",")
        try:
            row = np.array([float(v) for v in values], dtype=np.float64)
        except ValueError:
            raise WsolbenchError(f"{path}:{number}: class scores must be numbers: {line[:80]!r}") from None
        if not len(row):
            raise WsolbenchError(f"{path}:{number}: no class scores for {image_id!r}")
        if image_id in rows:
            raise WsolbenchError(f"{path}:{number}: duplicate image id {image_id!r}")
        rows[image_id] = row
    return rows


def _chunks(count: int, workers: int) -> list[range]:
    size = max(1, min(64, math.ceil(count / (4 * workers))))
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def _run_jobs(jobs: list[ScoringJob], workers: int, progress: bool):
    """Yield ``(job, outcome)`` as jobs finish, in this process or in ``workers`` spawned processes."""
    bar = tqdm(total=sum(len(j.image_ids) for j in jobs), unit="map", disable=None if progress else True,
               desc="scoring")
    with bar:
        if workers <= 1:
            for job in jobs:
                yield job, score_job(job)
                bar.update(len(job.image_ids))
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=single_threaded_worker) as pool:
            for job, outcome in zip(jobs, pool.map(score_job, jobs)):
                yield job, outcome
                bar.update(len(job.image_ids))


def evaluate_split(metadata_dir: str | Path, scoremap_dir: str | Path, *, mask_root: str | Path | None = None,
                   class_scores_file: str | Path | None = None, cam_curve_interval: float = 0.001,
                   iou_thresholds=(30, 50, 70), loc_threshold: float | None = None, loc_contours: str = "all",
                   workers: int = 1, progress: bool = True) -> Evaluation:
    """Score every map of a split; see the module docstring."""
    metadata = read_split(metadata_dir)
    if not metadata.image_ids:
        raise WsolbenchError(f"{metadata.folder}: the split lists no image")
    if metadata.annotation == "none":
        raise WsolbenchError(f"{metadata.folder}: the split has no localization labels to evaluate against")
    if not Path(scoremap_dir).is_dir():
        raise WsolbenchError(f"{scoremap_dir}: score-map folder does not exist")
    scores = None if class_scores_file is None else load_class_scores(class_scores_file, metadata)
    labels = np.array([metadata.class_labels[i] for i in metadata.image_ids])
    ids = metadata.image_ids

    if metadata.annotation == "masks":
        if mask_root is None:
            raise WsolbenchError(f"{metadata.folder}: a mask split needs --mask-root (the folder mask paths are relative to)")
        metric = PxAP(cam_curve_interval=cam_curve_interval)
        jobs = [ScoringJob(str(scoremap_dir), ids[c.start:c.stop], masks=tuple(metadata.masks[i] for i in ids[c.start:c.stop]),
                           mask_root=str(mask_root), edges=metric.edges) for c in _chunks(len(ids), workers)]
    else:
        metric = BoxAccuracy(cam_curve_interval=cam_curve_interval, iou_thresholds=iou_thresholds,
                             loc_threshold=loc_threshold, loc_contours=loc_contours)
        gt = [np.array([F.resize_box(b, metadata.image_sizes[i]) for b in metadata.boxes[i]]) for i in ids]
        jobs = [ScoringJob(str(scoremap_dir), ids[c.start:c.stop], gt_boxes=tuple(gt[c.start:c.stop]),
                           columns=metric.columns, iou_thresholds=metric.counted_ious,
                           labels=labels[c.start:c.stop], class_scores=None if scores is None else scores[c.start:c.stop])
                for c in _chunks(len(ids), workers)]

    resized = []
    for _, (statistics, job_resized) in _run_jobs(jobs, workers, progress):
        metric.add_statistics(statistics)
        resized.extend(job_resized)
    try:
        result = metric.compute()
    except ValueError as error:
        raise WsolbenchError(f"{metadata.folder}: {error}") from None
    evaluation = Evaluation(Path(metadata_dir), cam_curve_interval, result, resized=resized)
    if scores is not None:
        evaluation.top1_cls, evaluation.top5_cls = (int(c) * 100.0 / len(ids) for c in F.topk_correct_counts(scores, labels))
    return evaluation


def report_table(evaluation: Evaluation) -> str:
    """A readable table of the headline figures."""
    result = evaluation.result
    rows = []
    if isinstance(result, PxAPResult):
        rows.append(("PxAP", f"{result.pxap:.2f}", ""))
    else:
        per_iou = ", ".join(f"@{d}: {v:.2f} (tau {result.best_threshold[d]:g})"
                            for d, v in result.maxboxacc_v2_per_iou.items())
        rows.append(("MaxBoxAccV2", f"{result.maxboxacc_v2:.2f}", per_iou))
        rows.append(("MaxBoxAcc (V1, IoU 50)", f"{result.maxboxacc:.2f}",
                     f"tau {result.best_threshold_v1[50]:g}, largest contour"))
        names = {"gt_known": "GT-known Loc", "top1": "Top-1 Loc", "top5": "Top-5 Loc"}
        for kind, loc in result.loc.items():
            detail = f"best tau {loc.best_threshold:g}, {result.loc_contours} contours, IoU 50"
            if loc.fixed is not None:
                detail += f"; {loc.fixed:.2f} at tau {result.loc_threshold:g}"
            rows.append((names[kind], f"{loc.best:.2f}", detail))
    if evaluation.top1_cls is not None:
        rows.append(("Top-1 Cls", f"{evaluation.top1_cls:.2f}", ""))
        rows.append(("Top-5 Cls", f"{evaluation.top5_cls:.2f}", ""))
    header = f"{evaluation.metadata_dir}: {result.num_images} images, threshold step {evaluation.cam_curve_interval:g}"
    return header + "\n" + tabulate(rows, headers=("metric", "%", "details"), tablefmt="github")
