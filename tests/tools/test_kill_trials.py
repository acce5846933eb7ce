"""kill -9 at three points of a run, then --resume: the record equals the uninterrupted run's (slow).

docs/RELIABILITY.md has the full table (``python tools/kill_trials.py``, twelve points).
"""

import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "kill_trials.py"


@pytest.mark.slow
def test_a_run_killed_at_three_points_resumes_to_the_uninterrupted_record(tmp_path):
    spec = importlib.util.spec_from_file_location("kill_trials", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    points = [("best.pt", 0.0), ("last.pt 1", 0.3), ("first test map", 0.0)]
    wall, trials = module.trials(points, epochs=2, folder=tmp_path, echo=lambda line: None)
    assert [trial.resume_exit for trial in trials] == [0, 0, 0]
    assert all(trial.equal for trial in trials), module.markdown(wall, trials)
