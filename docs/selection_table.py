"""Which epoch each checkpoint-selection criterion chooses, and the test score of that choice.

    python docs/selection_table.py runs/weightmap-seed0-fullsup runs/weightmap-seed0-s ...

Each argument is a finished run's ``--out`` folder. Runs of one method and seed that differ only in their
selection (``eval_checkpoint=best`` with the protocol's metric, or ``--set selection=box_mass``) train the
same model (same seed, deterministic on the CPU): the script checks that their train-fullsup histories agree,
then prints, per run, the criterion, the epoch it chose, the train-fullsup MaxBoxAccV2 and S of that epoch
and the test scores (evaluated once per run, on that choice: reported, never used to choose), and the mean
± std over seeds per method and criterion, as Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def _record(folder: str) -> dict:
    return json.loads((Path(folder) / "record.json").read_text(encoding="utf-8"))


def _training(record: dict) -> list:
    """The parts of the history that training decides (the selection does not change them)."""
    return [{k: v for k, v in row.items() if k not in ("metadata",)} for row in record["history"]]


def _mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    runs = [(folder, _record(folder)) for folder in parser.parse_args().runs]

    by_training = defaultdict(list)
    for folder, record in runs:
        by_training[(record["method"], record["seed"])].append((folder, record))
    for (method, seed), group in by_training.items():
        reference = _training(group[0][1])
        for folder, record in group[1:]:
            if _training(record) != reference:
                raise SystemExit(f"{folder}: its training history differs from {group[0][0]}'s (method {method}, "
                                 f"seed {seed}); the comparison needs the same training")

    print("| method | seed | selection | epoch | train-fullsup MaxBoxAccV2 | S | test MaxBoxAccV2 | test Top-1 Loc |")
    print("|---|---|---|---|---|---|---|---|")
    summary = defaultdict(list)
    for folder, record in sorted(runs, key=lambda r: (r[1]["method"], r[1]["seed"],
                                                      r[1]["selected"]["criterion"])):
        selected = record["selected"]
        row = next(h for h in record["history"] if h["epoch"] == selected["epoch"])
        test = record["scores"]["test"]
        box_mass = row.get("criteria", {}).get("box_mass")
        criterion = selected["criterion"].split(" on ")[0]
        print(f"| {record['config']['method']} | {record['seed']} | {criterion} | {selected['epoch']} | "
              f"{row['maxboxacc_v2']:.1f} | {'' if box_mass is None else f'{box_mass:.3f}'} | "
              f"{test['maxboxacc_v2']:.1f} | {test['top1_loc']:.1f} |")
        summary[(record["method"], criterion)].append(test["maxboxacc_v2"])
    print()
    print("| method | selection | seeds | test MaxBoxAccV2 |")
    print("|---|---|---|---|")
    for (method, criterion), values in sorted(summary.items()):
        print(f"| {method} | {criterion} | {len(values)} | {_mean_std(values)} |")


if __name__ == "__main__":
    main()
