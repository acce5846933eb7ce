"""wsolbench: the pluggable benchmark harness for weakly supervised object localization."""

__version__ = "0.1.0"
