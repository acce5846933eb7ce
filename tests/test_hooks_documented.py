"""docs/hooks.md keeps up with the code (datasette's meta-tests): every hookspec has a docstring with a
``:param:`` line per argument and a heading in docs/hooks.md with its exact argument list; so has every
public method of the Method base class; and no heading documents a hook that does not exist."""

import inspect
import re
from pathlib import Path

import pytest

from wsolbench import hookspecs
from wsolbench.method import Method

HOOKS_MD = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"
HOOKSPECS = {name: function for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(function, "wsolbench_spec")}
METHOD_API = {name for name, member in vars(Method).items()
              if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, classmethod))}


def signature(name: str, function) -> str:
    """``name(arg, ...)``: the argument names, without ``self``/``cls``, annotations or defaults."""
    parameters = [p for p in inspect.signature(function).parameters if p not in ("self", "cls")]
    return f"{name}({', '.join(parameters)})"


def headings() -> list[str]:
    """The text of every Markdown heading of docs/hooks.md, backquotes removed."""
    return [line.lstrip("#").strip().strip("`") for line in HOOKS_MD.read_text(encoding="utf-8").splitlines()
            if re.match(r"#{1,6} ", line)]


def test_the_hook_and_method_lists_are_not_empty():
    assert "wsolbench_register_methods" in HOOKSPECS and "training_step" in METHOD_API


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_hookspec_has_a_docstring_with_a_param_line_per_argument(name):
    function = HOOKSPECS[name]
    assert name.startswith("wsolbench_"), f"hook {name} lacks the wsolbench_ prefix"
    doc = inspect.getdoc(function) or ""
    assert doc.strip(), f"hookspec {name} has no docstring"
    for argument in inspect.signature(function).parameters:
        assert f":param {argument}:" in doc, f"hookspec {name}'s docstring has no ':param {argument}:' line"


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_hook_has_a_heading_with_its_signature_in_docs_hooks_md(name):
    expected = signature(name, HOOKSPECS[name])
    assert expected in headings(), f"docs/hooks.md has no heading `{expected}`"


@pytest.mark.parametrize("name", sorted(METHOD_API))
def test_method_api_has_a_heading_with_its_signature_in_docs_hooks_md(name):
    expected = signature(f"Method.{name}", getattr(Method, name))
    assert expected in headings(), f"docs/hooks.md has no heading `{expected}`"


def test_every_documented_hook_or_method_exists_with_that_signature():
    documented = {signature(name, f) for name, f in HOOKSPECS.items()}
    documented |= {signature(f"Method.{name}", getattr(Method, name)) for name in METHOD_API}
    stale = [h for h in headings() if re.fullmatch(r"(wsolbench_\w+|Method\.\w+)\(.*\)", h) and h not in documented]
    assert not stale, f"docs/hooks.md documents what the code does not have: {stale}"
