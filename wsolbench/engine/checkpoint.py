"""Atomic checkpoints: everything needed to finish an interrupted run with the same result.

``last.pt`` is written after every epoch (model, optimizer, grad scaler, history, best-so-far, and every
random state: torch, CUDA, numpy, python, the training loader's and the method's generators); ``best.pt`` holds the model
weights of the best epoch so far. Files are written to a temporary name and renamed, so a crash never
leaves a half-written checkpoint. Checkpoints hold tensors and plain Python values only and are read with
``torch.load(weights_only=True)``: a crafted file cannot run code. :func:`run_model_weights` (also
``wsolbench.run_model_weights``) reads a finished run's model weights, for a method that builds on one.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from wsolbench.atomic import atomic_path
from wsolbench.errors import WsolbenchError

LAST, BEST = "last.pt", "best.pt"


def save(path: Path, state: dict) -> None:
    """``torch.save`` to ``path`` atomically (under a temporary name of its own: :mod:`wsolbench.atomic`)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path) -> dict:
    """A checkpoint's contents; a missing or unreadable file is one line."""
    if not path.is_file():
        raise WsolbenchError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is one line
        raise WsolbenchError(f"{path}: cannot be read as a checkpoint ({type(error).__name__}: {error})") from None


def run_model_weights(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state dict of a wsolbench run. ``source`` is a finished run's ``--out`` folder (the
    checkpoint its record says was tested: ``best.pt`` when it selected an epoch, else ``last.pt``) or one
    checkpoint file (``last.pt``, ``best.pt``)."""
    path = Path(source)
    if path.is_dir():
        record = path / "record.json"
        if not record.is_file():
            raise WsolbenchError(f"{path}: no record.json, so not a finished wsolbench run; give a checkpoint "
                                 f"file ({path / 'checkpoints' / LAST}) instead")
        try:
            criterion = json.loads(record.read_text(encoding="utf-8"))["selected"]["criterion"]
        except (ValueError, KeyError, TypeError) as error:
            raise WsolbenchError(f"{record}: not a wsolbench record ({type(error).__name__}: {error})") from None
        path = path / "checkpoints" / (LAST if criterion == "last" else BEST)
    state = load(path)
    model = state.get("model") if isinstance(state, dict) else None
    if not isinstance(model, dict):
        raise WsolbenchError(f"{path}: not a wsolbench checkpoint (no model weights)")
    return model


def random_states(generators: dict[str, torch.Generator]) -> dict:
    """Every random state a resumed run needs to continue identically (global ones and ``generators``)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generators": {name: g.get_state() for name, g in generators.items()}}


def restore_random_states(states: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(states["python"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for name, generator in generators.items():
        generator.set_state(states["generators"][name])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
