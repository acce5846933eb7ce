"""Import ``torchvision.models``, turning a torch/torchvision build mismatch into one clear line.

A torchvision wheel built for another torch fails on import with ``operator torchvision::nms does not
exist``, which says nothing about the cause. :func:`torchvision_models` reports it as a
:class:`~wsolbench.errors.WsolbenchError` naming both installed versions.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

from wsolbench.errors import WsolbenchError

_MISMATCH_SIGNATURE = "torchvision::nms does not exist"


def _installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


def torchvision_models() -> ModuleType:
    """The ``torchvision.models`` module; a torchvision that does not match torch is a WsolbenchError."""
    try:
        return importlib.import_module("torchvision.models")
    except RuntimeError as error:
        if _MISMATCH_SIGNATURE not in str(error):
            raise
        raise WsolbenchError(
            f"torchvision {_installed_version('torchvision')} does not match torch {_installed_version('torch')}: "
            "install both from the same source (pip install torch torchvision)") from error
