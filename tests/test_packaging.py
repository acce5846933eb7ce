"""pyproject.toml ships what the code needs: every package under wsolbench/ is listed (the list is explicit
because the protocol files live outside wsolbench/), and the top-level protocols/ folder is the package
wsolbench.protocols with its TOML files."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_under_wsolbench_is_listed():
    on_disk = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "wsolbench").rglob("*.py")
               if "__pycache__" not in path.parts}
    assert on_disk - set(SETUPTOOLS["packages"]) == set()


def test_the_protocols_folder_ships_as_wsolbench_protocols():
    assert "wsolbench.protocols" in SETUPTOOLS["packages"]
    assert SETUPTOOLS["package-dir"]["wsolbench.protocols"] == "protocols"
    assert SETUPTOOLS["package-data"]["wsolbench.protocols"] == ["**/*.toml"]
    assert (REPO / "protocols" / "__init__.py").is_file()
    assert sorted(p.name for p in (REPO / "protocols").iterdir() if (p / "protocol.toml").is_file()) == \
        ["wsolevaluation"]
