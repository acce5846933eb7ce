"""The ``wsolbench`` command line (click).

Commands live in their own modules and are added here; a :class:`~wsolbench.errors.WsolbenchError`
raised anywhere becomes one ``wsolbench: error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import sys

import click

from wsolbench import __version__
from wsolbench.errors import WsolbenchError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WsolbenchError as error:
            click.echo(f"wsolbench: error: {error}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="wsolbench")
def cli():
    """Benchmark harness for weakly supervised object localization (WSOL)."""


def _add_commands():
    from wsolbench.data.commands import data

    cli.add_command(data)


_add_commands()


def main():
    cli(prog_name="wsolbench")
