"""Registries and the plugin loader."""

import importlib.metadata
import types

import pytest

from wsolbench import plugins
from wsolbench.errors import WsolbenchError
from wsolbench.registry import DuplicateNameError, Registry, UnknownNameError


def test_registry_rejects_duplicates_naming_both_sources():
    registry = Registry("method")
    registry.register("cam", object(), "wsolbench 0.1.0")
    with pytest.raises(DuplicateNameError, match="'cam' is registered twice: by wsolbench 0.1.0 and by other-pkg"):
        registry.register("cam", object(), "other-pkg")


def test_registry_lookup_patterns_and_suggestions():
    registry = Registry("backbone")
    for name in ("resnet18", "resnet50", "vgg16"):
        registry.register(name, name, "x")
    assert registry.names("resnet*") == ["resnet18", "resnet50"]
    with pytest.raises(UnknownNameError, match="did you mean resnet50"):
        registry.get("resnet5")
    with pytest.raises(WsolbenchError, match="invalid name"):
        registry.register("", 1, "x")


def test_builtin_plugins_load_through_entry_points():
    loaded = plugins.load_plugins()
    assert {"synthetic", "cub", "imagenet", "openimages"} <= set(loaded.registries["dataset"].names())
    assert "vgg16" in loaded.registries["backbone"]
    assert loaded.registries["dataset"].source("cub").startswith("wsolbench (plugin 'datasets')")


def test_empty_switch_loads_no_plugin(monkeypatch):
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "")
    loaded = plugins.load_plugins()
    assert len(loaded.registries["dataset"]) == 0 and not loaded.plugins


def _fake_entry_point(name, target):
    dist = types.SimpleNamespace(name="broken-plugin", version="9.9")
    return types.SimpleNamespace(name=name, dist=dist, load=target)


def test_a_plugin_that_fails_to_import_is_reported_and_the_rest_keep_working(monkeypatch, capsys):
    real = list(importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP))

    def boom():
        raise ImportError("No module named 'missing_dependency'")

    monkeypatch.setattr(plugins.importlib.metadata, "entry_points",
                        lambda group: real + [_fake_entry_point("broken", boom)])
    loaded = plugins.load_plugins()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["wsolbench: warning: plugin 'broken' (broken-plugin) failed to load: ImportError: "
                   "No module named 'missing_dependency'"]
    assert "synthetic" in loaded.registries["dataset"]


def test_a_misspelled_hook_fails_at_start_up(monkeypatch):
    module = types.ModuleType("typo_plugin")
    module.wsolbench_register_dataset = plugins.hookimpl(lambda register: None)  # missing "s"
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points",
                        lambda group: [_fake_entry_point("typo", lambda: module)])
    with pytest.raises(WsolbenchError, match="plugin 'typo' implements an unknown hook.*wsolbench_register_dataset"):
        plugins.load_plugins()
