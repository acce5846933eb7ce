"""What the two-head methods (:mod:`~wsolbench_reference.acol`, :mod:`~wsolbench_reference.spg`) share:
per-map min-max normalisation, the label channel, the channels at a backbone's taps, freezing the backbone
layers their heads replace, the reference's learning-rate split read on the new modules' names, and the
reference's initialisation of new convs."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from wsolbench.backbones import CamBackbone, ParamSplit

#: side of the zero image a backbone is probed with at build time, to read its taps' channels
PROBE_SIZE = 224


def min_max_normalize(maps: Tensor) -> Tensor:
    """Each (h, w) map of ``maps`` (..., h, w) scaled to [0, 1] by its own min and max; a constant map is 0."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    return (maps - low) / torch.where(span > 0, span, torch.ones_like(span))


def label_channel(maps: Tensor, labels: Tensor) -> Tensor:
    """``maps[b, labels[b]]`` for every image b: (B, C, h, w) -> (B, h, w)."""
    return maps[torch.arange(len(labels), device=maps.device), labels]


def top_module(tap: str) -> str:
    """The backbone's top-level module a tap belongs to: its name up to the first dot (``layer4.2`` -> ``layer4``)."""
    return tap.split(".")[0]


def tap_channels(backbone: CamBackbone, taps: Sequence[str]) -> dict[str, int]:
    """The channels of the activation at each of ``taps``: one pass of a PROBE_SIZE zero image in eval mode,
    without gradient (batch-norm statistics are left as they were)."""
    parameter = next(backbone.parameters())
    probe = torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device=parameter.device, dtype=parameter.dtype)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            activations = backbone(probe, taps=tuple(dict.fromkeys(taps))).taps
    finally:
        backbone.train(was_training)
    return {tap: activations[tap].shape[1] for tap in taps}


def freeze_new_layers_after(backbone: CamBackbone, tap: str, keep: Sequence[str] = ()) -> tuple[str, ...]:
    """Freeze (``requires_grad`` False) the backbone's ``new_layers`` that no stage up to ``tap`` runs, except
    those named in ``keep``; return their names."""
    taps = backbone.taps
    run = {top_module(name) for name in taps[: taps.index(tap) + 1]}
    frozen = tuple(name for name in backbone.new_layers if name not in run and name not in keep)
    for name in frozen:
        getattr(backbone, name).requires_grad_(False)
    return frozen


def reference_param_groups(model: nn.Module, split: ParamSplit, lr: float, classifier_ratio: float) -> list[dict]:
    """``[{"name": "base", lr}, {"name": "boosted", lr * classifier_ratio}]`` over ``model``'s trainable
    parameters (an empty group is left out). A parameter is boosted when ``split`` boosts its name, read
    relative to the backbone for the backbone's (``backbone.layer4.0.conv1.weight`` -> ``layer4.0.conv1.weight``)
    and as it is for the method's own modules (``head_a.0.weight``), which so get the lr that a top-level
    module of the backbone with that name would."""
    base, boosted = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (boosted if split.is_boosted(name.removeprefix("backbone.")) else base).append(parameter)
    groups = [{"name": "base", "params": base, "lr": lr},
              {"name": "boosted", "params": boosted, "lr": lr * classifier_ratio}]
    return [group for group in groups if group["params"]]


def init_new_convs(module: nn.Module, he: bool) -> None:
    """wsolevaluation's initialisation of new convs: He normal (fan_out, ReLU) or Xavier-uniform; biases 0."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            if he:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
