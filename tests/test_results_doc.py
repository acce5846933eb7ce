"""The leaderboards of docs/RESULTS.md and README.md are what ``wsolbench leaderboard`` renders from the
records committed under results/ (so that the pages can never drift from their records)."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsolbench.cli import cli

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- rendered by: (?P<command>wsolbench leaderboard [^>]*?) -->\n(?P<table>.*?)\n<!-- end -->",
                   re.DOTALL)


@pytest.mark.parametrize("page", ["docs/RESULTS.md", "README.md"])
def test_every_rendered_block_matches_the_command_it_names(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = list(BLOCK.finditer(text))
    assert blocks, f"{page} has no block rendered by wsolbench leaderboard"
    for block in blocks:
        arguments = block["command"].split()[1:]
        result = CliRunner().invoke(cli, [arguments[0], *(str(ROOT / a) if a.startswith("results/") else a
                                                          for a in arguments[1:])])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == block["table"].strip(), block["command"]
