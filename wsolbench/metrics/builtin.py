"""The built-in metrics, registered through the ``wsolbench`` entry-point group like any plugin's."""

from wsolbench.metrics.boxacc import BoxAccuracy
from wsolbench.metrics.pxap import PxAP
from wsolbench.plugins import hookimpl


@hookimpl
def wsolbench_register_metrics(register):
    register("box_accuracy", BoxAccuracy)
    register("pxap", PxAP)
