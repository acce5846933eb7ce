"""``center``: the centre-Gaussian baseline of Choe et al. (CVPR 2020), a localization floor with no training.

Every image gets the same map, an isotropic Gaussian centred on the image::

    map(x, y) = exp(-(u**2 + v**2) / (2 * sigma**2)),  u = (x + 0.5) / W - 0.5,  v = (y + 0.5) / H - 0.5

(pixel centres, in fractions of the side; ``sigma`` is a fraction of the side too). The reference reports
its scores (CUB 59.7, ImageNet 52.5 MaxBoxAccV2; OpenImages 45.8 PxAP, ../shared/research/wsolevaluation.md
§7) without stating the width. Under the protocol the width hardly matters: after min-max normalisation
every threshold cuts a centred disc, so MaxBoxAccV2 and PxAP (which sweep every threshold) see the same
family of regions whatever ``sigma``; it changes only which radii the 0.001 threshold grid and the 8-bit
quantisation reach. With the default 0.25 the normalised map stays at or above the first quantisation level
(1/255) out to a radius of 0.69 of the side (the corners are at 0.71), so discs up to nearly the whole image
are reachable; a narrow one (0.1) would leave everything beyond 0.33 at level 0.

The baseline has no classifier: its predictions carry no class scores, so its records hold the
label-free accuracies (MaxBoxAcc, MaxBoxAccV2, GT-known Loc; PxAP on masks) and no Top-1 Cls or Loc.
It has no parameters and one phase of 0 epochs: the epoch-0 evaluation is its only checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wsolbench import Method, Phase, Prediction, WsolbenchError


class CentreGaussianMap(nn.Module):
    """``forward(images) -> (B, H, W)``: the centred Gaussian at the images' size (see the module docstring)."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        v = _centred_coordinates(height, images.device)
        u = _centred_coordinates(width, images.device)
        squared_distance = v[:, None] ** 2 + u[None, :] ** 2
        gaussian = torch.exp(-squared_distance / (2 * self.sigma ** 2))
        return gaussian.expand(images.shape[0], height, width)


def _centred_coordinates(size: int, device) -> Tensor:
    """``(i + 0.5) / size - 0.5`` for ``i < size``, as ``(2i + 1 - size) / (2 size)``: exactly symmetric."""
    return (2 * torch.arange(size, dtype=torch.float32, device=device) + 1 - size) / (2 * size)


class CentreGaussian(Method):
    """The same centred Gaussian map for every image; nothing is trained."""

    name = "center"
    paper = ("Choe et al., Evaluating Weakly Supervised Object Localization Methods Right, CVPR 2020 "
             "(centre-Gaussian baseline)")

    @dataclass(frozen=True)
    class Hparams:
        sigma: float = 0.25  #: the Gaussian's standard deviation, a fraction of the image side

        def __post_init__(self):
            if not self.sigma > 0:
                raise WsolbenchError(f"center: sigma must be > 0 (a fraction of the image side), got {self.sigma}")

    def build_model(self) -> nn.Module:
        return CentreGaussianMap(self.hparams.sigma)

    def param_groups(self, model: nn.Module, lr: float) -> list[dict]:
        return []

    def optimizers(self, model, settings) -> dict:
        return {}

    def phases(self, settings) -> list[Phase]:
        return [Phase("untrained", 0, optimizers=())]

    def predict(self, model: nn.Module, images: Tensor, labels: Tensor) -> Prediction:
        return Prediction(None, model(images))
