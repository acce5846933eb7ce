"""Seconds for ``wsolbench leaderboard`` to read N run records and render them, in one run.

Writes N copies of a real record (``results/synthetic/cam-seed0/record.json``, with its full per-epoch
history) into a temporary runs folder, as N runs of 50 methods x 100 seeds, then times the command's work
(find, read and check every record, build the rows beside the published ones, render) and reading and
parsing alone with the same parser (orjson), its floor. The goal: 5,000 records in under 2 s.

    python bench/bench_leaderboard.py --records 5000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import orjson

from wsolbench.leaderboard.formats import render
from wsolbench.leaderboard.records import find_record_files, load_records
from wsolbench.leaderboard.table import published_rows, reproduced_rows, select_rows

TEMPLATE = Path(__file__).resolve().parents[1] / "results" / "synthetic" / "cam-seed0" / "record.json"


def write_runs(folder: Path, count: int) -> None:
    record = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    for index in range(count):
        record.update(method=f"method{index % 50}", seed=index // 50)
        path = folder / f"run{index}" / "record.json"
        path.parent.mkdir()
        path.write_text(json.dumps(record, indent=2), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_runs(folder, args.records)
        size = sum(p.stat().st_size for p in folder.rglob("record.json"))
        start = time.perf_counter()
        for path in find_record_files([folder]):
            orjson.loads(path.read_bytes())
        parse_only = time.perf_counter() - start
        start = time.perf_counter()
        records = [record for _, record in load_records([folder], warn=print)]
        rows = select_rows(reproduced_rows(records), published_rows(), show_all=True)
        text = render(rows, "github")
        total = time.perf_counter() - start
    print(f"{args.records} records ({size / 2**20:.1f} MiB), {len(rows)} rows, {len(text.splitlines())} lines")
    print(f"leaderboard: {total:.2f} s ({args.records / total:,.0f} records/s); JSON parsing alone: "
          f"{parse_only:.2f} s; ratio {total / parse_only:.2f}x the parsing floor")


if __name__ == "__main__":
    main()
