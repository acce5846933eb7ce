"""Click helpers shared by commands."""

from __future__ import annotations

import click


class ManyValuesOption(click.Option):
    """An option that takes every following value up to the next option: ``--iou-thresholds 30 50 70``.

    Click options have a fixed number of values; this one consumes the remaining arguments that do not
    start with ``-`` (click's parser state is used as click 8.1-8.5 lay it out; the tests pin the usage).
    """

    def add_to_parser(self, parser, ctx):
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            parser_option = parser._long_opt.get(name) or parser._short_opt.get(name)
            original = parser_option.process

            def process(value, state, _original=original):
                values = [value]
                while state.rargs and not state.rargs[0].startswith("-"):
                    values.append(state.rargs.pop(0))
                _original(tuple(values), state)

            parser_option.process = process
