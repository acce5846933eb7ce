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


def test_empty_switch_loads_only_the_core_metrics(monkeypatch):
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "")
    loaded = plugins.load_plugins()
    assert [(info.name, info.distribution) for info in loaded.plugins] == [("metrics", "wsolbench")]
    assert len(loaded.registries["dataset"]) == 0 and len(loaded.registries["method"]) == 0
    assert {"box_accuracy", "pxap"} <= set(loaded.registries["metric"].names())


def test_the_protocol_metrics_load_whatever_the_switch_selects(monkeypatch, capsys):
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "cam,datasets,backbones")  # the README's example
    loaded = plugins.load_plugins()
    assert {info.name for info in loaded.plugins} == {"cam", "datasets", "backbones", "metrics"}
    assert {"box_accuracy", "pxap"} <= set(loaded.registries["metric"].names())
    assert capsys.readouterr().err == ""


def test_a_plugin_named_like_a_core_one_is_not_core(monkeypatch):
    from fake_plugins import fake_entry_point, method_plugin

    real = list(importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP))
    impostor = fake_entry_point("metrics", lambda: method_plugin(), distribution="other-dist")
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group: [*real, impostor])
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "")
    assert [(info.name, info.distribution) for info in plugins.load_plugins().plugins] == [("metrics", "wsolbench")]


def test_a_switch_name_matching_no_plugin_is_one_warning_line_with_the_closest(monkeypatch, capsys):
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "cam, datasts,zzzzzzzz")
    loaded = plugins.load_plugins()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("wsolbench: warning: WSOLBENCH_LOAD_PLUGINS names 'datasts', which matches no installed "
                      "plugin; did you mean 'datasets'?")
    prefix = ("wsolbench: warning: WSOLBENCH_LOAD_PLUGINS names 'zzzzzzzz', which matches no installed plugin; "
              "installed: ")
    assert err[1].startswith(prefix)
    assert {"backbones", "cam", "datasets", "metrics"} <= set(err[1][len(prefix):].split(", "))
    assert len(err) == 2
    assert {info.name for info in loaded.plugins} == {"cam", "metrics"}


def test_protocol_files_folders_are_collected_with_their_plugin(monkeypatch, tmp_path):
    from fake_plugins import fake_entry_point

    module = types.ModuleType("files_plugin")
    module.wsolbench_register_protocol_files = plugins.hookimpl(lambda register: register(tmp_path))
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points",
                        lambda group: [fake_entry_point("files", lambda: module)])
    loaded = plugins.load_plugins()
    assert loaded.protocol_folders == [("toy-dist (plugin 'files')", tmp_path)]
    assert loaded.plugins[0].registered == {"protocol_files": [str(tmp_path)]}


def test_registering_protocol_files_that_are_no_folder_is_an_error_naming_the_plugin(monkeypatch, tmp_path):
    from fake_plugins import fake_entry_point

    module = types.ModuleType("files_plugin")
    missing = tmp_path / "missing"
    module.wsolbench_register_protocol_files = plugins.hookimpl(lambda register: register(str(missing)))
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points",
                        lambda group: [fake_entry_point("files", lambda: module)])
    with pytest.raises(WsolbenchError) as error:
        plugins.load_plugins()
    assert str(error.value) == \
        f"toy-dist (plugin 'files') registered protocol files at {missing!r}, which is not a folder"


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
