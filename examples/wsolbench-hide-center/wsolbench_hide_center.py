"""Hide-center: CAM trained with a square near the image centre hidden (an example wsolbench plugin).

A classifier learns from the most discriminative pixels, and in photos of centred objects those are
often near the centre; its CAM then covers a part instead of the object. During training, with
probability ``p`` per image, a square of side ``size`` times the image side is hidden. The square is
centred at a random point at most half a side from the image centre, so the classifier has to find
evidence elsewhere. Hidden pixels are set to 0 after normalization, i.e. to the ImageNet mean colour, as
Hide-and-Seek (Singh & Lee, ICCV 2017) fills the patches it hides. Evaluation is plain CAM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wsolbench.errors import WsolbenchError
from wsolbench.method import Method, StepOutput
from wsolbench.plugins import hookimpl


def hide_center(images: Tensor, p: float, size: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Hide a square near the centre of each image of ``images`` (B, C, H, W) with probability ``p``.

    The square has sides ``round(size * H)`` by ``round(size * W)`` (at least 1 pixel); its top-left corner
    is the centred one shifted by a uniform integer in ``[-side // 2, side // 2]`` per axis, kept inside the
    image. Returns the new images (the input is not modified) and which images were hidden (bool (B,)).
    Random draws come from ``generator`` (CPU), so a seed fixes them on any device.
    """
    batch, _, height, width = images.shape
    side_h, side_w = max(1, round(size * height)), max(1, round(size * width))
    hidden = torch.rand(batch, generator=generator) < p
    top = (height - side_h) // 2 + torch.randint(-(side_h // 2), side_h // 2 + 1, (batch,), generator=generator)
    left = (width - side_w) // 2 + torch.randint(-(side_w // 2), side_w // 2 + 1, (batch,), generator=generator)
    top, left = top.clamp(0, height - side_h), left.clamp(0, width - side_w)
    rows, cols = torch.arange(height)[None, :], torch.arange(width)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side_h)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side_w)
    square = hidden[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]
    return images.masked_fill(square[:, None].to(images.device), 0.0), hidden


class HideCenter(Method):
    """CAM whose training images have a square near the centre hidden with probability ``p``."""

    name = "hide_center"
    paper = "wsolbench example plugin; hiding as in Singh & Lee, Hide-and-Seek, ICCV 2017"

    @dataclass(frozen=True)
    class Hparams:
        p: float = 0.5  #: probability that an image has its square hidden
        size: float = 0.25  #: side of the square, as a fraction of the image side

        def __post_init__(self):
            if not 0 <= self.p <= 1:
                raise WsolbenchError(f"hide_center: p must lie in [0, 1], got {self.p}")
            if not 0 < self.size <= 1:
                raise WsolbenchError(f"hide_center: size must lie in (0, 1], got {self.size}")

    def training_step(self, model, batch, context):
        images, hidden = hide_center(batch["image"], self.hparams.p, self.hparams.size, context.generator)
        loss = F.cross_entropy(model(images), batch["label"])
        return StepOutput(loss, {"ce": loss.detach(), "hidden": hidden.float().mean()})  # tensors: no GPU wait


@hookimpl
def wsolbench_register_methods(register):
    register(HideCenter)
