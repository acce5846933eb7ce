"""The short public import surface: every name in ``wsolbench.__all__`` is the object its defining module
documents, and importing the package alone does not import torch."""

import subprocess
import sys

import pytest

import wsolbench


@pytest.mark.parametrize("name", sorted(set(wsolbench.__all__) - {"__version__"}))
def test_public_names_are_the_documented_objects(name):
    import importlib

    module = importlib.import_module(wsolbench._EXPORTS[name])
    assert getattr(wsolbench, name) is getattr(module, name)


def test_the_old_import_paths_still_work():
    from wsolbench.method import Method, Prediction, StepOutput  # noqa: F401
    from wsolbench.plugins import hookimpl  # noqa: F401
    from wsolbench import Method as Public

    assert Public is Method


def test_importing_wsolbench_does_not_import_torch():
    code = "import sys, wsolbench; wsolbench.WsolbenchError; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Methd'"):
        wsolbench.Methd  # noqa: B018
