"""Evaluate a model on a split: the harness's fixed part of every method's evaluation.

For each batch the method gives class scores and the raw maps of the ground-truth classes
(:meth:`wsolbench.method.Method.predict`), always in full precision (AMP is for training only: the
reference evaluates in fp32, and half-precision maps change thresholded boxes). The harness post-processes
every map identically (float64, bicubic resize to 224, min-max normalisation:
:func:`~wsolbench.metrics.functional.normalize_scoremap`) and feeds the stateful metrics, which sum their
statistics across processes. The scores are the dictionary ``wsolbench evaluate --json`` prints, plus
``criteria``: the mean over the split of each label-free criterion the method offers
(:meth:`~wsolbench.method.Method.selection_criteria`), computed from the same predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from wsolbench.atomic import atomic_path
from wsolbench.engine.distributed import Processes, sum_across
from wsolbench.engine.scoring_pool import ScoringPool
from wsolbench.errors import MethodContractError, WsolbenchError
from wsolbench.metrics.scores import Evaluation, report_json
from wsolbench.method import METHOD_NAME, Method
from wsolbench.metrics import functional as F
from wsolbench.plugins import registry
from wsolbench.protocol import SELECTION_METRICS
from wsolbench.scoremaps import scoremap_path


class ScoremapWriter:
    """Keeps what an evaluation scored, in wsolevaluation's layout, for ``wsolbench evaluate`` and ``report``.

    Each image's normalised 224x224 map (float64, so that re-scoring is exact) goes to
    ``<folder>/<image_id>.npy`` as it is scored (written to a temporary name, then renamed); :meth:`finish`
    writes the class scores of the whole split (gathered from every process) to ``class_scores_path``
    (``image_ids``, ``scores``: the ``--logits`` format of ``wsolbench evaluate``), or none when the method
    gives no class scores.
    """

    def __init__(self, folder: Path, class_scores_path: Path, processes: Processes):
        self.folder, self.class_scores_path, self.processes = Path(folder), Path(class_scores_path), processes
        self.ids: list[str] = []
        self.scores: list[np.ndarray] = []
        #: extra map name -> its folder, ``<folder>-<name>`` (:meth:`wsolbench.method.Method.extra_maps`)
        self.extra_folders: dict[str, Path] = {}

    def add(self, image_ids, maps, logits, extra: dict | None = None) -> None:
        """Keep a batch: its normalised maps, class scores (or None) and ``{name: normalised maps}``."""
        self._save(self.folder, image_ids, maps)
        for name, extra_maps in (extra or {}).items():
            folder = self.extra_folders.setdefault(name, self.folder.with_name(f"{self.folder.name}-{name}"))
            self._save(folder, image_ids, extra_maps)
        if logits is not None:
            self.ids += list(image_ids)
            self.scores += list(logits)

    @staticmethod
    def _save(folder: Path, image_ids, maps) -> None:
        for image_id, scoremap in zip(image_ids, maps):
            with atomic_path(scoremap_path(folder, image_id)) as tmp, open(tmp, "wb") as handle:
                np.save(handle, np.asarray(scoremap, dtype=np.float64))

    def finish(self) -> None:
        ids, scores = self.ids, self.scores
        if self.processes.distributed:
            gathered = [None] * self.processes.world_size
            dist.all_gather_object(gathered, (ids, scores))
            ids = [i for part, _ in gathered for i in part]
            scores = [s for _, part in gathered for s in part]
        if self.processes.is_main and ids:
            with atomic_path(self.class_scores_path) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, image_ids=np.array(ids), scores=np.stack(scores))


@torch.no_grad()
def evaluate_model(method: Method, model: nn.Module, loader, *, metadata_dir, annotation: str,
                   cam_curve_interval: float, iou_thresholds, processes: Processes, criteria=None,
                   description: str = "evaluating", writer: ScoremapWriter | None = None,
                   pool: ScoringPool | None = None) -> dict:
    """Scores of ``model`` (the unwrapped module) on the images of ``loader`` (this process's shard; the
    results are global). ``criteria`` maps names to ``criterion(prediction, images) -> (B,)``; ``writer``,
    when given, keeps every normalised map and the class scores; ``pool`` scores the maps in worker processes
    while the next batches are predicted (default: in this process; the scores are the same)."""
    criteria = dict(criteria or {})
    pool = pool or ScoringPool(1)
    was_training = model.training
    model.eval()
    metrics = registry("metric")
    if annotation == "masks":
        metric = metrics.get("pxap")(cam_curve_interval=cam_curve_interval)
    else:
        metric = metrics.get("box_accuracy")(cam_curve_interval=cam_curve_interval, iou_thresholds=iou_thresholds)
    metric.to(processes.device)  # states live where the process group can reduce them (NCCL: on the GPU)
    correct = torch.zeros(3, dtype=torch.float64)  # top-1, top-5, images
    classified = True  # every batch had class scores (a localiser without a classifier gives none)
    criterion_sums = torch.zeros(len(criteria), dtype=torch.float64, device=processes.device)
    for batch in tqdm(loader, desc=description, leave=False, disable=None if processes.is_main else True):
        prediction = method.predict(model, batch["image"], batch["label"])
        maps = [F.normalize_scoremap(m) for m in prediction.maps.detach().float().cpu().numpy()]
        logits = None if prediction.logits is None else prediction.logits.detach().float().cpu().numpy()
        labels = batch["label"].cpu().numpy()
        if annotation == "masks":
            pool.submit(metric, maps, batch["mask"].cpu().numpy())
        else:
            pool.submit(metric, maps, [b.cpu().numpy() for b in batch["boxes"]], labels, logits)
        if writer is not None:
            writer.add(batch["image_id"], maps, logits, _extra_maps(method, model, batch))
        counts = (0, 0) if logits is None else F.topk_correct_counts(logits, labels)
        correct += torch.tensor([*counts, len(labels)], dtype=torch.float64)
        classified = classified and logits is not None
        for k, (name, criterion) in enumerate(criteria.items()):
            criterion_sums[k] += _criterion_values(method, name, criterion, prediction, batch["image"]).sum()
    pool.drain()
    model.train(was_training)
    if writer is not None:
        writer.finish()
    top1, top5, count = sum_across(correct, processes).tolist()
    evaluation = Evaluation(metadata_dir, cam_curve_interval, metric.compute(),
                            top1_cls=top1 * 100.0 / count if classified else None,
                            top5_cls=top5 * 100.0 / count if classified else None)
    scores = report_json(evaluation)
    if criteria:
        totals = sum_across(criterion_sums.cpu(), processes).tolist()
        scores["criteria"] = {name: total / count for name, total in zip(criteria, totals)}
    return scores


def _extra_maps(method: Method, model: nn.Module, batch: dict) -> dict[str, list]:
    """The method's extra maps of a batch, checked and normalised as the localization map is."""
    extra = method.extra_maps(model, batch["image"], batch["label"])
    if not isinstance(extra, dict):
        raise MethodContractError(f"method {method.name!r}: extra_maps() must return a dict of name -> maps")
    checked = {}
    for name, maps in extra.items():
        if not isinstance(name, str) or not METHOD_NAME.fullmatch(name):
            raise MethodContractError(f"method {method.name!r}: extra map name {name!r} must match "
                                      f"{METHOD_NAME.pattern}")
        if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or len(maps) != len(batch["label"]):
            raise MethodContractError(f"method {method.name!r}: extra map {name!r} must be a (B, h, w) tensor, "
                                      f"got {getattr(maps, 'shape', maps)!r}")
        checked[name] = [F.normalize_scoremap(m) for m in maps.detach().float().cpu().numpy()]
    return checked


def _criterion_values(method, name, criterion, prediction, images) -> torch.Tensor:
    values = criterion(prediction, images)
    if not isinstance(values, torch.Tensor) or values.shape != (len(images),):
        raise MethodContractError(f"method {method.name!r}: selection criterion {name!r} must return one value "
                                  f"per image, shape ({len(images)},), got {getattr(values, 'shape', values)!r}")
    return values.detach().to(torch.float64)


def selection_score(scores: dict, metric: str) -> float:
    """The checkpoint-selection value of ``metric`` in a score dict: a protocol metric (``maxboxacc_v2``,
    ``pxap``, ...) or a method criterion (under ``scores["criteria"]``)."""
    value = scores.get(metric) if any(metric in names for names in SELECTION_METRICS.values()) \
        else scores.get("criteria", {}).get(metric)
    if not isinstance(value, float):
        known = sorted(k for k, v in scores.items() if isinstance(v, float)) + sorted(scores.get("criteria", {}))
        raise WsolbenchError(f"selection metric {metric!r} is not among the scores ({', '.join(known)})")
    return value
