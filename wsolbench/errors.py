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


class MethodContractError(WsolbenchError):
    """A method plugin broke the Method contract (docs/hooks.md): a bug in the plugin, reported in one line
    naming the method and the call (``wsolbench.testing.check_method`` turns it into an AssertionError)."""
