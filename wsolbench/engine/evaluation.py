"""Evaluate a model on a split: the harness's fixed part of every method's evaluation.

For each batch the method gives class scores and the raw maps of the ground-truth classes
(:meth:`wsolbench.method.Method.predict`); the harness post-processes every map identically (float64,
bicubic resize to 224, min-max normalisation: :func:`~wsolbench.metrics.functional.normalize_scoremap`) and
feeds the stateful metrics, which sum their statistics across processes. The scores are the same dictionary
``wsolbench evaluate --json`` prints.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from tqdm import tqdm

from wsolbench.engine.distributed import Processes, sum_across
from wsolbench.errors import WsolbenchError
from wsolbench.evaluate import Evaluation, report_json
from wsolbench.method import Method
from wsolbench.metrics import functional as F
from wsolbench.plugins import registry


@torch.no_grad()
def evaluate_model(method: Method, model: nn.Module, loader, *, metadata_dir, annotation: str,
                   cam_curve_interval: float, iou_thresholds, processes: Processes,
                   autocast=contextlib.nullcontext, description: str = "evaluating") -> dict:
    """Scores of ``model`` on the images of ``loader`` (this process's shard; results are global)."""
    was_training = model.training
    model.eval()
    metrics = registry("metric")
    if annotation == "masks":
        metric = metrics.get("pxap")(cam_curve_interval=cam_curve_interval)
    else:
        metric = metrics.get("box_accuracy")(cam_curve_interval=cam_curve_interval, iou_thresholds=iou_thresholds)
    metric.to(processes.device)  # states live where the process group can reduce them (NCCL: on the GPU)
    correct = torch.zeros(3, dtype=torch.float64)  # top-1, top-5, images
    for batch in tqdm(loader, desc=description, leave=False, disable=None if processes.is_main else True):
        with autocast():
            prediction = method.predict(model, batch["image"], batch["label"])
        maps = [F.normalize_scoremap(m) for m in prediction.maps.detach().float().cpu().numpy()]
        logits = prediction.logits.detach().float().cpu().numpy()
        labels = batch["label"].cpu().numpy()
        if annotation == "masks":
            metric.update(maps, batch["mask"].cpu().numpy())
        else:
            metric.update(maps, [b.cpu().numpy() for b in batch["boxes"]], labels, logits)
        correct += torch.tensor([*F.topk_correct_counts(logits, labels), len(labels)], dtype=torch.float64)
    model.train(was_training)
    top1, top5, count = sum_across(correct, processes).tolist()
    evaluation = Evaluation(metadata_dir, cam_curve_interval, metric.compute(),
                            top1_cls=top1 * 100.0 / count, top5_cls=top5 * 100.0 / count)
    return report_json(evaluation)


def selection_score(scores: dict, metric: str) -> float:
    """The protocol's checkpoint-selection value (e.g. ``maxboxacc_v2`` or ``pxap``) from a score dict."""
    if not isinstance(scores.get(metric), float):
        raise WsolbenchError(f"selection metric {metric!r} is not among the scores ({', '.join(sorted(scores))})")
    return scores[metric]
