"""``adl``: the Attention-based Dropout Layer (Choe & Shim, CVPR 2019) as clovaai/wsolevaluation runs it.

Re-derived from the notes on wsolevaluation and on the TensorFlow original (../shared/research/
wsolevaluation.md §5-6, methods.md §4; no code copied). An :class:`AttentionDropout` layer is inserted
after each of the backbone's three ``adl_taps`` (VGG16: pool3, conv4_3, conv5_3; ResNet: layer3.0,
layer4.0, the last block of layer4; InceptionV3: Mixed_5d, Mixed_6e, head_conv2). In training mode, on an
input x (B, K, h, w):

- attention ``A = mean_k x`` (B, 1, h, w);
- drop mask ``D = [A < gamma * max_{h,w} A]`` (the max per image), importance map ``I = sigmoid(A)``;
- one uniform draw u per layer and forward pass (per batch, not per image): the output is ``x * D`` when
  ``u < drop_rate``, else ``x * I``.

In eval mode the layer is the identity, so the localization map is the plain CAM (the default
``predict``). The loss is cross-entropy. wsolevaluation's defaults are ``drop_rate = 0.75`` and
``gamma = 0.9`` (its layer class defaults to a threshold of 0.8; the TF original's examples use
keep_prob 0.25, i.e. drop 0.75, with gamma 0.8 for VGG and 0.9 for ResNet).

Where wsolbench differs from the reference, and why: the reference layer draws u from torch's global
generator inside its forward (the drop mask when ``u + drop_rate >= 1``); here
:meth:`ADL.training_step` draws the three u, in forward order, with one ``torch.rand(3)`` on
``context.generator`` (the run's seeded, checkpointed generator) and hands them to the layers before the
forward pass, so a seed fixes the choices and ``--resume`` continues them. Same distribution. Under DDP
the layers' draws are buffers, which DDP broadcasts from rank 0 at each forward: every process makes the
same choice, one per global batch, as the reference's single-GPU run does.

For inception_v3, wsolevaluation's ADL network has no dropout in the head: :meth:`ADL.build_model` sets the
``p`` of the backbone's ``nn.Dropout`` modules to 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wsolbench import Method, WsolbenchError


class AttentionDropout(nn.Module):
    """ADL: in training mode ``x * D`` if the assigned draw is ``< drop_rate``, else ``x * sigmoid(A)``
    (see the module docstring); the identity in eval mode.

    ``draw`` is a 0-dim buffer (not saved in state dicts) that :meth:`ADL.training_step` fills with a
    uniform draw in [0, 1) before every forward pass; its initial value, 1.0, picks the importance map.
    """

    def __init__(self, drop_rate: float, gamma: float):
        super().__init__()
        self.drop_rate, self.gamma = drop_rate, gamma
        self.register_buffer("draw", torch.ones(()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        attention = x.mean(dim=1, keepdim=True)
        threshold = self.gamma * attention.amax(dim=(2, 3), keepdim=True)
        drop_mask = (attention < threshold).to(x.dtype)
        chosen = torch.where(self.draw < self.drop_rate, drop_mask, torch.sigmoid(attention))
        return x * chosen

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, gamma={self.gamma}"


class ADL(Method):
    """CAM with an attention-based dropout layer after each of the backbone's three ``adl_taps``."""

    name = "adl"
    paper = ("Choe & Shim, Attention-based Dropout Layer for Weakly Supervised Object Localization, CVPR 2019 "
             "(as re-implemented in clovaai/wsolevaluation)")

    @dataclass(frozen=True)
    class Hparams:
        drop_rate: float = 0.75  #: probability that a layer applies its drop mask in a step (adl_drop_rate)
        gamma: float = 0.9  #: drop where the attention is >= gamma x its per-image max (adl_threshold)

        def __post_init__(self):
            for key in ("drop_rate", "gamma"):
                if not 0 <= getattr(self, key) <= 1:
                    raise WsolbenchError(f"adl: {key} must lie in [0, 1], got {getattr(self, key)}")

    def build_model(self) -> nn.Module:
        model = super().build_model()
        for tap in model.adl_taps:
            model.insert_after(tap, AttentionDropout(self.hparams.drop_rate, self.hparams.gamma))
        if self.backbone_name == "inception_v3":
            for module in model.modules():
                if isinstance(module, nn.Dropout):
                    module.p = 0.0
        return model

    def training_step(self, model, batch, context):
        layers = [module for module in context.module.modules() if isinstance(module, AttentionDropout)]
        draws = torch.rand(len(layers), generator=context.generator)
        for layer, draw in zip(layers, draws.tolist()):
            layer.draw.fill_(draw)
        return super().training_step(model, batch, context)
