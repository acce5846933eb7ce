"""Tiny generated datasets shared by the data tests (2 classes, 32 px)."""

import pytest

from wsolbench.data.synthetic import SynthParams, generate

TINY = dict(classes=2, train_per_class=2, val_per_class=1, test_per_class=2, image_size=32, seed=7)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty wsolbench cache folder."""
    monkeypatch.setenv("WSOLBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_params():
    """The parameters of the tiny datasets (a fresh dict)."""
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_boxes_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "boxes", SynthParams(variant="boxes", **TINY))


@pytest.fixture(scope="session")
def tiny_masks_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "masks", SynthParams(variant="masks", **TINY))
