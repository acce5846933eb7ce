"""``wsolbench run --save-scoremaps`` keeps the test maps and class scores in wsolevaluation's layout, and
``wsolbench evaluate`` re-scores them to exactly the record's test scores, without the model."""

import json

import numpy as np
from click.testing import CliRunner

from wsolbench.cli import cli
from wsolbench.data.synthetic import SynthParams, generate


def test_saved_maps_rescore_to_the_recorded_test_scores(tmp_path):
    root = generate(tmp_path / "synth", SynthParams(variant="boxes", classes=2, train_per_class=2, val_per_class=1,
                                                    test_per_class=3, image_size=32, seed=2))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "run", "--method", "cam", "--dataset", "synthetic", "--root", str(root), "--device", "cpu", "--epochs", "1",
        "--set", "image_size=32", "batch_size=2", "cam_curve_interval=0.01", "--save-scoremaps", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "record.json").read_text())
    assert record["scoremaps"] == {"folder": "scoremaps", "class_scores": "class_scores.npz"}
    metadata = root / "metadata" / "SYNTHETIC" / "test"
    image_ids = (metadata / "image_ids.txt").read_text().split()
    for image_id in image_ids:
        scoremap = np.load(out / "scoremaps" / f"{image_id}.npy")
        assert scoremap.shape == (224, 224) and scoremap.dtype == np.float64
        assert scoremap.min() == 0.0 and scoremap.max() == 1.0  # min-max normalised
    with np.load(out / "class_scores.npz") as archive:
        assert sorted(archive["image_ids"].tolist()) == sorted(image_ids) and archive["scores"].shape == (6, 10)
    assert not list(out.glob("**/.*tmp*"))  # nothing half-written left behind

    rescored = CliRunner().invoke(cli, ["evaluate", "--metadata", str(metadata), "--scoremaps", str(out / "scoremaps"),
                                        "--logits", str(out / "class_scores.npz"), "--cam-curve-interval", "0.01",
                                        "--json"])
    assert rescored.exit_code == 0, rescored.output
    scores = json.loads(rescored.stdout)
    test = record["scores"]["test"]
    for key in ("maxboxacc_v2", "maxboxacc_v2_per_iou", "maxboxacc", "gt_known_loc", "top1_loc", "top1_cls"):
        assert scores[key] == test[key], key
