"""Load: 8 writers rewrite their records in one runs folder while the leaderboard reads it (issue 13).

Every read while they write must parse every record it finds (nothing torn), and at the end every writer's
last record is there (nothing lost). The slow variant does the same with 8 real ``wsolbench run`` processes.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsolbench.cli import cli
from wsolbench.leaderboard.records import load_records
from wsolbench.results import read_record

WRITERS, REWRITES = 8, 40
TEMPLATE = Path(__file__).parents[1] / "results" / "synthetic" / "cam-seed0" / "record.json"


def test_eight_writers_and_a_reader_lose_and_tear_nothing(tmp_path):
    runs = tmp_path / "runs"
    writer = textwrap.dedent(f"""
        import sys
        from wsolbench.results import read_record, write_record
        record, index = read_record({str(TEMPLATE)!r}), int(sys.argv[1])
        for rewrite in range({REWRITES}):
            record.update(seed=index, wall_time_s=float(rewrite))
            write_record({str(runs)!r} + f"/run{{index}}/record.json", record)
    """)
    processes = [subprocess.Popen([sys.executable, "-c", writer, str(i)]) for i in range(WRITERS)]
    warnings, reads = [], 0
    while any(p.poll() is None for p in processes):
        load_records([runs] if runs.exists() else [], warnings.append)
        reads += 1
    assert [p.returncode for p in processes] == [0] * WRITERS
    assert warnings == [] and reads > 1
    final = {path.parent.name: record for path, record in load_records([runs], warnings.append)}
    assert sorted(final) == sorted(f"run{i}" for i in range(WRITERS))
    assert all(final[f"run{i}"]["seed"] == i and final[f"run{i}"]["wall_time_s"] == REWRITES - 1
               for i in range(WRITERS))
    assert [p.name for p in runs.rglob("*") if p.is_file() and p.name != "record.json"] == []  # no temporaries


@pytest.mark.slow
def test_eight_runs_at_once_into_one_runs_folder_while_the_leaderboard_reads_it(tmp_path):
    from wsolbench.data.synthetic import SynthParams, generate

    root = generate(tmp_path / "synth", SynthParams(variant="boxes", classes=2, train_per_class=2, val_per_class=1,
                                                     test_per_class=2, image_size=32, seed=2))
    runs = tmp_path / "runs"
    runs_processes = [subprocess.Popen(
        [sys.executable, "-m", "wsolbench", "run", "--method", "center", "--dataset", "synthetic", "--root",
         str(root), "--device", "cpu", "--seed", str(seed), "--set", "image_size=32", "batch_size=2",
         "--out", str(runs / f"center-seed{seed}")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for seed in range(WRITERS)]
    tables = 0
    while any(p.poll() is None for p in runs_processes):
        if runs.exists():
            result = CliRunner().invoke(cli, ["leaderboard", str(runs), "--all", "--no-published", "--format", "json"])
            assert result.exit_code == 0 and "skipping" not in result.stderr, result.output
            tables += 1
    assert [p.returncode for p in runs_processes] == [0] * WRITERS, [p.stderr.read() for p in runs_processes]
    seeds = sorted(read_record(runs / f"center-seed{seed}" / "record.json")["seed"] for seed in range(WRITERS))
    assert seeds == list(range(WRITERS)) and tables > 0
    result = CliRunner().invoke(cli, ["leaderboard", str(runs), "--all", "--no-published", "--format", "json"])
    assert result.exit_code == 0
    assert [row["seeds"] for row in json.loads(result.stdout)["rows"]] == [list(range(WRITERS))]
