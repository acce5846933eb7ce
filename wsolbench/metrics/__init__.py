"""WSOL metrics: pure functions (:mod:`.functional`) and stateful accumulators."""
