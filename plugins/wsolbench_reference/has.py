"""``has``: Hide-and-Seek (Singh & Lee, ICCV 2017) as clovaai/wsolevaluation re-implements it.

Re-derived from the notes on wsolevaluation (../shared/research/wsolevaluation.md §6, methods.md §3; its
code not copied). Training only: before the forward pass, the already normalised batch (B, C, H, W) is cut
into cells of ``grid_size`` x ``grid_size`` pixels from the top-left corner (the last row and column of
cells are partial when ``grid_size`` does not divide H or W), and each cell of each image is set to 0,
the dataset's mean colour in normalised space, independently with probability ``drop_rate``. Then plain
cross-entropy. Evaluation is plain CAM (the default ``predict``).

Where wsolbench differs from the reference, and why:

- the draws are ``torch.rand((B, ceil(H / g), ceil(W / g)), generator=context.generator)`` in row-major
  cell order (the run's seeded, checkpointed generator), a cell hidden where its draw is ``< drop_rate``;
  the reference draws ``random.random() <= drop_rate`` per cell from Python's global generator. Same
  distribution (the two comparisons differ on a set of probability zero), and now ``drop_rate = 0`` hides
  nothing and ``drop_rate = 1`` everything, exactly;
- the reference clips both axes of a cell with the image height (harmless for its square crops); here
  rows are clipped with H and columns with W;
- the reference treats ``grid_size = 0`` as "hide nothing"; here it is an error (use ``drop_rate = 0``).

The original paper draws the patch side per iteration from {0, 16, 32, 44, 56} px; wsolevaluation, and so
this plugin, uses one fixed side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wsolbench import Method, StepOutput, WsolbenchError


def draw_hidden_cells(batch_size: int, height: int, width: int, grid_size: int, drop_rate: float,
                      generator: torch.Generator) -> Tensor:
    """Which cells to hide: bool (B, ceil(H / grid_size), ceil(W / grid_size)), True with probability
    ``drop_rate``, from one ``torch.rand`` of that shape on ``generator`` (row-major cell order)."""
    cells = (batch_size, -(-height // grid_size), -(-width // grid_size))
    return torch.rand(cells, generator=generator) < drop_rate


def hide_cells(images: Tensor, hidden_cells: Tensor, grid_size: int) -> Tensor:
    """``images`` (B, C, H, W) with every pixel of each hidden cell set to 0, in all channels.

    Cell (i, j) covers rows ``[i * grid_size, min((i + 1) * grid_size, H))`` and the same columns in W;
    ``hidden_cells`` is bool (B, ceil(H / grid_size), ceil(W / grid_size)). The input is not modified.
    """
    batch, _, height, width = images.shape
    rows, cols = hidden_cells.shape[1:]
    hidden = hidden_cells.to(images.device)[:, :, None, :, None].expand(batch, rows, grid_size, cols, grid_size)
    pixels = hidden.reshape(batch, rows * grid_size, cols * grid_size)[:, :height, :width]
    return images.masked_fill(pixels[:, None], 0.0)


class HideAndSeek(Method):
    """CAM trained on images whose ``grid_size``-pixel cells are each hidden with probability ``drop_rate``."""

    name = "has"
    paper = ("Singh & Lee, Hide-and-Seek: Forcing a Network to be Meticulous for Weakly-supervised Object "
             "and Action Localization, ICCV 2017 (as re-implemented in clovaai/wsolevaluation)")

    @dataclass(frozen=True)
    class Hparams:
        grid_size: int = 4  #: side of a hidden cell, in pixels (wsolevaluation's has_grid_size)
        drop_rate: float = 0.5  #: probability that a cell is hidden (has_drop_rate)

        def __post_init__(self):
            if self.grid_size < 1:
                raise WsolbenchError(f"has: grid_size must be >= 1 (pixels), got {self.grid_size}")
            if not 0 <= self.drop_rate <= 1:
                raise WsolbenchError(f"has: drop_rate must lie in [0, 1], got {self.drop_rate}")

    def training_step(self, model, batch, context) -> StepOutput:
        images = batch["image"]
        batch_size, _, height, width = images.shape
        hidden = draw_hidden_cells(batch_size, height, width, self.hparams.grid_size, self.hparams.drop_rate,
                                   context.generator)
        loss = F.cross_entropy(model(hide_cells(images, hidden, self.hparams.grid_size)), batch["label"])
        return StepOutput(loss, {"ce": loss.detach()})
