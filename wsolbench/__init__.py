"""wsolbench: the pluggable benchmark harness for weakly supervised object localization.

The public surface a plugin needs, importable from here (``from wsolbench import Method, StepOutput,
hookimpl``); each name also stays importable from the module that defines it (``wsolbench.method``,
``wsolbench.optim``, ``wsolbench.plugins``, ...). Names are loaded on first use, so ``import wsolbench``
does not import torch.
"""

import importlib

__version__ = "0.1.0"

#: public name -> the module defining it
_EXPORTS = {
    "Method": "wsolbench.method",
    "StepOutput": "wsolbench.method",
    "StepContext": "wsolbench.method",
    "Prediction": "wsolbench.method",
    "Phase": "wsolbench.method",
    "TrainingSettings": "wsolbench.method",
    "Optimization": "wsolbench.optim",
    "Schedule": "wsolbench.optim",
    "CamBackbone": "wsolbench.backbones",
    "BackboneOutput": "wsolbench.backbones",
    "DatasetSpec": "wsolbench.data.spec",
    "hookimpl": "wsolbench.plugins",
    "WsolbenchError": "wsolbench.errors",
    "ClassBalancedBatches": "wsolbench.data.samplers",
    "run_model_weights": "wsolbench.engine.checkpoint",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wsolbench' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
