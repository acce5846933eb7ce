"""``wsolbench evaluate``: score heatmaps from any codebase against a split in wsolevaluation's layout."""

from __future__ import annotations

import json

import click

from wsolbench.cli_options import ManyValuesOption


def _iou_list(ctx, param, value):
    if value is None:
        return (30, 50, 70)
    try:
        values = tuple(int(v) for v in value)
    except ValueError:
        raise click.BadParameter(f"IoU thresholds must be integers (percent), got {' '.join(value)}") from None
    if not values or any(not 0 < v <= 100 for v in values):
        raise click.BadParameter(f"IoU thresholds must lie in (0, 100], got {' '.join(value)}")
    return values


@click.command()
@click.option("--metadata", "metadata_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Split folder with image_ids.txt, class_labels.txt, image_sizes.txt, localization.txt.")
@click.option("--scoremaps", "scoremap_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder of <image_id>.npy score maps (image extension kept, e.g. a/b.jpg.npy).")
@click.option("--mask-root", type=click.Path(file_okay=False, path_type=str),
              help="Folder that the mask paths of localization.txt are relative to (mask splits).")
@click.option("--cam-curve-interval", default=0.001, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Score-map threshold step: thresholds np.arange(0, 1, step).")
@click.option("--iou-thresholds", cls=ManyValuesOption, type=click.UNPROCESSED, callback=_iou_list,
              help="IoU thresholds in percent for MaxBoxAccV2  [default: 30 50 70].")
@click.option("--logits", "logits_file", type=click.Path(dir_okay=False, path_type=str),
              help="Per-image class scores (.npz with image_ids and scores, or CSV image_id,s0,s1,...): "
                   "enables Top-1/Top-5 Loc and classification accuracy.")
@click.option("--loc-threshold", type=click.FloatRange(0, 1, max_open=True),
              help="Also report GT-known / Top-k Loc at this fixed threshold.")
@click.option("--loc-contours", type=click.Choice(["all", "largest"]), default="all", show_default=True,
              help="Boxes that GT-known / Top-k Loc use: every contour (as MaxBoxAccV2) or the largest (as MaxBoxAcc).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Processes to score with.")
@click.option("--curves", is_flag=True, help="With --json, include accuracy-vs-threshold / precision-recall curves.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def evaluate(metadata_dir, scoremap_dir, mask_root, cam_curve_interval, iou_thresholds, logits_file, loc_threshold,
             loc_contours, workers, curves, as_json):
    """Score heatmaps from any codebase against a split in wsolevaluation's layout.

    Reports MaxBoxAcc (V1), MaxBoxAccV2 with per-IoU values and best thresholds, GT-known Loc and, with
    --logits, Top-1/Top-5 Loc and classification; PxAP for mask-annotated splits. Percent throughout.
    """
    from wsolbench.evaluate import evaluate_split, report_table
    from wsolbench.metrics.scores import report_json

    evaluation = evaluate_split(metadata_dir, scoremap_dir, mask_root=mask_root, class_scores_file=logits_file,
                                cam_curve_interval=cam_curve_interval, iou_thresholds=iou_thresholds,
                                loc_threshold=loc_threshold, loc_contours=loc_contours, workers=workers)
    if evaluation.resized:
        image_id, shape = evaluation.resized[0]
        click.echo(f"wsolbench: notice: {len(evaluation.resized)} score maps were not 224x224 (first: {image_id!r}, "
                   f"{shape[0]}x{shape[1]}); they were resized bicubically and min-max normalised", err=True)
    if as_json:
        click.echo(json.dumps(report_json(evaluation, curves=curves)))
    else:
        click.echo(report_table(evaluation))
