"""Install in-memory plugin modules as if they came through the ``wsolbench`` entry-point group."""

from __future__ import annotations

import importlib.metadata
import types

from wsolbench import plugins


def fake_entry_point(name: str, load, distribution: str = "toy-dist", version: str = "1.2.3"):
    """An entry point named ``name`` of ``distribution`` whose ``load()`` is ``load``."""
    dist = types.SimpleNamespace(name=distribution, version=version)
    return types.SimpleNamespace(name=name, dist=dist, load=load)


def method_plugin(*method_classes) -> types.ModuleType:
    """A plugin module whose registration hook calls ``register(cls)`` for each class."""
    module = types.ModuleType("toy_plugin")

    @plugins.hookimpl
    def wsolbench_register_methods(register):
        for cls in method_classes:
            register(cls)

    module.wsolbench_register_methods = wsolbench_register_methods
    return module


def add_entry_points(monkeypatch, *extra) -> None:
    """Make the entry-point group hold the installed entry points plus ``extra``, and make
    ``plugins.plugins()`` load afresh on each call (so the CLI sees them)."""
    monkeypatch.delenv(plugins.LOAD_PLUGINS_ENV, raising=False)
    installed = list(importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP))
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group: installed + list(extra))
    monkeypatch.setattr(plugins, "plugins", plugins.load_plugins)
