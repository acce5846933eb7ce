"""Interrupt a training run in the middle, as a kill would, for resume tests."""

import pytest

from wsolbench.engine import fit


class Interrupted(Exception):
    """Raised where the run is killed."""


def run_killed_at(method_class, epoch: int, monkeypatch, **run) -> None:
    """``fit.run(**run)`` with ``method_class.on_train_epoch_start`` raising at ``epoch`` (1-based); before
    then it does what it always does."""
    original = method_class.on_train_epoch_start

    def crash(self, model, current):
        if current == epoch:
            raise Interrupted
        original(self, model, current)

    with monkeypatch.context() as patch:
        patch.setattr(method_class, "on_train_epoch_start", crash)
        with pytest.raises(Interrupted):
            fit.run(**run)
