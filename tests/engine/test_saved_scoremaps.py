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
    assert record["scoremaps"] == {"folder": "scoremaps", "class_scores": "class_scores.npz", "extra": {}}
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


def test_a_methods_extra_maps_are_kept_each_in_its_folder_and_drawn_by_report(tmp_path):
    root = generate(tmp_path / "synth", SynthParams(variant="boxes", classes=2, train_per_class=2, val_per_class=1,
                                                    test_per_class=2, image_size=32, seed=3))
    out = tmp_path / "align"
    result = CliRunner().invoke(cli, [
        "run", "--method", "align", "--dataset", "synthetic", "--root", str(root), "--device", "cpu", "--epochs", "1",
        "--set", "image_size=32", "batch_size=2", "cam_curve_interval=0.01", "warm_epochs=0", "--save-scoremaps",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "record.json").read_text())
    assert record["scoremaps"]["extra"] == {"norm": "scoremaps-norm", "sim": "scoremaps-sim"}
    image_ids = (root / "metadata" / "SYNTHETIC" / "test" / "image_ids.txt").read_text().split()
    for folder in ("scoremaps", "scoremaps-norm", "scoremaps-sim"):
        maps = [np.load(out / folder / f"{image_id}.npy") for image_id in image_ids]
        assert all(m.shape == (224, 224) and m.min() == 0.0 and m.max() == 1.0 for m in maps), folder
    # the norm map is not the CAM (a different map was kept)
    assert not np.array_equal(np.load(out / "scoremaps" / f"{image_ids[0]}.npy"),
                              np.load(out / "scoremaps-norm" / f"{image_ids[0]}.npy"))
    drawn = CliRunner().invoke(cli, ["report", str(out)])
    assert drawn.exit_code == 0, drawn.output
    assert (out / "report" / "examples-norm.png").is_file() and (out / "report" / "examples-sim.png").is_file()
    assert "the method&#39;s extra map &#39;norm&#39;" in (out / "report" / "report.html").read_text()


def test_an_extra_map_with_a_bad_name_is_a_contract_error(tmp_path):
    import torch

    from wsolbench.engine.evaluation import _extra_maps
    from wsolbench.errors import MethodContractError
    from wsolbench.method import Method

    class Odd(Method):
        name = "odd"

        def extra_maps(self, model, images, labels):
            return {"Bad Name": torch.zeros(len(images), 2, 2)}

    batch = {"image": torch.zeros(2, 3, 4, 4), "label": torch.tensor([0, 1])}
    import pytest

    with pytest.raises(MethodContractError, match="extra map name 'Bad Name'"):
        _extra_maps(Odd(num_classes=2), None, batch)
