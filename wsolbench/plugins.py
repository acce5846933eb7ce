"""Plugin manager: loads the ``wsolbench`` entry-point group and fills the registries.

Environment switch: ``WSOLBENCH_LOAD_PLUGINS`` unset loads every installed plugin; a comma-separated list
loads only those entry-point names; an empty value loads none (the way out of a broken plugin). Either way
the core plugins (:data:`CORE_PLUGINS`: the protocol's metrics, wsolbench's own module) are always loaded,
since no run can be scored without them. A name in the list that matches no installed entry point is one
warning line on stderr naming it and the closest installed name. A plugin that fails to import is reported
in one line on stderr naming it, and the others keep working.

Registration hooks fill the name registries (:data:`REGISTRATION_HOOKS`; :func:`new_registry` builds each
empty, with its kind's check from :data:`REGISTRY_CHECKS`: backbones, the CamBackbone contract) and, through
``wsolbench_register_protocol_files``, the list of protocol-file folders (:attr:`LoadedPlugins.protocol_folders`,
read by :mod:`wsolbench.protocol_files`).
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pluggy

from wsolbench import hookspecs
from wsolbench.errors import WsolbenchError
from wsolbench.registry import Registry

ENTRY_POINT_GROUP = "wsolbench"
LOAD_PLUGINS_ENV = "WSOLBENCH_LOAD_PLUGINS"
#: entry point name -> module of the plugins loaded whatever WSOLBENCH_LOAD_PLUGINS says (even empty)
CORE_PLUGINS = {"metrics": "wsolbench.metrics.builtin"}
PROTOCOL_FILES_HOOK = "wsolbench_register_protocol_files"
hookimpl = pluggy.HookimplMarker("wsolbench")

#: registry kind -> the registration hook that fills it
REGISTRATION_HOOKS = {
    "dataset": "wsolbench_register_datasets",
    "backbone": "wsolbench_register_backbones",
    "method": "wsolbench_register_methods",
    "metric": "wsolbench_register_metrics",
}


def _backbone_registration_problem(factory) -> str | None:
    from wsolbench.backbone_contract import registration_problem  # torch: only once a backbone is registered

    return registration_problem(factory)


#: registry kind -> the check its registry runs on every registered object (the other kinds have none)
REGISTRY_CHECKS: dict[str, Callable[[object], str | None]] = {"backbone": _backbone_registration_problem}


def new_registry(kind: str) -> Registry:
    """An empty registry of ``kind`` with that kind's check from :data:`REGISTRY_CHECKS` (if any)."""
    return Registry(kind, check=REGISTRY_CHECKS.get(kind))


@dataclass
class PluginInfo:
    """What one loaded plugin module is and what it registered."""

    name: str
    distribution: str
    version: str
    registered: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class PluginFailure:
    """An entry point that failed to load: its name, distribution and the error, in one line."""

    name: str
    distribution: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.distribution}) failed to load: {self.error}"


@dataclass
class LoadedPlugins:
    """The plugin manager, the filled registries, and per-plugin details for ``wsolbench plugins``."""

    manager: pluggy.PluginManager
    registries: dict[str, Registry]
    plugins: list[PluginInfo]
    failures: list[PluginFailure]
    #: (owner, folder) for each ``register(folder)`` of ``wsolbench_register_protocol_files``, in call order;
    #: owner is ``"<distribution> (plugin '<name>')"``
    protocol_folders: list[tuple[str, object]] = field(default_factory=list)


def _is_core(entry_point) -> bool:
    """wsolbench's own core entry point (matched by name and module, so a plugin cannot pose as one)."""
    return CORE_PLUGINS.get(entry_point.name, "") == getattr(entry_point, "value", None)


def _selected_entry_points() -> list:
    """The entry points to load: all when WSOLBENCH_LOAD_PLUGINS is unset, else those named plus the core
    ones; a name matching no installed entry point is a warning line naming the closest one."""
    wanted = os.environ.get(LOAD_PLUGINS_ENV)
    installed = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    if wanted is None:
        return installed
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    known = sorted({entry_point.name for entry_point in installed})
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"installed: {', '.join(known) or 'none'}"
            print(f"wsolbench: warning: {LOAD_PLUGINS_ENV} names {name!r}, which matches no installed plugin; "
                  f"{hint}", file=sys.stderr)
    return [entry_point for entry_point in installed if entry_point.name in names or _is_core(entry_point)]


def _protocol_files_register(folders: list, info: PluginInfo, owner: str):
    """The ``register(folder)`` handed to one plugin's ``wsolbench_register_protocol_files``."""

    def register(folder):
        """``register(folder)``: a path or an ``importlib.resources`` Traversable laid out like ``protocols/``."""
        if isinstance(folder, (str, os.PathLike)):
            folder = Path(folder)
        if not (hasattr(folder, "iterdir") and hasattr(folder, "is_dir")) or not folder.is_dir():
            raise WsolbenchError(f"{owner} registered protocol files at {folder!r}, which is not a folder")
        folders.append((owner, folder))
        info.registered.setdefault("protocol_files", []).append(str(folder))

    return register


def load_plugins() -> LoadedPlugins:
    """Load the selected entry points, check hook names, and run every registration hook."""
    manager = pluggy.PluginManager("wsolbench")
    manager.add_hookspecs(hookspecs)
    infos: dict[int, PluginInfo] = {}
    failures = []
    for entry_point in _selected_entry_points():
        dist = entry_point.dist
        dist_name, version = (dist.name, dist.version) if dist else ("?", "?")
        try:
            module = entry_point.load()
            manager.register(module, name=entry_point.name)
        except Exception as error:  # noqa: BLE001 - any import failure is reported, not fatal
            failures.append(PluginFailure(entry_point.name, dist_name,
                                          " ".join(f"{type(error).__name__}: {error}".split())))
            continue
        infos[id(module)] = PluginInfo(entry_point.name, dist_name, version)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        name = infos[id(error.plugin)].name if id(error.plugin) in infos else error.plugin
        raise WsolbenchError(f"plugin {name!r} implements an unknown hook: {error}") from None

    registries = {kind: new_registry(kind) for kind in REGISTRATION_HOOKS}
    for kind, hook_name in REGISTRATION_HOOKS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            info = infos[id(impl.plugin)]
            source = f"{info.distribution} (plugin {info.name!r})"

            def register(*args, _kind=kind, _info=info, _source=source):
                """``register(name, obj)``, or ``register(obj)`` for an object with a ``name``."""
                name, obj = args if len(args) == 2 else (getattr(args[0], "name", None), args[0])
                registries[_kind].register(name, obj, _source)
                _info.registered.setdefault(_kind, []).append(name)

            impl.function(register=register)
    protocol_folders: list = []
    for impl in getattr(manager.hook, PROTOCOL_FILES_HOOK).get_hookimpls():
        info = infos[id(impl.plugin)]
        impl.function(register=_protocol_files_register(protocol_folders, info,
                                                        f"{info.distribution} (plugin {info.name!r})"))
    for failure in failures:
        print(f"wsolbench: warning: {failure}", file=sys.stderr)
    return LoadedPlugins(manager, registries, list(infos.values()), failures, protocol_folders)


@functools.lru_cache(maxsize=None)
def plugins() -> LoadedPlugins:
    """The process-wide loaded plugins (loaded on first use)."""
    return load_plugins()


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (``"dataset"``, ...), filled by every loaded plugin."""
    return plugins().registries[kind]
