"""Input conversion shared by the stateful metrics."""

import numpy as np
import torch

from wsolbench.metrics.functional import scoremap_problem


def to_numpy(value):
    """A tensor as a numpy array (detached, on the CPU); anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


def validated_scoremaps(scoremaps) -> list[np.ndarray]:
    """Score maps as float64 arrays; ValueError if one is not 2-D, finite and within [0, 1]."""
    maps = [np.asarray(to_numpy(s), dtype=np.float64) for s in scoremaps]
    for index, scoremap in enumerate(maps):
        problem = scoremap_problem(scoremap)
        if problem:
            raise ValueError(f"score map {index} of the batch: {problem}")
    return maps
