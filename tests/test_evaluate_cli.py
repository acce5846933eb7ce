"""``wsolbench evaluate``: values against the naive reference, formats, workers, and bad input."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from scoremap_factory import cam_like
from naive_reference import hit_counts, max_box_acc, pxap

from wsolbench.cli import cli

INTERVAL = "0.05"
GRID = np.arange(0, 1, 0.05)


def run(*args):
    result = CliRunner().invoke(cli, ["evaluate", *map(str, args)])
    return result


def _records(seed=0, count=5):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        w, h = (333, 517) if i % 2 else (224, 224)
        boxes = [[10, 20, 300 if w > 224 else 200, 400 if h > 224 else 200]]
        if i == 2:
            boxes.append([0, 0, 50, 60])
        scoremap = cam_like(rng).astype(np.float32 if i == 3 else np.float64)
        records.append((f"cls{i % 2}/img_{i}.jpg", i % 3, (w, h), boxes, scoremap))
    return records


def _gt_224(records):
    return [[[int(c * 224.0 / s) for c, s in zip(b, r[2] * 2)] for b in r[3]] for r in records]


def test_json_equals_naive_reference(make_box_split):
    records = _records()
    meta, maps = make_box_split(records)
    result = run("--metadata", meta, "--scoremaps", maps, "--cam-curve-interval", INTERVAL, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    loaded = [r[4].astype(np.float64) for r in records]
    gt = [[[int(b[0] * 224.0 / r[2][0]), int(b[1] * 224.0 / r[2][1]), int(b[2] * 224.0 / r[2][0]),
            int(b[3] * 224.0 / r[2][1])] for b in r[3]] for r in records]
    v2 = max_box_acc(loaded, gt, GRID, (30, 50, 70), True)
    v1 = max_box_acc(loaded, gt, GRID, (50,), False)
    assert out["maxboxacc_v2_per_iou"] == {str(d): v2[d][0] for d in (30, 50, 70)}
    assert out["maxboxacc_v2"] == np.mean([v2[d][0] for d in (30, 50, 70)])
    assert out["maxboxacc"] == v1[50][0]
    assert out["best_threshold"] == {str(d): round(GRID[v2[d][1]], 10) for d in (30, 50, 70)}
    assert out["num_images"] == 5 and "pxap" not in out


def test_workers_give_identical_results_and_table_prints(make_box_split):
    meta, maps = make_box_split(_records(seed=1, count=6))
    one = run("--metadata", meta, "--scoremaps", maps, "--cam-curve-interval", INTERVAL, "--json")
    two = run("--metadata", meta, "--scoremaps", maps, "--cam-curve-interval", INTERVAL, "--json", "--workers", 2)
    assert one.exit_code == two.exit_code == 0
    assert json.loads(one.stdout) == json.loads(two.stdout)
    table = run("--metadata", meta, "--scoremaps", maps, "--cam-curve-interval", INTERVAL)
    assert "MaxBoxAccV2" in table.stdout and "GT-known Loc" in table.stdout


def test_iou_thresholds_take_several_values(make_box_split):
    meta, maps = make_box_split(_records(count=2))
    out = json.loads(run("--metadata", meta, "--scoremaps", maps, "--iou-thresholds", 40, 60,
                         "--cam-curve-interval", INTERVAL, "--json").stdout)
    assert list(out["maxboxacc_v2_per_iou"]) == ["40", "60"]
    assert "50" in out["best_threshold_v1"]


@pytest.mark.parametrize("fmt", ["npz", "csv"])
def test_logits_enable_topk(make_box_split, tmp_path, fmt):
    records = _records(seed=2, count=6)
    meta, maps = make_box_split(records)
    rng = np.random.default_rng(0)
    scores = rng.random((6, 3))
    ids = [r[0] for r in records]
    if fmt == "npz":
        path = tmp_path / "logits.npz"
        np.savez(path, image_ids=np.array(ids), scores=scores)
    else:
        path = tmp_path / "logits.csv"
        path.write_text("\n".join(",".join([i, *(repr(float(v)) for v in s)]) for i, s in zip(ids, scores)))
    result = run("--metadata", meta, "--scoremaps", maps, "--logits", path, "--loc-threshold", 0.2,
                 "--cam-curve-interval", INTERVAL, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    labels = [r[1] for r in records]
    correct = [int(np.argmax(s)) == y for s, y in zip(scores, labels)]
    loaded = [r[4].astype(np.float64) for r in records]
    counts = hit_counts(loaded, _gt_224(records), GRID, (50,), True, correct)[50]
    assert out["top1_loc"] == counts.max() * 100.0 / 6
    assert out["top1_cls"] == sum(correct) * 100.0 / 6
    assert out["top5_cls"] == 100.0  # 3 classes: the label is always among the top 5
    assert out["top5_loc"] == out["gt_known_loc"]
    assert "gt_known_loc_at_threshold" in out


def test_mask_split_pxap_equals_naive(make_mask_split):
    rng = np.random.default_rng(5)
    records = []
    for i in range(4):
        h, w = (300, 451) if i % 2 else (224, 224)
        inst = [np.zeros((h, w), bool) for _ in range(1 + i % 2)]
        for m in inst:
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            m[y:y + h // 3, x:x + w // 3] = True
        ignore = np.zeros((h, w), bool)
        if i != 0:
            ignore[: h // 4, :] = True
        records.append((f"val/c{i}/im{i}.jpg", i, inst, ignore, cam_like(rng)))
    meta, maps, masks = make_mask_split(records)
    result = run("--metadata", meta, "--scoremaps", maps, "--mask-root", masks, "--cam-curve-interval", INTERVAL, "--json")
    assert result.exit_code == 0, result.output

    def nearest(m):
        return cv2.resize(m.astype(np.float32) * 255, (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5

    labels = []
    for _, _, inst, ignore, _ in records:
        fg = np.any([nearest(m) for m in inst], axis=0)
        label = fg.astype(np.uint8)
        label[nearest(ignore) & ~fg] = 255
        labels.append(label)
    expected = pxap([r[4] for r in records], labels, GRID)
    assert json.loads(result.stdout)["pxap"] == pytest.approx(expected, abs=1e-9)


def _assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wsolbench: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_bad_score_maps(make_box_split):
    records = _records(count=4)
    meta, maps = make_box_split(records)
    (maps / "cls1/img_1.jpg.npy").unlink()
    _assert_one_line_error(run("--metadata", meta, "--scoremaps", maps), "img_1.jpg.npy", "missing score map")
    for name, bad, message in [("nan", np.full((224, 224), np.nan), "NaN"), ("inf", np.full((224, 224), np.inf), "Inf"),
                               ("range", np.full((224, 224), 1.5), "[0, 1]"), ("3d", np.zeros((2, 224, 224)), "2-D")]:
        np.save(maps / "cls1/img_1.jpg.npy", bad)
        _assert_one_line_error(run("--metadata", meta, "--scoremaps", maps), "img_1.jpg.npy", message)
    (maps / "cls1/img_1.jpg.npy").write_bytes(b"not an npy")
    _assert_one_line_error(run("--metadata", meta, "--scoremaps", maps), "img_1.jpg.npy")


def test_other_size_is_resized_with_a_notice(make_box_split):
    records = _records(count=3)
    records[1] = (*records[1][:4], np.linspace(0, 0.5, 14 * 14).reshape(14, 14))
    meta, maps = make_box_split(records)
    result = run("--metadata", meta, "--scoremaps", maps, "--json")
    assert result.exit_code == 0
    assert "notice: 1 score maps were not 224x224" in result.stderr and "14x14" in result.stderr


@pytest.mark.parametrize("file,content,fragments", [
    ("image_ids.txt", "a.jpg\na.jpg", ["image_ids.txt:2", "duplicate image id 'a.jpg'"]),
    ("class_labels.txt", "a.jpg,0\nzz.jpg,1", ["class_labels.txt:2", "unknown image id 'zz.jpg'"]),
    ("class_labels.txt", "a.jpg,x\nb.jpg,1", ["class_labels.txt:1", "not an integer"]),
    ("localization.txt", "a.jpg,1,1,5,5\nb.jpg,1,1,600,5", ["localization.txt:2", "outside"]),
    ("localization.txt", "a.jpg,5,1,2,5\nb.jpg,1,1,2,5", ["localization.txt:1", "inverted"]),
    ("localization.txt", "a.jpg,1,1,2.5,5\nb.jpg,1,1,2,5", ["localization.txt:1", "x1 is not an integer"]),
    ("image_sizes.txt", "a.jpg,100\nb.jpg,100,100", ["image_sizes.txt:1", "fields"]),
])
def test_bad_metadata(make_box_split, file, content, fragments):
    z = np.zeros((224, 224))
    meta, maps = make_box_split([("a.jpg", 0, (100, 100), [[1, 1, 5, 5]], z), ("b.jpg", 1, (100, 100), [[1, 1, 2, 5]], z)])
    (meta / file).write_text(content)
    _assert_one_line_error(run("--metadata", meta, "--scoremaps", maps), *fragments)


def test_bad_masks(make_mask_split):
    h = w = 30
    inst = [np.ones((h, w), bool)]
    records = [("x/a.jpg", 0, inst, np.zeros((h, w), bool), np.zeros((224, 224)))]
    meta, maps, masks = make_mask_split(records)
    (masks / "x/a_m0.png").unlink()
    _assert_one_line_error(run("--metadata", meta, "--scoremaps", maps, "--mask-root", masks), "a_m0.png", "missing mask")
    (meta / "localization.txt").write_text("x/a.jpg,x/a_m0.png,")
    _assert_one_line_error(run("--metadata", meta, "--scoremaps", maps, "--mask-root", masks),
                           "localization.txt:1", "empty ignore-mask path")


def test_bad_logits(make_box_split, tmp_path):
    z = np.zeros((224, 224))
    meta, maps = make_box_split([("a.jpg", 0, (100, 100), [[1, 1, 5, 5]], z), ("b.jpg", 1, (100, 100), [[1, 1, 2, 5]], z)])
    path = tmp_path / "l.csv"
    path.write_text("a.jpg,0.1,0.2\nc.jpg,0.3,0.1")
    _assert_one_line_error(run("--metadata", meta, "--scoremaps", maps, "--logits", path), "unknown image id 'c.jpg'")
    path.write_text("a.jpg,0.1,0.2")
    _assert_one_line_error(run("--metadata", meta, "--scoremaps", maps, "--logits", path), "no class scores", "'b.jpg'")
