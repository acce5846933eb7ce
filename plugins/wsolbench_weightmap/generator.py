"""The weight-map generator g: a U-Net decoder with skip connections on a CAM backbone's encoder.

Shaharabany & Wolf §3 (Architecture): an ImageNet-pretrained ResNet encoder, and a decoder of upsampling
blocks, each of two 3x3 convolutions (zero padding 1) with batch normalisation and ReLU, each receiving a
skip connection from the encoder block of its spatial resolution; a sigmoid gives the weight map
``M = g(I)`` in [0, 1] at the input size.

Built on any :class:`wsolbench.CamBackbone` through its public ``stages()``: the skips are the last stage
of every spatial resolution (found by one dry forward pass), the bottleneck is the last stage (two
conv3x3-BN-ReLU). One up-block per skip (bilinear resize to the skip's size, concatenation, two
conv3x3-BN-ReLU), then x2 up-blocks without a skip until the input resolution, then a 3x3 convolution to one
channel, a bilinear resize to the input size (``align_corners=True``, as the first author's WWbL code) and
the sigmoid. For a ResNet (taps at 1/4, 1/8, 1/16, 1/32) that is five up-blocks, as the paper. Decoder
widths follow the skips' channels, capped at :data:`MAX_WIDTH` (wsolbench's choice, to keep the decoder of a
ResNet-50 encoder light). The encoder's classification head is never used and never trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench import CamBackbone

#: the widest decoder block
MAX_WIDTH = 256
#: the narrowest decoder block
MIN_WIDTH = 16
#: the side of the dry-run input that finds the encoder's resolutions
_PROBE_SIZE = 224


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn_relu(in_channels, out_channels), *_conv_bn_relu(out_channels, out_channels))


def skip_taps(encoder: CamBackbone) -> list[tuple[str, int, int]]:
    """``(tap, channels, stride)`` of the last stage at each spatial resolution, shallow to deep (the deepest
    is the encoder's last stage, the bottleneck's input)."""
    was_training = encoder.training
    encoder.eval()
    shapes: list[tuple[str, int, int]] = []
    with torch.no_grad():
        x = torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE)
        for name, stage in encoder.stages():
            x = stage(x)
            shapes.append((name, x.shape[1], x.shape[-2]))
    encoder.train(was_training)
    last_of_size: dict[int, tuple[str, int, int]] = {}
    for name, channels, height in shapes:
        last_of_size[height] = (name, channels, round(_PROBE_SIZE / height))
    return [last_of_size[height] for height in sorted(last_of_size, reverse=True)]


def _width(channels: int) -> int:
    return max(MIN_WIDTH, min(channels, MAX_WIDTH))


class WeightMapGenerator(nn.Module):
    """``forward(images) -> (B, H, W)`` weight maps in [0, 1] at the images' size."""

    def __init__(self, encoder: CamBackbone):
        super().__init__()
        self.encoder = encoder
        for parameter in encoder.classifier.parameters():
            parameter.requires_grad_(False)  # the head is not part of g
        skips = skip_taps(encoder)
        self.skip_names = [name for name, _, _ in skips[:-1]]
        self.last_stage, deepest, _ = skips[-1]
        width = _width(deepest)
        self.bottleneck = _double_conv(deepest, width)
        self.skip_blocks = nn.ModuleList()
        for _, channels, _ in reversed(skips[:-1]):
            out = _width(channels)
            self.skip_blocks.append(_double_conv(width + channels, out))
            width = out
        self.refine_blocks = nn.ModuleList()  # x2 each, from the shallowest skip's stride to the input's
        stride = skips[0][2] if len(skips) > 1 else skips[-1][2]
        while stride > 1:
            out = max(width // 2, MIN_WIDTH)
            self.refine_blocks.append(_double_conv(width, out))
            width, stride = out, stride // 2
        self.head = nn.Conv2d(width, 1, 3, padding=1)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """g's parameters: every one except the encoder's unused classification head."""
        head = {id(p) for p in self.encoder.classifier.parameters()}
        return [p for p in self.parameters() if id(p) not in head]

    def encode(self, images: Tensor) -> tuple[list[Tensor], Tensor]:
        skips, x = [], images
        for name, stage in self.encoder.stages():
            x = stage(x)
            if name in self.skip_names:
                skips.append(x)
            if name == self.last_stage:
                break
        return skips, x

    def forward(self, images: Tensor) -> Tensor:
        skips, x = self.encode(images)
        x = self.bottleneck(x)
        for block, skip in zip(self.skip_blocks, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        for block in self.refine_blocks:
            x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        logits = self.head(x)
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=True)
        return torch.sigmoid(logits[:, 0])
