"""TensorBoard logging of ``wsolbench run``, an observer plugin like a third party's would be.

Enabled per run with ``wsolbench run --log tensorboard``; needs the optional extra
(``pip install 'wsolbench[tensorboard]'``). Writes to ``<run folder>/tensorboard/``: every numeric
train-fullsup score per epoch (``train_fullsup/<name>``, per-IoU values as ``<name>/<iou>``) and the test
scores at the selected epoch (``test/<name>``).
"""

from __future__ import annotations

from wsolbench.errors import WsolbenchError
from wsolbench.plugins import hookimpl

NAME = "tensorboard"
_writers: dict[int, object] = {}


def _scalars(scores: dict):
    for key, value in scores.items():
        if isinstance(value, float):
            yield key, value
        elif isinstance(value, dict):
            yield from ((f"{key}/{inner}", v) for inner, v in value.items() if isinstance(v, float))


@hookimpl
def wsolbench_run_start(run):
    if NAME not in run.loggers:
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise WsolbenchError("--log tensorboard needs the tensorboard package: "
                             "pip install 'wsolbench[tensorboard]'") from None
    _writers[id(run)] = SummaryWriter(log_dir=str(run.out_dir / "tensorboard"))


@hookimpl
def wsolbench_epoch_end(run, epoch, scores):
    writer = _writers.get(id(run))
    if writer is not None:
        for key, value in _scalars(scores):
            writer.add_scalar(f"train_fullsup/{key}", value, epoch)


@hookimpl
def wsolbench_run_finish(run, record):
    writer = _writers.pop(id(run), None)
    if writer is not None:
        for key, value in _scalars(record["scores"]["test"]):
            writer.add_scalar(f"test/{key}", value, record["selected"]["epoch"])
        writer.close()
