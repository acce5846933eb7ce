"""The caches repair themselves: a damaged decoded entry is rebuilt and a damaged synthetic dataset generated
again (each with one warning line), the temporaries of killed writers are deleted while live writers' are
kept, and processes building the same entry at once all succeed. Expectations are decoded here with PIL
or built in a separate clean folder."""

import multiprocessing
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from wsolbench.atomic import remove_stale_temporaries, temporary_path
from wsolbench.data import pipeline, synthetic
from wsolbench.data.cache import cache_root
from wsolbench.data.datasets import open_dataset
from wsolbench.data.pipeline import decoded_images, decoded_masks
from wsolbench.data.synthetic import PARAMS_FILE, SynthParams, cached, dataset_problem, generate

TIMEOUT = 120


def by_hand(dataset, size):
    """The split's images decoded and resized (PIL bilinear) here, as uint8 ``(N, 3, size, size)``."""
    rows = []
    for index in range(len(dataset)):
        with Image.open(dataset.image_path(index)) as image:
            rows.append(np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR)).transpose(2, 0, 1))
    return np.stack(rows)


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def only_entry():
    entries = list((cache_root() / "decoded").glob("*.npy"))
    assert len(entries) == 1, entries
    return entries[0]


FORK = multiprocessing.get_context("fork")  # children inherit the imported modules: they start at once


def in_child(target, *args):
    """Run ``target(*args)`` in a forked child process; return it (started)."""
    child = FORK.Process(target=target, args=args)
    child.start()
    return child


def succeeded(child):
    child.join(TIMEOUT)
    return child.exitcode == 0


def killed(child, ready):
    """Kill ``child`` with SIGKILL once it has set ``ready``, and reap it (so its pid is gone)."""
    assert ready.wait(TIMEOUT)
    child.kill()
    child.join(TIMEOUT)


def truncate_to_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "truncated to half": truncate_to_half,
    "zero bytes": lambda path: path.write_bytes(b""),
    "garbage of the same length": lambda path: path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size)),
    "a byte appended": lambda path: path.write_bytes(path.read_bytes() + b"\0"),
    "another shape": lambda path: np.save(path, np.load(path)[:1]),
    "another dtype": lambda path: np.save(path, np.load(path).astype(np.int16)),
    "Fortran order, same size": lambda path: np.save(path, np.asfortranarray(np.load(path))),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_image_entry_is_rebuilt_with_one_warning_line(tiny_boxes_root, capsys, damage):
    dataset = open_dataset("synthetic", tiny_boxes_root, "test", image_size=32)
    decoded_images(dataset, 32)
    assert capsys.readouterr().err == ""  # built without a warning: it was absent
    entry = only_entry()
    DAMAGES[damage](entry)
    rebuilt = decoded_images(dataset, 32)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsolbench: warning: the decoded cache entry {entry} ")
    assert err.endswith("; rebuilding it\n")
    expected = by_hand(dataset, 32)
    np.testing.assert_array_equal(rebuilt, expected)
    np.testing.assert_array_equal(np.load(entry), expected)
    np.testing.assert_array_equal(decoded_images(dataset, 32), expected)
    assert capsys.readouterr().err == "" and only_entry() == entry


def test_a_truncated_mask_entry_is_rebuilt_like_a_clean_cache_builds_it(tiny_masks_root, tmp_path, capsys):
    dataset = open_dataset("synthetic-masks", tiny_masks_root, "test", image_size=32)
    decoded_masks(dataset)
    truncate_to_half(only_entry())
    rebuilt = decoded_masks(dataset)
    assert "rebuilding it" in capsys.readouterr().err
    clean = decoded_masks(dataset, cache_dir=tmp_path / "clean")
    assert rebuilt.shape == (4, 224, 224)
    np.testing.assert_array_equal(rebuilt, clean)


def sleeping_writer(path, ready, done):
    temporary_path(path).write_bytes(b"half-written")
    ready.set()
    done.wait(TIMEOUT)


def stalled_fill(root, ready):
    def stall(image, size):
        ready.set()
        time.sleep(TIMEOUT)

    pipeline.resize_image = stall
    decoded_images(open_dataset("synthetic", root, "test", image_size=32), 32, workers=1)


def test_a_fill_killed_midway_leaves_a_temporary_that_the_next_use_deletes_and_live_ones_are_kept(
        tiny_boxes_root, capsys):
    ready = FORK.Event()
    killed(in_child(stalled_fill, tiny_boxes_root, ready), ready)  # killed while decoding a row
    decoded = cache_root() / "decoded"
    dead = list(decoded.glob(".*.tmp"))
    assert len(dead) == 1 and not list(decoded.glob("*.npy"))
    ours = temporary_path(decoded / "other.npy")
    ours.write_bytes(b"being written")
    ready, done = FORK.Event(), FORK.Event()
    sleeping = in_child(sleeping_writer, decoded / "another.npy", ready, done)
    try:
        assert ready.wait(TIMEOUT)
        dataset = open_dataset("synthetic", tiny_boxes_root, "test", image_size=32)
        np.testing.assert_array_equal(decoded_images(dataset, 32), by_hand(dataset, 32))
        assert capsys.readouterr().err == ""  # the entry was absent, not damaged
        left = sorted(p.name for p in decoded.glob(".*.tmp"))
        assert not dead[0].exists() and ours.exists()
        assert len(left) == 2 and ours.name in left and any(name.startswith(".another.npy.") for name in left)
    finally:
        done.set()
        assert succeeded(sleeping)


def written_by(pid, path):
    """The temporary name of ``path`` that process ``pid`` of this host would use."""
    tmp = temporary_path(path)
    return tmp.with_name(tmp.name.replace(f".{os.getpid()}-", f".{pid}-", 1))


def test_remove_stale_temporaries_deletes_dead_writers_files_and_folders(tmp_path):
    exited = in_child(int)
    assert succeeded(exited)
    dead_pid = exited.pid
    folder = tmp_path / "cache"
    live_file, dead_file = temporary_path(folder / "a.npy"), written_by(dead_pid, folder / "b.npy")
    dead_folder, nested = written_by(dead_pid, folder / "dataset"), written_by(dead_pid, folder / "sub" / "c.npy")
    (dead_folder / "images").mkdir(parents=True)
    nested.parent.mkdir()
    for path in (live_file, dead_file, nested, dead_folder / "images" / "0.png"):
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(folder, recursive=False)) == sorted([dead_file, dead_folder])
    assert live_file.exists() and nested.exists()
    assert remove_stale_temporaries(folder) == [nested]
    assert remove_stale_temporaries(folder, locked=True) == [live_file]
    assert sorted(p.name for p in folder.rglob("*")) == ["sub"]


BREAKAGES = {
    "an image deleted": lambda root: next(root.rglob("*.png")).unlink(),
    "a metadata file truncated": lambda root: truncate_to_half(root / "metadata/SYNTHETIC/test/image_ids.txt"),
    "its parameters file deleted": lambda root: (root / PARAMS_FILE).unlink(),
    "its parameters file garbled": lambda root: (root / PARAMS_FILE).write_text("{"),
    "its dataset folder deleted": lambda root: shutil.rmtree(root / "dataset"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_damaged_synthetic_dataset_is_generated_again_with_one_warning_line(tiny_params, tmp_path, capsys,
                                                                                breakage):
    params = SynthParams(**tiny_params)
    root = cached(params)
    assert capsys.readouterr().err == "" and dataset_problem(root, params) is None
    BREAKAGES[breakage](root)
    problem = dataset_problem(root, params)
    assert problem is not None
    assert cached(params) == root
    err = capsys.readouterr().err
    assert err == (f"wsolbench: warning: the cached synthetic dataset {root} is incomplete or damaged ({problem}); "
                   "generating it again\n")
    assert tree(root) == tree(generate(tmp_path / "fresh", params))
    assert sorted(p.name for p in root.parent.iterdir()) == sorted([root.name, f".{root.name}.lock"])


def stalled_generation(params, ready):
    save, saved = synthetic._save_png, []

    def stall(path, array):
        save(path, array)
        saved.append(path)
        if len(saved) == 3:
            ready.set()
            time.sleep(TIMEOUT)

    synthetic._save_png = stall
    cached(params)


def test_a_generation_killed_midway_is_cleaned_up_and_done_again(tiny_params, tmp_path, capsys):
    params = SynthParams(**tiny_params)
    ready = FORK.Event()
    killed(in_child(stalled_generation, params, ready), ready)  # killed after writing 3 images
    folder = cache_root() / "synthetic"
    root = folder / params.digest()
    assert not root.exists() and len(list(folder.glob(".*.tmp"))) == 1
    assert cached(params) == root
    assert capsys.readouterr().err == ""  # nothing was there to repair
    assert tree(root) == tree(generate(tmp_path / "fresh", params))
    assert not list(folder.glob(".*.tmp"))


def counted(module, name, builds):
    """Make ``module.name`` (a builder) count its calls in the shared ``builds`` and take 0.2 s longer,
    so that builders not taking turns would overlap."""
    build = getattr(module, name)

    def slow_build(*args):
        with builds.get_lock():
            builds.value += 1
        time.sleep(0.2)
        build(*args)

    setattr(module, name, slow_build)


def fill_at_once(barrier, builds, root, out):
    counted(pipeline, "_fill", builds)
    dataset = open_dataset("synthetic", root, "train", image_size=32)
    barrier.wait(TIMEOUT)
    np.save(out, decoded_images(dataset, 37, workers=1))


def test_two_processes_filling_one_entry_at_once_both_succeed_and_one_fills_it(tiny_boxes_root, tmp_path):
    barrier, builds = FORK.Barrier(2), FORK.Value("i", 0)
    children = [in_child(fill_at_once, barrier, builds, tiny_boxes_root, tmp_path / f"seen{k}.npy")
                for k in range(2)]
    assert all([succeeded(child) for child in children]) and builds.value == 1
    expected = by_hand(open_dataset("synthetic", tiny_boxes_root, "train", image_size=32), 37)
    for k in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"seen{k}.npy"), expected)
    np.testing.assert_array_equal(np.load(only_entry()), expected)
    assert not list((cache_root() / "decoded").glob(".*.tmp"))


def generate_at_once(barrier, builds, params):
    counted(synthetic, "_build", builds)
    barrier.wait(TIMEOUT)
    assert dataset_problem(cached(params), params) is None


@pytest.mark.parametrize("state", ["absent", "damaged"])
def test_three_processes_generating_one_dataset_at_once_all_succeed_and_one_generates_it(tiny_params, tmp_path,
                                                                                          state):
    params = SynthParams(**tiny_params)
    if state == "damaged":
        next(cached(params).rglob("*.png")).unlink()
    barrier, builds = FORK.Barrier(3), FORK.Value("i", 0)
    children = [in_child(generate_at_once, barrier, builds, params) for _ in range(3)]
    assert all([succeeded(child) for child in children]) and builds.value == 1
    root = cache_root() / "synthetic" / params.digest()
    assert dataset_problem(root, params) is None
    assert tree(root) == tree(generate(tmp_path / "fresh", params))
    assert not list(root.parent.glob(".*.tmp"))
