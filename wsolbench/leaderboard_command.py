"""``wsolbench leaderboard``: render recorded runs beside the published numbers."""

from __future__ import annotations

from pathlib import Path

import click

from wsolbench.run_command import DEFAULT_RUNS_DIR


@click.command()
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--dataset", help="Only this dataset's rows.")
@click.option("--backbone", help="Only this backbone's rows.")
@click.option("--metric", default="maxboxacc_v2", show_default=True,
              help="Sort by this test metric (maxboxacc_v2, top1_loc, gt_known_loc, top1_cls, pxap, ...).")
@click.option("--all", "show_all", is_flag=True,
              help="Also off-protocol runs (overrides), and every published row.")
@click.option("--format", "fmt", default="github", show_default=True,
              type=click.Choice(["github", "latex", "html", "csv", "json"]))
@click.option("--commands", is_flag=True, help="Also the command reproducing each row (citations for published).")
@click.option("--published/--no-published", default=True, show_default=True,
              help="Show the published numbers beside the runs.")
def leaderboard(runs, dataset, backbone, metric, show_all, fmt, commands, published):
    """One table of the run records under RUNS (files or folders, searched for record.json; default runs/)
    beside the published numbers: mean ± std over seeds, with tiers and marks.

    Off-protocol runs are hidden unless --all; untuned configurations and runs that trained on
    localization labels (the few-shot baseline) are marked. A bad record file is skipped with a warning.
    """
    from wsolbench.errors import WsolbenchError
    from wsolbench.leaderboard.formats import render
    from wsolbench.leaderboard.records import load_records
    from wsolbench.leaderboard.table import METRICS, published_rows, reproduced_rows, select_rows

    if metric not in METRICS:
        raise WsolbenchError(f"unknown --metric {metric!r}; choose from {', '.join(METRICS)}")
    paths = runs or ((DEFAULT_RUNS_DIR,) if DEFAULT_RUNS_DIR.is_dir() else ())
    records = load_records(paths, warn=lambda line: click.echo(f"wsolbench: warning: {line}", err=True))
    rows = select_rows(reproduced_rows([record for _, record in records]), published_rows() if published else [],
                       dataset=dataset, backbone=backbone, metric=metric, show_all=show_all)
    click.echo(render(rows, fmt, commands=commands))
