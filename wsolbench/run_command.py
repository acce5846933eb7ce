"""``wsolbench run``: train a method on a dataset under the protocol and write its run record."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from tabulate import tabulate

from wsolbench.cli_options import ManyValuesOption
from wsolbench.errors import WsolbenchError

DEFAULT_RUNS_DIR = Path("runs")


def _overrides(ctx, param, values):
    from wsolbench.protocol import parse_overrides

    return parse_overrides(values or ())


@click.command()
@click.option("--method", required=True, help="A registered method (wsolbench methods).")
@click.option("--dataset", required=True, help="A registered dataset, or a folder name under --root/metadata/.")
@click.option("--backbone", help="A registered backbone; default: the protocol's for the dataset.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              help="Dataset root (metadata/ and dataset/); not needed for the synthetic datasets.")
@click.option("--epochs", type=click.IntRange(0), help="Shorthand for --set epochs=N (off-protocol).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (record.json, checkpoints/); default runs/<dataset>-<method>-<backbone>-seed<N>.")
@click.option("--set", "overrides", cls=ManyValuesOption, type=click.UNPROCESSED, callback=_overrides,
              help="Override protocol values: --set lr=0.001 epochs=3; a method hyperparameter as method.NAME=V "
                   "(or bare NAME=V when no setting has that name); the criterion as selection=NAME (with "
                   "eval_checkpoint=best). Recorded; the run is off-protocol.")
@click.option("--resume", is_flag=True, help="Finish an interrupted run from its last checkpoint.")
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False, exists=True),
              help="Local torchvision-format ImageNet weights for the backbone.")
@click.option("--no-pretrained", is_flag=True, help="Train from random initialisation.")
@click.option("--amp", default="auto", show_default=True, type=click.Choice(["auto", "on", "off"]),
              help="Mixed precision (auto: on CUDA).")
@click.option("--channels-last", default="auto", show_default=True, type=click.Choice(["auto", "on", "off"]))
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model.")
@click.option("--save-scoremaps", is_flag=True,
              help="Keep the test maps (<out>/scoremaps/<image_id>.npy, wsolevaluation's layout) and class scores "
                   "(<out>/class_scores.npz) for wsolbench evaluate and wsolbench report.")
@click.option("--eval-workers", type=click.IntRange(1),
              help="Processes scoring evaluation maps while the model predicts (default: the CPU cores available); "
                   "the scores do not depend on it.")
@click.option("--log", "loggers", multiple=True, type=click.Choice(["tensorboard"]),
              help="Also log to TensorBoard (<out>/tensorboard; needs wsolbench[tensorboard]).")
def run(method, dataset, backbone, root, epochs, seed, device, out_dir, overrides, resume, weights_path,
        no_pretrained, amp, channels_last, use_compile, save_scoremaps, eval_workers, loggers):
    """Train METHOD on DATASET (train-weaksup), select on train-fullsup, test once; write the run record.

    Launch with torchrun for several processes (DDP): torchrun --nproc-per-node 2 -m wsolbench run ...
    """
    from wsolbench.data.datasets import resolve_spec
    from wsolbench.engine.fit import Acceleration
    from wsolbench.engine.fit import run as fit_run
    from wsolbench.protocol import resolve_run

    overrides = dict(overrides)
    if epochs is not None:
        if "epochs" in overrides and overrides["epochs"] != str(epochs):
            raise WsolbenchError(f"--epochs {epochs} and --set epochs={overrides['epochs']} contradict each other; "
                                 "give one")
        overrides["epochs"] = str(epochs)
    if weights_path and no_pretrained:
        raise WsolbenchError("--weights and --no-pretrained exclude each other: --weights starts from the file's "
                             "weights, --no-pretrained from random ones")
    spec = resolve_spec(dataset, root)  # a registered name, or a folder of --root/metadata/ never seen before
    config = resolve_run(method, spec, backbone, overrides)
    if no_pretrained and config.pretrained:
        config = resolve_run(method, spec, backbone, {**overrides, "pretrained": "false"})
    if weights_path and not config.pretrained:
        raise WsolbenchError(f"--weights {weights_path}: the protocol trains {config.backbone} on {config.dataset} "
                             "from random weights (pretrained = false); add --set pretrained=true to start from "
                             "the file")
    out_dir = out_dir or DEFAULT_RUNS_DIR / f"{config.dataset}-{config.method}-{config.backbone}-seed{seed}"
    record = fit_run(config, out_dir=out_dir, root=root, device=device, seed=seed, resume=resume,
                     weights_path=weights_path, acceleration=Acceleration(amp, channels_last, use_compile),
                     argv=["wsolbench", *sys.argv[1:]], loggers=loggers, save_scoremaps=save_scoremaps,
                     eval_workers=eval_workers)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        click.echo(summary_table(record))
        click.echo(f"record: {out_dir / 'record.json'}")


def summary_table(record: dict) -> str:
    """The headline scores of a run record: train-fullsup (selected epoch) and test."""
    def cell(scores: dict, key: str) -> str:  # a localiser without a classifier has no Top-1 scores
        return f"{scores[key]:.2f}" if key in scores else "-"

    rows = []
    for split, scores in (("train-fullsup", record["scores"]["train_fullsup"]), ("test", record["scores"]["test"])):
        if "pxap" in scores:
            rows.append((split, cell(scores, "pxap"), "", "", "", cell(scores, "top1_cls")))
            continue
        per_iou = "/".join(f"{v:.1f}" for v in scores["maxboxacc_v2_per_iou"].values())
        rows.append((split, cell(scores, "maxboxacc_v2"), per_iou, cell(scores, "top1_loc"),
                     cell(scores, "gt_known_loc"), cell(scores, "top1_cls")))
    box = "pxap" not in record["scores"]["test"]
    headers = ("split", "MaxBoxAccV2" if box else "PxAP", "@30/50/70", "Top-1 Loc", "GT-known Loc", "Top-1 Cls")
    selected = record["selected"]
    return (f"{record['method']} on {record['dataset']} ({record['backbone']}), checkpoint of epoch "
            f"{selected['epoch']} ({selected['criterion']})"
            + (", OFF-PROTOCOL" if record["off_protocol"] else "")
            + (", USES LOCALIZATION LABELS" if record.get("training_data", {}).get("localization_labels") else "")
            + "\n"
            + tabulate(rows, headers=headers, tablefmt="github"))
