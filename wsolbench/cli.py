"""The ``wsolbench`` command line (click).

Commands live in their own modules and are added here; a :class:`~wsolbench.errors.WsolbenchError`
raised anywhere becomes one ``wsolbench: error: ...`` line on stderr and exit status 2 (``wsolbench --debug``
shows its traceback instead).
"""

from __future__ import annotations

import sys

import click

from wsolbench import __version__
from wsolbench.data.commands import data
from wsolbench.errors import WsolbenchError
from wsolbench.evaluate_command import evaluate
from wsolbench.leaderboard_command import leaderboard
from wsolbench.plugin_commands import COMMANDS as PLUGIN_COMMANDS
from wsolbench.report_command import report
from wsolbench.run_command import run


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WsolbenchError as error:
            if ctx.meta.get(DEBUG):
                raise
            click.echo(f"wsolbench: error: {error}", err=True)
            sys.exit(2)


DEBUG = "wsolbench.debug"


def _debug(ctx, param, value):
    ctx.meta[DEBUG] = value


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="wsolbench")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_debug,
              help="Show the traceback of an error instead of its one line.")
def cli():
    """Benchmark harness for weakly supervised object localization (WSOL)."""


for _command in (evaluate, run, data, leaderboard, report, *PLUGIN_COMMANDS):
    cli.add_command(_command)


def main():
    cli(prog_name="wsolbench")
