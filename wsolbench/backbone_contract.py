"""The contract every CAM-ready backbone implements, and the checks that enforce it (no architectures).

This module holds :class:`CamBackbone` (whose class docstring is the contract a backbone plugin
implements: what a subclass must define, what it may), :class:`BackboneOutput` (what ``forward`` returns
with features or taps, registered as a pytree node), :class:`ParamSplit` (a learning-rate split), the
names of the required and optional class attributes (:data:`REQUIRED_ATTRIBUTES`,
:data:`OPTIONAL_ATTRIBUTES`) and the checks: a concrete subclass lacking a required attribute fails when
it is defined; :func:`registration_problem` is the check the backbone registry runs on every registered
object (:mod:`wsolbench.plugins` gives it to that registry); :func:`built_problem` is what
:func:`wsolbench.backbones.create_backbone` runs on what a factory function builds.

The architectures, weights loading, the built-in registration hook, ``create_backbone`` and
``param_groups`` live in :mod:`wsolbench.backbones`, which re-exports every name of this module:
``from wsolbench.backbones import CamBackbone`` is the documented path, and the error messages name it.
This module uses torch but imports nothing of wsolbench except :mod:`wsolbench.errors`, so that the
plugin loader and the registry can use it without an import circle.

- ``features(x)`` is the map the CAM is read from, (B, K, h, w); ``logits(feature_map)`` the class scores;
  ``forward(x) == logits(features(x))``. ``forward(x, with_features=True, taps=(...))`` returns a
  :class:`BackboneOutput` (logits, feature map, the asked taps' activations) from the same single pass:
  the way a method gets features through ``DistributedDataParallel``, whose only door is ``forward``.
- ``cam(feature_map, labels)`` is the class activation map (B, h, w) of each image's label.
- ``taps`` names, in forward order, the points whose activation a module can be inserted after
  (``insert_after``); the last tap is the feature map itself. ``adl_taps`` and ``split_tap`` are optional,
  and reading one a backbone does not define is a one-line error.
"""

from __future__ import annotations

import abc
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Callable, Sequence

from torch import Tensor, nn

from wsolbench.errors import WsolbenchError

#: one step of a backbone's forward pass (see :meth:`CamBackbone.stages`)
Stage = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class ParamSplit:
    """Parameters trained at ``lr * classifier_ratio``: names matching a ``boosted`` fnmatch pattern and no
    ``excluded`` one (names relative to the backbone, e.g. ``layer4.0.conv1.weight``)."""

    boosted: tuple[str, ...]
    excluded: tuple[str, ...] = ()

    def is_boosted(self, name: str) -> bool:
        def matches(patterns):
            return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

        return matches(self.boosted) and not matches(self.excluded)


@dataclass
class BackboneOutput:
    """What ``CamBackbone.forward(x, with_features=True)`` (or with ``taps``) returns, from one pass:
    ``logits`` (B, C) ``== backbone.logits(features)``; ``features`` the feature map ``features(x)``;
    ``taps`` the activation at each asked tap name, after any module inserted there (``forward_to``).
    Registered as a pytree node where torch allows, so DDP and ``torch.compile`` see its tensors."""

    logits: Tensor
    features: Tensor
    taps: dict[str, Tensor] = field(default_factory=dict)


def _register_pytree_node(cls: type) -> None:
    from torch.utils import _pytree  # DDP and torch.compile flatten outputs with it

    register = getattr(_pytree, "register_dataclass", None)  # torch >= 2.2
    if register is not None:
        register(cls)


_register_pytree_node(BackboneOutput)


class _Optional:
    """An optional class attribute of :class:`CamBackbone`: reading it on a backbone whose class (or
    instance) does not set it is a one-line :class:`WsolbenchError` naming the backbone and who needs it."""

    def __init__(self, needed_by: str):
        self.needed_by = needed_by

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, backbone, owner=None):
        if backbone is None:
            return self
        raise WsolbenchError(f"backbone {getattr(backbone, 'arch', '?')!r} ({type(backbone).__name__}) defines no "
                             f"{self.name}, which {self.needed_by} need: set it on the class")


#: class attributes every concrete :class:`CamBackbone` sets (checked when the class is defined)
REQUIRED_ATTRIBUTES = ("new_layers", "reference_split")
#: class attributes a :class:`CamBackbone` may set; methods that need one fail clearly when it is absent
OPTIONAL_ATTRIBUTES = ("adl_taps", "split_tap")


class CamBackbone(nn.Module, abc.ABC):
    """A classification network whose CAM can be read from ``features(x)``; see the module docstring.

    The contract of a backbone plugin. A concrete subclass must define:

    - the abstract methods ``stages()`` (the forward pass up to the feature map as ordered ``(tap name,
      stage)`` pairs), ``logits(feature_map)``, ``cam(feature_map, labels)``, the ``classifier`` property
      and ``torchvision_key(key)`` (return None for every key when there are no torchvision weights);
    - the class attributes ``new_layers`` (tuple of top-level submodule names the ImageNet weights do not
      cover; the ``"new_layers"`` lr split boosts them) and ``reference_split`` (a :class:`ParamSplit`:
      the reference code's lr split, the default of :func:`wsolbench.backbones.param_groups`).

    It may define ``adl_taps`` (three tap names: where ADL inserts its drop masks) and ``split_tap`` (one
    tap name: where the feature-direction alignment method erases); methods that insert modules read
    them, and reading one a backbone lacks raises a one-line :class:`WsolbenchError`. Each of the four may
    be a plain class attribute or a property (for values that depend on the instance, as ResNet's
    ``adl_taps``). ``__init__`` must call ``super().__init__(arch, num_classes, large_feature_map)``.

    A concrete subclass missing a required attribute fails when the class is defined; a class registered
    through ``wsolbench_register_backbones`` that leaves an abstract method undefined fails at
    registration; :func:`wsolbench.backbones.create_backbone` checks what a factory function returns (a
    CamBackbone whose attributes have the right types and name existing taps).
    """

    new_layers: tuple[str, ...]
    reference_split: ParamSplit
    adl_taps: tuple[str, ...] = _Optional("ADL-style methods (modules inserted at three taps)")
    split_tap: str = _Optional("feature-erasing methods such as align")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not _abstract_names(cls):
            problem = _class_problem(cls)
            if problem:
                raise WsolbenchError(problem)

    def __init__(self, arch: str, num_classes: int, large_feature_map: bool):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise WsolbenchError(f"{arch}: num_classes must be a positive integer, got {num_classes!r}")
        self.arch = arch
        self.num_classes = num_classes
        self.large_feature_map = large_feature_map
        self.inserted = nn.ModuleDict()

    # --- what each architecture defines -------------------------------------------------------------

    @abc.abstractmethod
    def stages(self) -> list[tuple[str, Stage]]:
        """The forward pass up to the feature map as ordered ``(tap name, stage)`` pairs."""

    @abc.abstractmethod
    def logits(self, feature_map: Tensor) -> Tensor:
        """Class scores (B, C) from ``features(x)``."""

    @abc.abstractmethod
    def cam(self, feature_map: Tensor, labels: Tensor) -> Tensor:
        """The class activation map (B, h, w) of class ``labels[b]`` for each image b."""

    @property
    @abc.abstractmethod
    def classifier(self) -> nn.Module:
        """The layer holding the per-class weights the CAM uses (fc, or inception's 1x1 class conv)."""

    @abc.abstractmethod
    def torchvision_key(self, key: str) -> str | None:
        """This model's name for a key of the torchvision ImageNet state dict, or None to drop it."""

    # --- shared behaviour --------------------------------------------------------------------------

    @property
    def taps(self) -> list[str]:
        """Names of the insertion points, in forward order; the last one is the feature map."""
        return [name for name, _ in self.stages()]

    @property
    def new_layers_split(self) -> ParamSplit:
        """The split that boosts only the layers torchvision's weights do not cover (and inserted modules)."""
        return ParamSplit(tuple(f"{name}.*" for name in (*self.new_layers, "inserted")))

    def insert_after(self, tap: str, module: nn.Module) -> None:
        """Apply ``module`` to the activation at ``tap`` in every forward; one module per tap."""
        self._check_tap(tap)
        key = _module_key(tap)
        if key in self.inserted:
            raise WsolbenchError(f"{self.arch}: tap {tap!r} already holds {type(self.inserted[key]).__name__}; "
                                 "insert one nn.Sequential holding both")
        self.inserted[key] = module

    def features(self, x: Tensor) -> Tensor:
        """The feature map (B, K, h, w) the CAM is read from, inserted modules applied."""
        return self._run(x)

    def forward_to(self, x: Tensor, tap: str) -> Tensor:
        """The activation at ``tap`` (after any module inserted there)."""
        self._check_tap(tap)
        return self._run(x, until=tap)

    def forward_from(self, activation: Tensor, tap: str) -> Tensor:
        """The feature map computed from an activation at ``tap``: ``forward_from(forward_to(x, t), t) ==
        features(x)``."""
        self._check_tap(tap)
        return self._run(activation, after=tap)

    def forward(self, x: Tensor, *, with_features: bool = False, taps: Sequence[str] = ()) -> Tensor | BackboneOutput:
        """The logits ``logits(features(x))``; with ``with_features`` or ``taps``, a :class:`BackboneOutput`
        holding the logits, the feature map and the activation at each tap of ``taps`` (one pass)."""
        if not with_features and not taps:
            return self.logits(self.features(x))
        if isinstance(taps, str):
            raise WsolbenchError(f"{self.arch}: taps must be a sequence of tap names, not the string {taps!r}")
        for tap in taps:
            self._check_tap(tap)
        captured: dict[str, Tensor] = {}
        feature_map = self._run(x, capture=frozenset(taps), captured=captured)
        return BackboneOutput(self.logits(feature_map), feature_map, {tap: captured[tap] for tap in taps})

    def _run(self, x: Tensor, after: str | None = None, until: str | None = None,
             capture: frozenset[str] = frozenset(), captured: dict[str, Tensor] | None = None) -> Tensor:
        running = after is None
        for name, stage in self.stages():
            if not running:
                running = name == after
                continue
            x = stage(x)
            key = _module_key(name)
            if key in self.inserted:
                x = self.inserted[key](x)
            if name in capture:
                captured[name] = x
            if name == until:
                break
        return x

    def _check_tap(self, tap: str) -> None:
        if tap not in self.taps:
            raise WsolbenchError(f"{self.arch} has no tap {tap!r}; taps: {', '.join(self.taps)}")


def _module_key(tap: str) -> str:
    return tap.replace(".", "_")


# --- the contract's checks --------------------------------------------------------------------------


def _abstract_names(cls: type) -> list[str]:
    """The abstract methods ``cls`` leaves undefined (as ``abc`` computes them, usable before it does)."""
    names = {name for name, value in vars(cls).items() if getattr(value, "__isabstractmethod__", False)}
    for base in cls.__mro__[1:]:
        for name in getattr(base, "__abstractmethods__", ()):
            if getattr(getattr(cls, name, None), "__isabstractmethod__", False):
                names.add(name)
    return sorted(names)


def _is_str_tuple(value) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(item, str) for item in value)


#: attribute -> (accepts the value, what it should be)
_ATTRIBUTE_TYPES = {
    "new_layers": (_is_str_tuple, "a tuple of submodule names"),
    "reference_split": (lambda value: isinstance(value, ParamSplit), "a ParamSplit"),
    "adl_taps": (_is_str_tuple, "a tuple of tap names"),
    "split_tap": (lambda value: isinstance(value, str), "a tap name"),
}


def _attribute_problems(owner, names) -> list[str]:
    """Wrong-typed ones among ``names`` on a class or instance (properties on a class are not evaluated)."""
    problems = []
    for name in names:
        value = inspect.getattr_static(owner, name, None)
        if isinstance(value, _Optional) or (isinstance(owner, type) and isinstance(value, property)):
            continue
        value = getattr(owner, name)
        accepts, expected = _ATTRIBUTE_TYPES[name]
        if not accepts(value):
            problems.append(f"{name} must be {expected}, got {value!r}")
    return problems


def _class_problem(cls: type) -> str | None:
    """Why the concrete subclass ``cls`` breaks the :class:`CamBackbone` contract, in one line, or None."""
    missing = [name for name in REQUIRED_ATTRIBUTES if not hasattr(cls, name)]
    if missing:
        return (f"backbone class {cls.__qualname__} does not define {', '.join(missing)} (required class "
                f"attributes of wsolbench.backbones.CamBackbone; see its docstring)")
    problems = _attribute_problems(cls, (*REQUIRED_ATTRIBUTES, *OPTIONAL_ATTRIBUTES))
    return f"backbone class {cls.__qualname__}: {'; '.join(problems)}" if problems else None


def registration_problem(factory) -> str | None:
    """Why ``factory`` cannot be registered as a backbone, in one line, or None. A class must be a complete
    :class:`CamBackbone` subclass; any other callable is checked on what it builds (:func:`built_problem`, when
    :func:`wsolbench.backbones.create_backbone` calls it)."""
    if isinstance(factory, type):
        if not issubclass(factory, CamBackbone):
            return f"class {factory.__qualname__} is not a subclass of wsolbench.backbones.CamBackbone"
        abstract = _abstract_names(factory)
        if abstract:
            return (f"backbone class {factory.__qualname__} does not define {', '.join(abstract)} "
                    "(abstract methods of wsolbench.backbones.CamBackbone)")
        return _class_problem(factory)
    if not callable(factory):
        return f"{factory!r} is neither a CamBackbone subclass nor a factory function"
    return None


def built_problem(model) -> str | None:
    """Why a factory's product breaks the contract, in one line, or None (run by
    :func:`wsolbench.backbones.create_backbone`)."""
    if not isinstance(model, CamBackbone):
        return f"built {type(model).__name__}, which is not a wsolbench.backbones.CamBackbone"
    problems = _attribute_problems(model, (*REQUIRED_ATTRIBUTES, *OPTIONAL_ATTRIBUTES))
    taps = model.taps
    for name in OPTIONAL_ATTRIBUTES:
        if problems or isinstance(inspect.getattr_static(model, name, None), _Optional):
            continue
        value = getattr(model, name)
        unknown = [tap for tap in ((value,) if isinstance(value, str) else value) if tap not in taps]
        if unknown:
            problems.append(f"{name} names no tap: {', '.join(map(repr, unknown))} (taps: {', '.join(taps)})")
    return f"built {type(model).__qualname__}: {'; '.join(problems)}" if problems else None
