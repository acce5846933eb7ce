"""The example third-party plugin (examples/wsolbench-hide-center), pip-installed into a private folder:
wsolbench finds it through its entry point, names its distribution, hides it when WSOLBENCH_LOAD_PLUGINS
leaves it out, and the example's own tests (wsolbench.testing.check_method among them) pass."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wsolbench.plugins import LOAD_PLUGINS_ENV

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wsolbench-hide-center"


def _pip_install(source: Path, target: Path) -> None:
    """``pip install --no-deps --target``: offline with the setuptools at hand if it can build wheels,
    else with build isolation (which fetches setuptools from the index)."""
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    env = {**os.environ, "PIP_FIND_LINKS": ""}
    failures = []
    for extra in (["--no-build-isolation"], []):
        result = subprocess.run([*base, *extra, str(source)], env=env, capture_output=True, text=True, timeout=300)
        if result.returncode == 0:
            return
        shutil.rmtree(target, ignore_errors=True)
        failures.append(f"pip install {' '.join(extra)}:\n{result.stderr[-2000:]}")
    pytest.fail("cannot install the example plugin\n" + "\n".join(failures))


def test_example_plugin_installed_with_pip(tmp_path):
    # One test, so that the package is installed once even when pytest-xdist spreads tests over workers.
    source = shutil.copytree(EXAMPLE, tmp_path / "source")  # pip builds in the tree: keep the checkout clean
    target = tmp_path / "site"
    _pip_install(source, target)

    def run(*args, **env):
        """``python *args`` seeing the installed example (PYTHONPATH), started outside both source trees."""
        environ = {k: v for k, v in os.environ.items() if k != LOAD_PLUGINS_ENV and not k.startswith("PYTEST_")}
        environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])),
                       WSOLBENCH_CACHE=str(tmp_path / "cache"), **env)
        result = subprocess.run([sys.executable, *args], cwd=tmp_path, env=environ, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    methods = {m["name"]: m for m in json.loads(run("-m", "wsolbench", "methods", "--json"))}
    assert {"cam", "hide_center"} <= set(methods)
    hide = methods["hide_center"]
    assert (hide["distribution"], hide["version"], hide["plugin"]) == ("wsolbench-hide-center", "0.1.0", "hide_center")
    assert hide["hparams"] == {"p": 0.5, "size": 0.25}
    assert hide["class"] == "wsolbench_hide_center.HideCenter"

    only_cam = json.loads(run("-m", "wsolbench", "methods", "--json", **{LOAD_PLUGINS_ENV: "cam"}))
    assert [m["name"] for m in only_cam] == ["cam"]

    # the example's own tests, wsolbench.testing.check_method among them, against the installed module
    where = run("-c", "import wsolbench_hide_center as m; print(m.__file__)")
    assert Path(where.strip()).parent == target
    assert " passed" in run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests"))
