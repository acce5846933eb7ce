"""Atomic checkpoints: everything needed to finish an interrupted run with the same result.

``last.pt`` is written after every epoch (model, optimizer, grad scaler, history, best-so-far, and every
random state: torch, CUDA, numpy, python, the training loader's and the method's generators); ``best.pt`` holds the model
weights of the best epoch so far. Files are written to a temporary name and renamed, so a crash never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from wsolbench.errors import WsolbenchError

LAST, BEST = "last.pt", "best.pt"


def save(path: Path, state: dict) -> None:
    """``torch.save`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict:
    if not path.is_file():
        raise WsolbenchError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is one line
        raise WsolbenchError(f"{path}: cannot be read as a checkpoint ({type(error).__name__}: {error})") from None


def random_states(generators: dict[str, torch.Generator]) -> dict:
    """Every random state a resumed run needs to continue identically (global ones and ``generators``)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generators": {name: g.get_state() for name, g in generators.items()}}


def restore_random_states(states: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
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
