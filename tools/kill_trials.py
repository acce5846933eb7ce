"""Kill -9 trials: a run killed at any point and resumed ends with the record of the uninterrupted run.

The tool writes a tiny synthetic dataset and runs ``wsolbench run`` once uninterrupted (the reference).
Then, for each kill point, it starts the same command, watches its run folder and sends SIGKILL a set delay
after an event (the process started; the folder's lock appeared; ``best.pt`` after the epoch-0 evaluation;
the N-th ``last.pt``, one per epoch; the first kept test map; ``class_scores.npz``), notes what the kill left
(the epoch of ``last.pt`` and ``best.pt``, kept score maps, temporaries, whether the record exists), runs the
command again (with ``--resume`` when a run folder exists) and compares the final record with the
reference: the selected epoch, the train-fullsup and test scores and the whole history (losses included)
must be equal, the kept score maps bit for bit. The run selects the best epoch and keeps its test maps
(``--save-scoremaps``), so that every file a run writes is in play. It prints a Markdown table
(docs/RELIABILITY.md) and exits 1 when any trial differs.

Usage::

    python tools/kill_trials.py [--epochs 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

COMPARED = ("selected", "scores", "history")


@dataclass
class Trial:
    """One kill: when, what it left behind, and whether the resumed record matched."""

    point: str
    left: str
    resume_exit: int
    equal: bool


#: (event, seconds after it) of the default trials, for ``epochs`` >= 4
POINTS = [("started", 0.5), ("started", 3.0), ("locked", 0.0), ("best.pt", 0.0), ("best.pt", 0.4),
          ("last.pt 1", 0.0), ("last.pt 1", 0.4), ("last.pt 2", 0.2), ("last.pt 3", 0.0), ("last.pt 4", 0.0),
          ("first test map", 0.0), ("class_scores.npz", 0.0)]


def command(root: Path, out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "wsolbench", "run", "--method", "cam", "--dataset", "synthetic", "--root",
            str(root), "--device", "cpu", "--seed", "3", "--out", str(out), "--save-scoremaps",
            "--set", f"epochs={epochs}", "image_size=32", "batch_size=4", "lr=0.01", "eval_checkpoint=best"]


def dataset(folder: Path) -> Path:
    from wsolbench.data.synthetic import SynthParams, generate

    return generate(folder / "synth", SynthParams(variant="boxes", classes=2, train_per_class=6, val_per_class=2,
                                                  test_per_class=3, image_size=32, seed=4))


def _epoch(path: Path) -> str:
    import torch

    if not path.is_file():
        return "none"
    return str(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def left_behind(out: Path) -> str:
    """What a killed run left in ``out``, in words."""
    from wsolbench.atomic import is_temporary

    if not out.exists():
        return "nothing (killed before the run folder was made)"
    if (out / "record.json").exists():
        return "finished (record written)"
    checkpoints = out / "checkpoints"
    maps = len(list((out / "scoremaps").glob("*.npy"))) if (out / "scoremaps").is_dir() else 0
    temporaries = sum(1 for p in out.rglob("*") if p.is_file() and is_temporary(p))
    parts = [f"last.pt: epoch {_epoch(checkpoints / 'last.pt')}", f"best.pt: epoch {_epoch(checkpoints / 'best.pt')}"]
    if maps:
        parts.append(f"{maps} test maps")
    if temporaries:
        parts.append(f"{temporaries} temporary file(s)")
    return ", ".join(parts)


def _maps_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((out / "scoremaps").glob("*.npy")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _outcome(out: Path) -> tuple:
    record = json.loads((out / "record.json").read_text())
    return tuple(json.dumps(record[key], sort_keys=True) for key in COMPARED) + (_maps_digest(out),)


def _happened(event: str, out: Path, replaced: list) -> bool:
    """Whether ``event`` has happened in the run folder ``out``; ``replaced`` lists last.pt's inodes as they
    change (each epoch renames a new file over it)."""
    if event == "started":
        return True
    if event == "locked":
        return (out / ".wsolbench.lock").exists()
    if event.startswith("last.pt"):
        try:
            inode = (out / "checkpoints" / "last.pt").stat().st_ino
        except FileNotFoundError:
            return False
        if not replaced or replaced[-1] != inode:
            replaced.append(inode)
        return len(replaced) >= int(event.split()[1])
    if event == "first test map":
        return (out / "scoremaps").is_dir() and any((out / "scoremaps").iterdir())
    return (out / ("checkpoints/best.pt" if event == "best.pt" else event)).exists()


def kill_after(process: subprocess.Popen, event: str, delay: float, out: Path) -> None:
    """SIGKILL ``process`` ``delay`` seconds after ``event`` (polled every 2 ms), or when it ends first."""
    replaced: list = []
    while not _happened(event, out, replaced) and process.poll() is None:
        time.sleep(0.002)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()


def trials(points: list[tuple[str, float]], epochs: int, folder: Path, echo=print) -> tuple[float, list[Trial]]:
    """Run the reference and one trial per kill point ``(event, delay)``; return its wall time and them."""
    root = dataset(folder)
    env = {**os.environ, "WSOLBENCH_CACHE": str(folder / "cache")}
    started = time.perf_counter()
    subprocess.run(command(root, folder / "reference", epochs), env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    reference = _outcome(folder / "reference")
    echo(f"reference run: {wall:.1f} s")
    results = []
    for index, (event, delay) in enumerate(points):
        out = folder / f"trial{index}"
        process = subprocess.Popen(command(root, out, epochs), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        kill_after(process, event, delay, out)
        left = left_behind(out)
        if left.startswith("finished"):
            resume_exit = 0
        else:
            again = command(root, out, epochs) + ([] if left.startswith("nothing") else ["--resume"])
            resume_exit = subprocess.run(again, env=env, capture_output=True).returncode
        equal = resume_exit == 0 and _outcome(out) == reference
        point = f"{delay:g} s after {event}" if delay else f"at {event}"
        results.append(Trial(point, left, resume_exit, equal))
        echo(f"kill {point}: {left}; resumed exit {resume_exit}, {'equal' if equal else 'DIFFERENT'}")
    return wall, results


def markdown(wall: float, results: list[Trial]) -> str:
    lines = [f"Reference run: {wall:.1f} s.", "",
             "| # | kill at | what the kill left | resume | record vs uninterrupted |",
             "|---|---|---|---|---|"]
    for index, trial in enumerate(results, 1):
        lines.append(f"| {index} | {trial.point} | {trial.left} | exit {trial.resume_exit} | "
                     f"{'equal' if trial.equal else '**different**'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="at least 4 (the kill points name epochs 1-4)")
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one, deleted)")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="kill-trials-"))
    try:
        wall, results = trials(POINTS, args.epochs, folder)
    finally:
        if args.out is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(markdown(wall, results))
    return 0 if all(trial.equal for trial in results) else 1


if __name__ == "__main__":
    sys.exit(main())
