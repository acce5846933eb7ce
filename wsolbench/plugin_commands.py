"""``wsolbench plugins | methods | backbones | datasets``: what the loaded plugins provide.

``plugins`` prints JSON (each loaded entry point: distribution, version, implemented hooks and the names it
registered; a plugin that failed to import appears with its ``error``). The listings take an fnmatch
PATTERN (``wsolbench methods "c*"``) and ``--json``, and name the distribution behind every entry, so a
leaderboard name can be traced to the package and version that defines it.
"""

from __future__ import annotations

import dataclasses
import json
import re

import click
from tabulate import tabulate

from wsolbench import plugins as plugin_loader
from wsolbench.plugins import REGISTRATION_HOOKS, LoadedPlugins, PluginInfo

_PATTERN = click.argument("pattern", default="*")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")


def _first_line(docstring: str | None) -> str:
    """A docstring's first line without reST markup (``:class:`X``` -> X, double backquotes dropped)."""
    line = (docstring or "").strip().split("\n", 1)[0].strip()
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", line).replace("``", "")


def _origins(loaded: LoadedPlugins, kind: str) -> dict[str, PluginInfo]:
    """Registered name -> the plugin that registered it, for one registry kind."""
    return {name: info for info in loaded.plugins for name in info.registered.get(kind, [])}


def _entries(kind: str, pattern: str, describe) -> list[dict]:
    """One dict per registered ``kind`` matching ``pattern``: its name, ``describe(obj)`` and its origin."""
    loaded = plugin_loader.plugins()
    registry, origins = loaded.registries[kind], _origins(loaded, kind)
    entries = []
    for name in registry.names(pattern):
        origin = origins[name]
        entries.append({"name": name, **describe(registry.get(name)), "distribution": origin.distribution,
                        "version": origin.version, "plugin": origin.name})
    return entries


def _show(kind: str, pattern: str, entries: list[dict], table: dict, as_json: bool) -> None:
    """Print ``entries`` as JSON, or as a table (``table``: header -> cell function of an entry); a pattern
    that matches nothing is said on stderr."""
    if as_json:
        click.echo(json.dumps(entries, indent=2, default=repr))
        return
    if not entries:
        known = ", ".join(plugin_loader.registry(kind).names()) or "none"
        click.echo(f"wsolbench: no {kind} matches {pattern!r} (known: {known})", err=True)
        return
    rows = [[cell(entry) for cell in table.values()] for entry in entries]
    click.echo(tabulate(rows, headers=list(table), tablefmt="simple"))


def _source(entry: dict) -> str:
    return f"{entry['distribution']} {entry['version']}"


def _field(key: str):
    return lambda entry: entry[key]


@click.command("plugins")
def plugins_command():
    """Print the loaded plugins as JSON: entry point, distribution, version, hooks and registered names."""
    loaded = plugin_loader.plugins()
    listing = []
    for info in sorted(loaded.plugins, key=lambda info: info.name):
        callers = loaded.manager.get_hookcallers(loaded.manager.get_plugin(info.name)) or []
        listing.append({"name": info.name, "distribution": info.distribution, "version": info.version,
                        "hooks": sorted(caller.name for caller in callers),
                        "registers": {kind: sorted(info.registered.get(kind, [])) for kind in REGISTRATION_HOOKS}})
    listing += [{"name": failure.name, "distribution": failure.distribution, "error": failure.error}
                for failure in loaded.failures]
    click.echo(json.dumps(listing, indent=2))


def _hparam_defaults(method_class) -> dict:
    """The default of every field of ``method_class.Hparams`` (``"<required>"`` where it has none)."""
    defaults = {}
    for hparam in dataclasses.fields(method_class.Hparams):
        if hparam.default is not dataclasses.MISSING:
            defaults[hparam.name] = hparam.default
        elif hparam.default_factory is not dataclasses.MISSING:
            defaults[hparam.name] = hparam.default_factory()
        else:
            defaults[hparam.name] = "<required>"
    return defaults


def _describe_method(method_class) -> dict:
    return {"paper": method_class.paper, "hparams": _hparam_defaults(method_class),
            "class": f"{method_class.__module__}.{method_class.__qualname__}"}


@click.command("methods")
@_PATTERN
@_JSON
def methods_command(pattern, as_json):
    """List the registered WSOL methods matching PATTERN (fnmatch, e.g. "c*"): paper, source distribution
    and hyperparameters with their defaults."""
    entries = _entries("method", pattern, _describe_method)
    _show("method", pattern, entries, {
        "name": _field("name"), "paper": _field("paper"), "distribution": _source,
        "hyperparameters (defaults)": lambda e: ", ".join(f"{k}={v!r}" for k, v in e["hparams"].items()) or "-",
    }, as_json)


@click.command("backbones")
@_PATTERN
@_JSON
def backbones_command(pattern, as_json):
    """List the registered CAM-ready backbones matching PATTERN (fnmatch, e.g. "resnet*")."""
    entries = _entries("backbone", pattern, lambda factory: {"description": _first_line(factory.__doc__)})
    _show("backbone", pattern, entries,
          {"name": _field("name"), "distribution": _source, "description": _field("description")}, as_json)


def _describe_dataset(spec) -> dict:
    return {"folder": spec.folder, "classes": spec.num_classes, "annotation": spec.annotation,
            "description": spec.description, "split_sizes": dict(spec.split_sizes)}


@click.command("datasets")
@_PATTERN
@_JSON
def datasets_command(pattern, as_json):
    """List the registered datasets matching PATTERN (fnmatch, e.g. "syn*"): metadata folder, number of
    classes, localization annotation and description."""
    entries = _entries("dataset", pattern, _describe_dataset)
    _show("dataset", pattern, entries, {
        "name": _field("name"), "folder": _field("folder"), "classes": _field("classes"),
        "annotation": _field("annotation"), "distribution": _source, "description": _field("description"),
    }, as_json)


COMMANDS = (plugins_command, methods_command, backbones_command, datasets_command)
