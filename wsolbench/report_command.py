"""``wsolbench report``: figures and a self-contained HTML page of a run's test split, or of heatmaps from any
codebase, drawn from the score maps alone (see :mod:`wsolbench.report`)."""

from __future__ import annotations

from pathlib import Path

import click

from wsolbench.cli_options import ManyValuesOption
from wsolbench.errors import WsolbenchError
from wsolbench.evaluate_command import _iou_list

DIR = click.Path(file_okay=False, path_type=Path)


def _given_iou_list(ctx, param, value):
    return None if value is None else _iou_list(ctx, param, value)


@click.command()
@click.argument("run_dir", metavar="[RUN]", required=False, type=DIR)
@click.option("--out", "out_dir", type=DIR,
              help="Folder to write the figures and report.html to  [default: RUN/report, or ./report].")
@click.option("--scoremaps", "scoremap_dir", type=DIR,
              help="Foreign heatmaps: folder of <image_id>.npy score maps (instead of RUN).")
@click.option("--metadata", "metadata_dir", type=DIR,
              help="Split folder in wsolevaluation's layout (with --scoremaps; with RUN it overrides the record's).")
@click.option("--images", "image_dir", type=DIR,
              help="Folder the image ids are relative to (with --scoremaps; with RUN it overrides "
                   "<root>/dataset/<FOLDER> of the run's dataset root).")
@click.option("--logits", "logits_file", type=click.Path(dir_okay=False, path_type=Path),
              help="With --scoremaps: class scores (.npz or CSV, as wsolbench evaluate takes them) for Top-k.")
@click.option("--mask-root", type=DIR,
              help="Folder mask paths are relative to (mask splits)  [default: the images' folder].")
@click.option("--images-per-figure", default=12, show_default=True, type=click.IntRange(1, 100),
              help="Test images in examples.png: the first N of the split, in order.")
@click.option("--cam-curve-interval", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="With --scoremaps: threshold step  [default: 0.001]. A run's comes from its record.")
@click.option("--iou-thresholds", cls=ManyValuesOption, type=click.UNPROCESSED, callback=_given_iou_list,
              help="With --scoremaps: MaxBoxAccV2's IoU thresholds  [default: 30 50 70]. "
                   "A run's come from its record.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Processes to score with.")
def report(run_dir, out_dir, scoremap_dir, metadata_dir, image_dir, logits_file, mask_root, images_per_figure,
           cam_curve_interval, iou_thresholds, workers):
    """Draw a report of RUN's test split, or of foreign heatmaps (--scoremaps DIR --metadata SPLIT --images ROOT).

    Writes examples.png (test images with the map, ground-truth and predicted boxes), threshold_curves.png
    (accuracy against CAM threshold for each IoU; box splits) or pr_curve.png (PxAP; mask splits), and
    report.html, one self-contained page with the test scores and the figures. RUN is a folder of
    `wsolbench run --save-scoremaps`; no model is loaded.
    """
    from wsolbench.report.build import inputs_from_run, inputs_from_scoremaps, make_report, rescoring_mismatches

    if run_dir is not None and scoremap_dir is not None:
        raise WsolbenchError("give a run folder (RUN) or --scoremaps DIR, not both")
    if run_dir is None and scoremap_dir is None:
        raise WsolbenchError("give a run folder (RUN) or --scoremaps DIR --metadata SPLIT --images ROOT")
    if run_dir is not None:
        given = [name for name, value in (("--logits", logits_file), ("--cam-curve-interval", cam_curve_interval),
                                          ("--iou-thresholds", iou_thresholds)) if value is not None]
        if given:
            raise WsolbenchError(f"{given[0]} is for --scoremaps; a run's class scores and evaluation settings "
                                 f"come from {run_dir / 'record.json'}")
        inputs = inputs_from_run(run_dir, out=out_dir, images=image_dir, metadata=metadata_dir, mask_root=mask_root)
    else:
        missing = [name for name, value in (("--metadata SPLIT", metadata_dir), ("--images ROOT", image_dir))
                   if value is None]
        if missing:
            raise WsolbenchError(f"--scoremaps needs {' and '.join(missing)}")
        inputs = inputs_from_scoremaps(scoremap_dir, metadata_dir, image_dir, out=out_dir, logits=logits_file,
                                       mask_root=mask_root, cam_curve_interval=cam_curve_interval or 0.001,
                                       iou_thresholds=iou_thresholds or (30, 50, 70))
    leaderboard_html = ""
    if inputs.record is not None:
        from wsolbench.leaderboard.formats import html_fragment
        from wsolbench.leaderboard.table import context_rows

        leaderboard_html = html_fragment(context_rows(inputs.record), commands=True)
    result = make_report(inputs, images_per_figure=images_per_figure, workers=workers,
                         leaderboard_html=leaderboard_html)
    if result.resized:
        image_id, shape = result.resized[0]
        click.echo(f"wsolbench: notice: {len(result.resized)} score maps were not 224x224 (first: {image_id!r}, "
                   f"{shape[0]}x{shape[1]}); they were resized bicubically and min-max normalised", err=True)
    if inputs.record is not None:
        mismatches = rescoring_mismatches(inputs.record, result.scores)
        if mismatches:
            click.echo(f"wsolbench: warning: the kept maps do not re-score to the record's test scores "
                       f"({'; '.join(mismatches)})", err=True)
    for path in result.files:
        click.echo(f"wrote {path}")
