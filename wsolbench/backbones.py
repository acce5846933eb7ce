"""CAM-ready backbones built on torchvision's model definitions, with named taps.

This module holds the architectures (:class:`GapFcBackbone`, :class:`VggCam`, :class:`ResNetCam`,
:class:`InceptionCam`, :class:`MobileNetV2Cam` and their factories ``vgg16``, ``resnet50``, ``resnet18``,
``inception_v3``, ``mobilenet_v2``), weights loading (:func:`load_torchvision_weights`), the built-in
registration hook, :func:`create_backbone` and :func:`param_groups`.

Every backbone is a :class:`CamBackbone`, whose class docstring is the contract a backbone plugin
implements (what a subclass must define, what it may). The contract and its checks live in
:mod:`wsolbench.backbone_contract` (which imports neither the plugin loader nor the registry); every
name there is re-exported here (``CamBackbone``, ``BackboneOutput``, ``ParamSplit``, ``Stage``,
``REQUIRED_ATTRIBUTES``, ``OPTIONAL_ATTRIBUTES``, ``registration_problem``, ``built_problem``), so
``from wsolbench.backbones import CamBackbone`` stays the documented path. A subclass that lacks a required
attribute fails when it is defined, a registered class that leaves an abstract method undefined fails at
registration, and :func:`create_backbone` checks what a factory function builds.

- ``features(x)`` is the map the CAM is read from, (B, K, h, w); ``logits(feature_map)`` the class scores;
  ``forward(x) == logits(features(x))``. ``forward(x, with_features=True, taps=(...))`` returns a
  :class:`BackboneOutput` (logits, feature map, the asked taps' activations) from the same single pass:
  the way a method gets features through ``DistributedDataParallel``, whose only door is ``forward``.
- ``cam(feature_map, labels)`` is the class activation map (B, h, w) the wsolevaluation way. For the
  GAP + fc backbones it is the channel *mean* of ``fc.weight[label, k] * feature_map[k]`` (the weighted sum
  divided by K; no bias, no ReLU). For inception_v3 it is the label channel of the 1x1 class conv (bias
  included), since there the classifier comes before the GAP. Nothing is detached: callers that only
  evaluate detach themselves.
- ``taps`` names, in forward order, the points whose activation a module can be inserted after
  (``insert_after``); the last tap is the feature map itself. ``adl_taps`` are the three ADL insertion
  points and ``split_tap`` the point after which the feature-direction alignment method erases
  (``forward_from(drop(forward_to(x, split_tap)), split_tap)`` runs the shared tail); both are optional
  for a plugin backbone, and reading one it does not define is a one-line error.

================  =======================  ==========================  ================  ================
name              feature map at 224       adl_taps                    split_tap         K
================  =======================  ==========================  ================  ================
vgg16             14x14 (large: 28x28)     pool3, conv4_3, conv5_3     conv4_3           1024 (conv6)
resnet50          14x14 (large: 28x28)     layer3.0, layer4.0, 4.2     layer4.0          2048
resnet18          14x14 (large: 28x28)     layer3.0, layer4.0, 4.1     layer4.0          512
inception_v3      14x14 (large: 28x28)     Mixed_5d, Mixed_6e,         Mixed_6e          1024
                                           head_conv2
mobilenet_v2      28x28 (stride 8 only)    body.7, body.14, body.18    body.14           1280
================  =======================  ==========================  ================  ================

The vgg16/resnet/inception taps and splits follow wsolevaluation and bridging-gap-wsol; inception_v3's
split_tap and everything about mobilenet_v2's taps are wsolbench's choice, by analogy with ResNet:
``body.7`` and ``body.14`` start the two stages whose stride MinMaxCAM set to 1 (like layer3.0 and
layer4.0) and ``body.18`` is the final 1280-channel conv (like layer4.2).

Weights: ``pretrained=True`` fetches torchvision's ImageNet weights (``IMAGENET1K_V1``) through its weights
API; ``weights_path`` loads a local torchvision-format state dict instead. Keys are mapped onto the
modified architecture (VGG/MobileNetV2 ``features.N`` -> ``body.N`` with unchanged indices,
``classifier.*`` dropped; ResNet ``fc.*`` dropped unless ``num_classes == 1000``; Inception ``Mixed_7*``,
``AuxLogits.*`` and ``fc.*`` dropped); any other unexpected, missing or mis-shaped key is an error.
Before loading, the layers are initialised as wsolevaluation does: convs Xavier-uniform (VGG: He fan_out),
Linear N(0, 0.01), BatchNorm weight 1, biases 0; the new layers keep that initialisation. mobilenet_v2, which
wsolevaluation lacks, keeps torchvision's initialisation of ``body`` (Xavier there makes the 19 blocks
shrink the signal to ~1e-12) and initialises only its fc that way.

Learning rates: :func:`param_groups` splits parameters into a base group and a ``lr * classifier_ratio`` group
by ``reference_split`` (the reference code's rule: VGG all but ``body.*``; ResNet ``layer4.*`` and ``fc.*``;
Inception all but ``Conv2d_*``/``Mixed_*``; MobileNetV2, after MinMaxCAM, ``fc.*``) or by
``new_layers_split`` (only the layers the ImageNet weights do not cover), or by any :class:`ParamSplit`.
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench._torchvision import torchvision_models
# the contract, re-exported: these names are documented as wsolbench.backbones.<name>
from wsolbench.backbone_contract import (  # noqa: F401 - re-exported
    OPTIONAL_ATTRIBUTES,
    REQUIRED_ATTRIBUTES,
    BackboneOutput,
    CamBackbone,
    ParamSplit,
    Stage,
    built_problem,
    registration_problem,
)
from wsolbench.errors import WsolbenchError
from wsolbench.plugins import hookimpl

#: per-socket-operation timeout while fetching ImageNet weights, so a dead network fails instead of hanging
DOWNLOAD_TIMEOUT_S = 30.0


class GapFcBackbone(CamBackbone):
    """Feature map -> global average pooling -> fc; the CAM is the fc-weighted channel mean."""

    fc: nn.Linear

    def logits(self, feature_map: Tensor) -> Tensor:
        return self.fc(feature_map.mean(dim=(2, 3)))

    def cam(self, feature_map: Tensor, labels: Tensor) -> Tensor:
        weights = self.fc.weight[labels]
        return torch.einsum("bk,bkhw->bhw", weights, feature_map) / feature_map.shape[1]

    @property
    def classifier(self) -> nn.Linear:
        return self.fc


# --- architectures ---------------------------------------------------------------------------------

#: VGG16 taps -> index of the last layer of their stage in torchvision's ``vgg16().features``
_VGG16_TAP_ENDS = {"pool1": 4, "pool2": 9, "pool3": 16, "conv4_3": 22, "pool4": 23, "conv5_3": 29}
_VGG16_POOL4, _VGG16_POOL5 = 23, 30


class VggCam(GapFcBackbone):
    """VGG16-GAP: torchvision's VGG16 convs without pool5 (and pool4 with a large map), conv6 3x3 512->1024
    + ReLU, GAP, fc 1024->C. ``body`` keeps torchvision's layer indices (a removed pool4 is an Identity)."""

    new_layers = ("conv6", "fc")
    reference_split = ParamSplit(boosted=("*",), excluded=("body.*",))
    adl_taps = ("pool3", "conv4_3", "conv5_3")
    split_tap = "conv4_3"

    def __init__(self, num_classes: int, large_feature_map: bool = False):
        super().__init__("vgg16", num_classes, large_feature_map)
        vgg = torchvision_models().vgg
        body = vgg.make_layers(vgg.cfgs["D"])[:_VGG16_POOL5]
        if large_feature_map:
            body[_VGG16_POOL4] = nn.Identity()
        self.body = body
        self.conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=1)
        self.fc = nn.Linear(1024, num_classes)
        _init_wsolevaluation(self, conv_init="he")

    def stages(self) -> list[tuple[str, Stage]]:
        stages, start = [], 0
        for name, end in _VGG16_TAP_ENDS.items():
            if name == "pool4" and self.large_feature_map:
                continue
            stages.append((name, functools.partial(self._body_layers, start, end + 1)))
            start = end + 1
        stages.append(("conv6", self._conv6))
        return stages

    def _body_layers(self, start: int, stop: int, x: Tensor) -> Tensor:
        for index in range(start, stop):
            x = self.body[index](x)
        return x

    def _conv6(self, x: Tensor) -> Tensor:
        return F.relu(self.conv6(x), inplace=True)

    def torchvision_key(self, key: str) -> str | None:
        if key.startswith("classifier."):
            return None
        return "body." + key.removeprefix("features.") if key.startswith("features.") else key


class ResNetCam(GapFcBackbone):
    """torchvision ResNet with layer4 at stride 1 (and layer3 with a large map); GAP + fc -> C."""

    new_layers = ("fc",)
    reference_split = ParamSplit(boosted=("layer4.*", "fc.*"))
    split_tap = "layer4.0"

    def __init__(self, arch: str, num_classes: int, large_feature_map: bool = False):
        super().__init__(arch, num_classes, large_feature_map)
        resnet = getattr(torchvision_models(), arch)(weights=None, num_classes=num_classes)
        _set_stride_one(resnet.layer4[0])
        if large_feature_map:
            _set_stride_one(resnet.layer3[0])
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.fc = resnet.fc
        _init_wsolevaluation(self, conv_init="xavier")

    @property
    def adl_taps(self) -> tuple[str, ...]:
        """layer3.0, layer4.0 and the last block of layer4 (layer4.2 for resnet50, layer4.1 for resnet18)."""
        return ("layer3.0", "layer4.0", f"layer4.{len(self.layer4) - 1}")

    def stages(self) -> list[tuple[str, Stage]]:
        stages: list[tuple[str, Stage]] = [("stem", self._stem)]
        for layer in ("layer1", "layer2", "layer3", "layer4"):
            stages += [(f"{layer}.{i}", block) for i, block in enumerate(getattr(self, layer))]
        return stages

    def _stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def torchvision_key(self, key: str) -> str | None:
        if key.startswith("fc.") and self.num_classes != 1000:
            return None
        return key


class _StrideOneInceptionB(nn.Module):
    """torchvision's InceptionB (Mixed_6a) with its two 3x3 reductions and its max-pool at stride 1,
    padding 1, so it keeps the grid. Holds the original branches, so weight names are unchanged."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.branch3x3 = block.branch3x3
        self.branch3x3dbl_1 = block.branch3x3dbl_1
        self.branch3x3dbl_2 = block.branch3x3dbl_2
        self.branch3x3dbl_3 = block.branch3x3dbl_3
        for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
            conv.stride, conv.padding = (1, 1), (1, 1)

    def forward(self, x: Tensor) -> Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch3x3(x), double, pooled], dim=1)


_INCEPTION_TORCHVISION_STAGES = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                                 "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d")
_INCEPTION_MIXED_6 = ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")


class InceptionCam(CamBackbone):
    """wsolevaluation's InceptionV3 on torchvision's blocks: Conv2d_1a padding 1; stem max-pools 3x3/s2
    padding 1, ceil; an extra 3x3/s2 ceil max-pool after Mixed_5d (not with a large map); Mixed_6a at stride
    1; no Mixed_7, no AuxLogits; head: dropout .5 -> 3x3 conv 768->1024 + ReLU -> dropout -> 3x3 conv
    1024->1024 + ReLU (the feature map) -> dropout -> 1x1 class conv -> GAP. No ``transform_input``.
    The CAM skips the last dropout. wsolevaluation's ADL variant has no head dropout: set the ``p`` of the
    ``nn.Dropout`` modules to 0 to match it."""

    new_layers = ("head_conv1", "head_conv2", "class_conv")
    reference_split = ParamSplit(boosted=("*",), excluded=("Conv2d_*", "Mixed_*"))
    adl_taps = ("Mixed_5d", "Mixed_6e", "head_conv2")
    split_tap = "Mixed_6e"

    def __init__(self, num_classes: int, large_feature_map: bool = False):
        super().__init__("inception_v3", num_classes, large_feature_map)
        inception = torchvision_models().inception_v3(weights=None, aux_logits=False, init_weights=False)
        inception.Conv2d_1a_3x3.conv.padding = (1, 1)
        inception.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        inception.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        inception.Mixed_6a = _StrideOneInceptionB(inception.Mixed_6a)
        for name in _INCEPTION_TORCHVISION_STAGES + _INCEPTION_MIXED_6:
            setattr(self, name, getattr(inception, name))
        if not large_feature_map:
            self.maxpool3 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.head_conv1 = _dropout_conv_relu(768, 1024)
        self.head_conv2 = _dropout_conv_relu(1024, 1024)
        self.head_dropout = nn.Dropout(0.5)
        self.class_conv = nn.Conv2d(1024, num_classes, kernel_size=1)
        _init_wsolevaluation(self, conv_init="xavier")

    def stages(self) -> list[tuple[str, Stage]]:
        names = [*_INCEPTION_TORCHVISION_STAGES, *([] if self.large_feature_map else ["maxpool3"]),
                 *_INCEPTION_MIXED_6, "head_conv1", "head_conv2"]
        return [(name, getattr(self, name)) for name in names]

    def logits(self, feature_map: Tensor) -> Tensor:
        return self.class_conv(self.head_dropout(feature_map)).mean(dim=(2, 3))

    def cam(self, feature_map: Tensor, labels: Tensor) -> Tensor:
        weights = self.class_conv.weight[labels, :, 0, 0]
        bias = self.class_conv.bias[labels]
        return torch.einsum("bk,bkhw->bhw", weights, feature_map) + bias[:, None, None]

    @property
    def classifier(self) -> nn.Conv2d:
        return self.class_conv

    def torchvision_key(self, key: str) -> str | None:
        if key.startswith(("Mixed_7", "AuxLogits.", "fc.")):
            return None
        return key


def _dropout_conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(0.5), nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                         nn.ReLU(inplace=True))


#: blocks of torchvision's ``mobilenet_v2().features`` that MinMaxCAM runs at stride 1 (64- and 160-ch stages)
_MOBILENET_V2_STRIDE_ONE_BLOCKS = (7, 14)


class MobileNetV2Cam(GapFcBackbone):
    """MinMaxCAM's MobileNetV2: torchvision's features with the 64- and 160-channel stages at stride 1 (output
    stride 8, no dilation), the 1280-channel last conv, GAP, fc 1280->C. ``body`` keeps torchvision's indices.
    There is no large-map variant: the map is already 28x28 at 224."""

    new_layers = ("fc",)
    reference_split = ParamSplit(boosted=("fc.*",))
    adl_taps = ("body.7", "body.14", "body.18")
    split_tap = "body.14"

    def __init__(self, num_classes: int, large_feature_map: bool = False):
        if large_feature_map:
            raise WsolbenchError("mobilenet_v2 has no large_feature_map variant: its map is already 28x28 at a "
                                 "224 input (stride 8)")
        super().__init__("mobilenet_v2", num_classes, large_feature_map)
        body = torchvision_models().mobilenet_v2(weights=None).features
        for index in _MOBILENET_V2_STRIDE_ONE_BLOCKS:
            _set_stride_one(body[index])
        self.body = body
        self.fc = nn.Linear(1280, num_classes)
        _init_wsolevaluation(self.fc, conv_init="xavier")

    def stages(self) -> list[tuple[str, Stage]]:
        return [(f"body.{i}", block) for i, block in enumerate(self.body)]

    def torchvision_key(self, key: str) -> str | None:
        if key.startswith("classifier."):
            return None
        return "body." + key.removeprefix("features.") if key.startswith("features.") else key


def _set_stride_one(block: nn.Module) -> None:
    """Turn the stride-2 convs of a downsampling block (main path and shortcut) to stride 1."""
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
    block.stride = 1


def _init_wsolevaluation(model: nn.Module, conv_init: str) -> None:
    """wsolevaluation's initialisation: convs Xavier-uniform or He (fan_out), Linear N(0, 0.01), BN 1/0,
    biases 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if conv_init == "he":
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# --- weights ---------------------------------------------------------------------------------------

_IMAGENET_WEIGHTS = {
    "vgg16": "VGG16_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "inception_v3": "Inception_V3_Weights.IMAGENET1K_V1",
    "mobilenet_v2": "MobileNet_V2_Weights.IMAGENET1K_V1",
}


def _imagenet_state_dict(arch: str) -> dict[str, Tensor]:
    weights = torchvision_models().get_weight(_IMAGENET_WEIGHTS[arch])
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return weights.get_state_dict(progress=False)
    except OSError as error:
        raise WsolbenchError(
            f"cannot fetch the ImageNet weights of {arch} ({weights.url}: {error}); pass --weights PATH "
            "(a torchvision state dict of that file) or --no-pretrained to start from random weights") from error
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise WsolbenchError(f"weights file {path} does not exist")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's input error
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WsolbenchError(f"cannot read weights file {path}: {reason}") from error
    if not isinstance(state_dict, dict) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise WsolbenchError(f"weights file {path} is not a state dict (a dict of names to tensors)")
    return state_dict


def _summary(keys: list[str], limit: int = 4) -> str:
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_torchvision_weights(model: CamBackbone, state_dict: dict[str, Tensor], source: str) -> None:
    """Load a torchvision-format state dict into ``model``, mapping its keys (``torchvision_key``); new layers
    may be absent, anything else unexpected, missing or mis-shaped is a WsolbenchError naming ``source``."""
    mapped = {}
    for key, value in state_dict.items():
        own_key = model.torchvision_key(key)
        if own_key is not None:
            mapped[own_key] = value
    own = model.state_dict()
    fresh = (*model.new_layers, "inserted")
    problems = []
    unexpected = [key for key in mapped if key not in own]
    if unexpected:
        problems.append(f"unexpected keys {_summary(unexpected)}")
    missing = [key for key in own if key not in mapped and key.split(".")[0] not in fresh
               and not key.endswith("num_batches_tracked")]
    if missing:
        problems.append(f"missing keys {_summary(missing)}")
    mis_shaped = [f"{key} {tuple(mapped[key].shape)} vs {tuple(own[key].shape)}"
                  for key in mapped if key in own and mapped[key].shape != own[key].shape]
    if mis_shaped:
        problems.append(f"wrong shapes {_summary(mis_shaped)}")
    if problems:
        raise WsolbenchError(f"{source} does not fit {model.arch}: {'; '.join(problems)}")
    model.load_state_dict(mapped, strict=False)


# --- factories, registry and parameter groups ------------------------------------------------------


def _build(model: CamBackbone, pretrained: bool, weights_path: str | Path | None) -> CamBackbone:
    if weights_path is not None:
        if not pretrained:
            raise WsolbenchError(f"weights file {weights_path} given for a model built from random weights "
                                 "(pretrained=False)")
        path = Path(weights_path)
        load_torchvision_weights(model, _read_state_dict(path), f"weights file {path}")
    elif pretrained:
        load_torchvision_weights(model, _imagenet_state_dict(model.arch), f"torchvision's {model.arch} weights")
    return model


def vgg16(num_classes: int, *, pretrained: bool = True, weights_path: str | Path | None = None,
          large_feature_map: bool = False) -> VggCam:
    """VGG16-GAP (:class:`VggCam`), ImageNet-pretrained unless ``pretrained=False``."""
    return _build(VggCam(num_classes, large_feature_map), pretrained, weights_path)


def resnet50(num_classes: int, *, pretrained: bool = True, weights_path: str | Path | None = None,
             large_feature_map: bool = False) -> ResNetCam:
    """ResNet50 with a stride-1 layer4 (:class:`ResNetCam`)."""
    return _build(ResNetCam("resnet50", num_classes, large_feature_map), pretrained, weights_path)


def resnet18(num_classes: int, *, pretrained: bool = True, weights_path: str | Path | None = None,
             large_feature_map: bool = False) -> ResNetCam:
    """ResNet18 with a stride-1 layer4 (:class:`ResNetCam`)."""
    return _build(ResNetCam("resnet18", num_classes, large_feature_map), pretrained, weights_path)


def inception_v3(num_classes: int, *, pretrained: bool = True, weights_path: str | Path | None = None,
                 large_feature_map: bool = False) -> InceptionCam:
    """wsolevaluation's InceptionV3 (:class:`InceptionCam`)."""
    return _build(InceptionCam(num_classes, large_feature_map), pretrained, weights_path)


def mobilenet_v2(num_classes: int, *, pretrained: bool = True, weights_path: str | Path | None = None,
                 large_feature_map: bool = False) -> MobileNetV2Cam:
    """MinMaxCAM's stride-8 MobileNetV2 (:class:`MobileNetV2Cam`)."""
    return _build(MobileNetV2Cam(num_classes, large_feature_map), pretrained, weights_path)


@hookimpl
def wsolbench_register_backbones(register: Callable[[str, Callable[..., CamBackbone]], None]) -> None:
    """Register the built-in backbones; ``factory(num_classes, pretrained=True, weights_path=None,
    large_feature_map=False)`` returns a :class:`CamBackbone`."""
    for name, factory in (("vgg16", vgg16), ("resnet50", resnet50), ("resnet18", resnet18),
                          ("inception_v3", inception_v3), ("mobilenet_v2", mobilenet_v2)):
        register(name, factory)


def create_backbone(name: str, num_classes: int, **kwargs) -> CamBackbone:
    """Build the backbone registered as ``name`` by any loaded plugin (unknown: an error naming close ones);
    a product that breaks the :class:`CamBackbone` contract is a one-line error naming ``name``."""
    from wsolbench.plugins import registry

    backbones = registry("backbone")
    model = backbones.get(name)(num_classes, **kwargs)
    problem = built_problem(model)
    if problem:
        raise WsolbenchError(f"backbone {name!r} ({backbones.source(name)}) {problem}")
    return model


def _split_named(backbone: CamBackbone, split: ParamSplit) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    base, boosted = [], []
    for name, parameter in backbone.named_parameters():
        (boosted if split.is_boosted(name) else base).append(parameter)
    return base, boosted


def param_groups(backbone: CamBackbone, lr: float, classifier_ratio: float,
                 split: str | ParamSplit = "reference") -> list[dict]:
    """SGD parameter groups ``[{"name": "base", "lr": lr, ...}, {"name": "boosted", "lr": lr * ratio, ...}]``
    (an empty group is left out). ``split`` is ``"reference"`` (the reference code's lr split,
    ``backbone.reference_split``), ``"new_layers"`` (``backbone.new_layers_split``) or a :class:`ParamSplit`."""
    if split == "reference":
        split = backbone.reference_split
    elif split == "new_layers":
        split = backbone.new_layers_split
    elif not isinstance(split, ParamSplit):
        raise WsolbenchError(f"unknown parameter split {split!r}; use 'reference', 'new_layers' or a ParamSplit")
    base, boosted = _split_named(backbone, split)
    groups = [{"name": "base", "params": base, "lr": lr},
              {"name": "boosted", "params": boosted, "lr": lr * classifier_ratio}]
    return [group for group in groups if group["params"]]

