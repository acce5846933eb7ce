"""User-facing errors.

Anything raised as a :class:`WsolbenchError` is bad input or a bad setting, not a bug: the CLI prints its
message as one line (``wsolbench: error: <message>``) and exits non-zero, without a traceback. Messages
name the file, line or image id at fault.
"""


class WsolbenchError(Exception):
    """Bad input or configuration, reported to the user in one line."""


class MetadataError(WsolbenchError):
    """A metadata file of the wsolevaluation layout is missing or malformed."""


class ScoremapError(WsolbenchError):
    """A score map file is missing, unreadable or invalid."""
