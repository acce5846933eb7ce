"""``wsolbench report``: the data each figure plots (curves and their maxima, the boxes drawn) against hand-made
maps and ``wsolbench evaluate``, the files (PNG sizes, a self-contained page), escaping of names, one-line
errors before anything is drawn, a real run's kept maps, and the page in headless Chromium."""

import html
import html.parser
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from markupsafe import Markup
from PIL import Image
from scoremap_factory import cam_like

from wsolbench.cli import cli
from wsolbench.data.metadata import SplitMetadata, write_split
from wsolbench.metrics import functional as F
from wsolbench.metrics.functional import contour_boxes as predicted_boxes
from wsolbench.report.figures import example_threshold, pr_curve_data, threshold_curve_data
from wsolbench.report.page import ReportFigure, png_size, render_page
from wsolbench.results import write_record

HOSTILE = "<script>alert(1)</script>"
HOSTILE_ID = "cls1/<img src=x onerror=alert(1)>.jpg"


# --- a hand-made 2-image split ------------------------------------------------------------------------------
#
# Image A (224x224, box (50, 50, 149, 149)): 0.4 on rows/columns 30..169, 1.0 on 50..149. At tau 0 and 0.25
# (cut 0, 63 < floor(0.4 * 255) = 102) the foreground is 30..169: box (30, 30, 170, 170) (cv2.boundingRect's
# x + w), IoU 100^2 / 141^2 = 0.503; at 0.5 and 0.75 (cut 127, 191) only the core: box (50, 50, 150, 150),
# IoU 100^2 / 101^2 = 0.980.
# Image B (224x224, box (0, 0, 111, 223)): 0.6 on the left half, 1.0 on 10..29. At tau 0, 0.25, 0.5 the
# foreground is the left half: box (0, 0, 112, 223), IoU 112 / 113; at 0.75 (cut 191 > 153) only the spot:
# box (10, 10, 30, 30), IoU 441 / 25088.

INTERVAL = 0.25
GRID = [0.0, 0.25, 0.5, 0.75]
#: accuracy (%) at each tau, and the first argmax, per IoU: A hits at IoU 30 and 50 from tau 0, at 70 from 0.5
EXPECTED = {30: ([100, 100, 100, 50], 0), 50: ([100, 100, 100, 50], 0), 70: ([50, 50, 100, 50], 2)}


def _hand_maps():
    a = np.zeros((224, 224))
    a[30:170, 30:170] = 0.4
    a[50:150, 50:150] = 1.0
    b = np.zeros((224, 224))
    b[:, :112] = 0.6
    b[10:30, 10:30] = 1.0
    return a, b


def _write_images(image_dir, sizes, seed=0):
    rng = np.random.default_rng(seed)
    for image_id, (width, height) in sizes.items():
        path = image_dir / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        gradient = np.linspace(40, 220, width, dtype=np.float64)[None, :, None]
        pixels = gradient + rng.normal(0, 12, (height, width, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def write_box_split(root, records):
    """records: (image_id, label, (W, H), [boxes], map); metadata in root/meta, maps, images."""
    metadata = SplitMetadata(folder=root / "meta", image_ids=tuple(r[0] for r in records),
                             class_labels={r[0]: r[1] for r in records}, image_sizes={r[0]: r[2] for r in records},
                             boxes={r[0]: tuple(tuple(b) for b in r[3]) for r in records})
    write_split(root / "meta", metadata)
    for image_id, *_, scoremap in records:
        path = root / "maps" / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scoremap)
    _write_images(root / "images", metadata.image_sizes)
    return root / "meta", root / "maps", root / "images"


def hand_split(root, second_id="cls1/b.png"):
    a, b = _hand_maps()
    return write_box_split(root, [("cls0/a.jpg", 0, (224, 224), [(50, 50, 149, 149)], a),
                                  (second_id, 1, (224, 224), [(0, 0, 111, 223)], b)])


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def evaluate_json(meta, maps, *extra):
    result = invoke("evaluate", "--metadata", meta, "--scoremaps", maps, "--cam-curve-interval", INTERVAL,
                    "--json", "--curves", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def report_foreign(meta, maps, images, out, *extra):
    return invoke("report", "--scoremaps", maps, "--metadata", meta, "--images", images, "--out", out,
                  "--cam-curve-interval", INTERVAL, *extra)


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wsolbench: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class _Tags(html.parser.HTMLParser):
    """Collects every tag with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(text):
    parser = _Tags()
    parser.feed(text)
    return parser.tags


def fake_run(root, meta, maps, *, method="cam", keep_maps=True):
    """A run folder as ``wsolbench run --save-scoremaps`` leaves it, for the hand-made split."""
    run = root / "run"
    run.mkdir(parents=True)
    if keep_maps:
        shutil.copytree(maps, run / "scoremaps")
    test = {k: v for k, v in evaluate_json(meta, maps).items() if k not in ("thresholds", "curves")}
    record = {"version": 1, "method": method, "backbone": "resnet18", "dataset": "handmade",
              "protocol": {"id": "wsolevaluation", "fingerprint": "0" * 64},
              "config": {"cam_curve_interval": INTERVAL, "iou_thresholds": [30, 50, 70], "test_split": "test"},
              "overrides": {}, "off_protocol": False, "seed": 0,
              "provenance": {"command": f"wsolbench run --method {method}", "date": "2025-01-01T00:00:00+00:00"},
              "selected": {"epoch": 1, "criterion": "last"}, "scores": {"train_fullsup": {}, "test": test},
              "history": [], "wall_time_s": 1.0}
    if keep_maps:
        record["scoremaps"] = {"folder": "scoremaps", "class_scores": None}
    write_record(run / "record.json", record)
    return run


# --- what is plotted ----------------------------------------------------------------------------------------


def test_threshold_curves_and_maxima_by_hand_equal_evaluate(tmp_path):
    meta, maps, _ = hand_split(tmp_path / "split")
    scores = evaluate_json(meta, maps)
    data = threshold_curve_data(scores)
    assert list(data) == [30, 50, 70]
    for iou, (thresholds, accuracies, best) in data.items():
        assert thresholds.tolist() == GRID
        assert (accuracies.tolist(), best) == EXPECTED[iou], iou
        # the marked maximum is the evaluate JSON's best threshold and MaxBoxAccV2 term
        assert thresholds[best] == scores["best_threshold"][str(iou)]
        assert accuracies[best] == scores["maxboxacc_v2_per_iou"][str(iou)]
    assert example_threshold(scores) == (0, 0.0) and scores["gt_known_loc_best_threshold"] == 0.0


def test_predicted_boxes_are_the_metrics_boxes_by_hand():
    a, b = _hand_maps()
    assert predicted_boxes(a, 0.0).tolist() == [[30, 30, 170, 170]]
    assert predicted_boxes(a, 0.5).tolist() == [[50, 50, 150, 150]]
    assert predicted_boxes(b, 0.25).tolist() == [[0, 0, 112, 223]]
    assert predicted_boxes(b, 0.75).tolist() == [[10, 10, 30, 30]]
    two = np.zeros((224, 224))
    two[20:40, 20:60], two[100:200, 150:224] = 0.9, 1.0
    assert sorted(predicted_boxes(two, 0.5).tolist()) == [[20, 20, 60, 40], [150, 100, 223, 200]]  # x1 clamped
    assert predicted_boxes(np.zeros((224, 224)), 0.5).tolist() == [[0, 0, 0, 0]]  # empty: the metric's box


def test_predicted_boxes_give_the_metrics_best_iou_at_every_threshold():
    rng = np.random.default_rng(3)
    grid = F.threshold_grid(0.01)
    for _ in range(4):
        scoremap = cam_like(rng)
        ring = scoremap.copy()
        ring[90:130, 90:130] = 0  # holes: RETR_TREE's hole contours count as boxes too
        gt = np.array([[30, 40, 150, 200], [100, 10, 220, 90]])
        for m in (scoremap, ring):
            best = F.best_ious_per_threshold(m, gt, grid)[F.ALL]
            drawn = np.array([F.box_iou(predicted_boxes(m, t), gt).max() for t in grid])
            assert np.array_equal(drawn, best)


# --- files --------------------------------------------------------------------------------------------------


def test_foreign_maps_report_writes_valid_pngs_and_a_self_contained_page(tmp_path):
    meta, maps, images = hand_split(tmp_path / "split")
    out = tmp_path / "out"
    result = report_foreign(meta, maps, images, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["examples.png", "report.html", "threshold_curves.png"]
    # 2 tiles: 2 columns x 1 row of 2.6 in (+0.9 in colour bar, +1 in title and legend) at 100 dpi
    assert png_size((out / "examples.png").read_bytes()) == (610, 395)
    assert png_size((out / "threshold_curves.png").read_bytes()) == (750, 480)
    for name in ("examples.png", "threshold_curves.png"):
        with Image.open(out / name) as image:
            image.verify()
    if "matplotlib.pyplot" in sys.modules:  # torchmetrics imports pyplot; the report registers no figure there
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []

    page = (out / "report.html").read_text(encoding="utf-8")
    tags = tags_of(page)
    sources = [attrs["src"] for tag, attrs in tags if tag == "img"]
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not [t for t, attrs in tags if t in ("link", "script", "iframe", "object")]
    assert not [a for _, attrs in tags for k, a in attrs.items() if k in ("src", "href") and not a.startswith("data:")]
    assert "default-src 'none'" in page
    assert "MaxBoxAccV2 @ IoU 70" in page and "PxAP" in page and "&mdash;" in page  # absent scores: a dash
    assert "Leaderboard rows" in page
    assert "thresholded at \u03c4 = 0: the best MaxBoxAccV2 threshold at IoU 50" in page  # the caption's threshold
    assert not list(out.glob(".*"))  # written to temporary names, then renamed


def test_report_of_a_run_folder_and_its_drawn_boxes(tmp_path):
    meta, maps, images = hand_split(tmp_path / "split")
    run = fake_run(tmp_path, meta, maps)
    result = invoke("report", run, "--images", images)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr  # the kept maps re-score to the record's test scores
    out = run / "report"
    assert (out / "report.html").is_file() and (out / "examples.png").is_file()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "wsolbench report: cam on handmade (resnet18)" in page and "epoch 1 (last)" in page

    from wsolbench.report.build import inputs_from_run, make_report

    report = make_report(inputs_from_run(run, images=images, out=tmp_path / "again"), progress=False)
    assert report.example_threshold == 0.0 and report.example_ids == ("cls0/a.jpg", "cls1/b.png")
    assert [t.predicted.tolist() for t in report.tiles] == [[[30, 30, 170, 170]], [[0, 0, 112, 223]]]
    assert [t.gt_boxes.tolist() for t in report.tiles] == [[[50, 50, 149, 149]], [[0, 0, 111, 223]]]


def test_images_per_figure_takes_the_first_images_in_order(tmp_path):
    rng = np.random.default_rng(0)
    records = [(f"c{i % 2}/{i}.jpg", i % 2, (300, 200), [(10, 20, 250, 180)], cam_like(rng)) for i in range(7)]
    meta, maps, images = write_box_split(tmp_path / "split", records)
    from wsolbench.report.build import inputs_from_scoremaps, make_report

    report = make_report(inputs_from_scoremaps(maps, meta, images, out=tmp_path / "out", cam_curve_interval=0.05),
                         images_per_figure=5, progress=False)
    assert report.example_ids == tuple(r[0] for r in records[:5])
    assert png_size((tmp_path / "out" / "examples.png").read_bytes()) == (4 * 260 + 90, 2 * 295 + 100)
    assert report.tiles[0].gt_boxes.tolist() == [[int(10 * 224 / 300), int(20 * 224 / 200), int(250 * 224 / 300),
                                                   int(180 * 224 / 200)]]  # boxes at 224, as scored


def test_mask_split_draws_the_pxap_curve(tmp_path, make_mask_split):
    rng = np.random.default_rng(1)
    records = []
    for i in range(3):
        mask = np.zeros((224, 224), dtype=bool)
        mask[40 + 10 * i:150, 30:170 - 10 * i] = True
        ignore = np.zeros((224, 224), dtype=bool)
        ignore[0:20, 0:20] = i == 1
        scoremap = np.clip(0.6 * mask + 0.4 * rng.random((224, 224)), 0, 1)
        records.append((f"m{i}.jpg", i, [mask], ignore, scoremap))
    meta, maps, masks = make_mask_split(records)
    _write_images(masks.parent / "images", {r[0]: (224, 224) for r in records})
    out = tmp_path / "out"
    result = invoke("report", "--scoremaps", maps, "--metadata", meta, "--images", masks.parent / "images",
                    "--mask-root", masks, "--out", out, "--cam-curve-interval", 0.01)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["examples.png", "pr_curve.png", "report.html"]
    assert png_size((out / "pr_curve.png").read_bytes()) == (560, 500)
    scores = json.loads(invoke("evaluate", "--metadata", meta, "--scoremaps", maps, "--mask-root", masks,
                               "--cam-curve-interval", 0.01, "--json", "--curves").stdout)
    recall, precision = pr_curve_data(scores)
    assert len(recall) == sum(p is not None for p in scores["pr_curve"]["precision"])
    assert np.all(np.diff(recall) >= 0) and precision.max() <= 1
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"PxAP = {scores['pxap']:.2f}%" in page


# --- escaping -----------------------------------------------------------------------------------------------


def test_page_escapes_names_from_records_and_image_ids(tmp_path):
    meta, maps, images = hand_split(tmp_path / "split", second_id=HOSTILE_ID)
    run = fake_run(tmp_path, meta, maps, method=HOSTILE)
    result = invoke("report", run, "--images", images)
    assert result.exit_code == 0, result.output
    page = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # the image id, listed under the grid
    assert [t for t, _ in tags_of(page)].count("img") == 2


def test_leaderboard_fragment_is_inserted_only_as_markup():
    figure = ReportFigure("f.png", _tiny_png(), "caption <b>", "alt")
    common = dict(title=HOSTILE, facts=[("Method", HOSTILE)], scores={}, figures=[figure])
    page = render_page(**common, leaderboard_html=Markup('<table class="leaderboard"><tr><td>1</td></tr></table>'))
    assert '<table class="leaderboard">' in page and "<script" not in page and "caption &lt;b&gt;" in page
    plain = render_page(**common, leaderboard_html="<table>not trusted</table>")
    assert "&lt;table&gt;not trusted&lt;/table&gt;" in plain
    assert "No leaderboard rows" in render_page(**common)


def _tiny_png():
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(buffer, format="PNG")
    return buffer.getvalue()


# --- bad input ----------------------------------------------------------------------------------------------


def test_a_run_without_kept_maps_is_a_one_line_error(tmp_path):
    meta, maps, images = hand_split(tmp_path / "split")
    run = fake_run(tmp_path, meta, maps, keep_maps=False)
    result = invoke("report", run)
    assert_one_line_error(result, str(run / "record.json"), "--save-scoremaps")
    assert not (run / "report").exists()


def test_bad_inputs_are_one_line_errors_before_anything_is_drawn(tmp_path):
    meta, maps, images = hand_split(tmp_path / "split")
    out = tmp_path / "out"
    assert_one_line_error(invoke("report", tmp_path / "nowhere"), "nowhere", "does not exist")
    assert_one_line_error(invoke("report", tmp_path, "--scoremaps", maps), "not both")
    assert_one_line_error(invoke("report", "--scoremaps", maps, "--metadata", meta), "--images")
    assert_one_line_error(invoke("report"), "--scoremaps")
    (images / "cls1" / "b.png").unlink()
    assert_one_line_error(report_foreign(meta, maps, images, out), str(images / "cls1" / "b.png"), "cls1/b.png")
    _write_images(images, {"cls1/b.png": (224, 224)})
    (maps / "cls0" / "a.jpg.npy").unlink()
    assert_one_line_error(report_foreign(meta, maps, images, out), "a.jpg.npy", "missing score map")
    assert not out.exists()


def test_report_modules_and_the_cli_do_not_import_torch():
    code = ("import sys, wsolbench.report.figures, wsolbench.report.page, wsolbench.cli; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- a real run's kept maps ---------------------------------------------------------------------------------


def test_report_of_a_real_run_reads_images_from_its_dataset_root(tmp_path):
    from wsolbench.data.synthetic import SynthParams, generate

    root = generate(tmp_path / "synth", SynthParams(variant="boxes", classes=2, train_per_class=2, val_per_class=1,
                                                    test_per_class=2, image_size=32, seed=2))
    run = tmp_path / "run"
    result = invoke("run", "--method", "cam", "--dataset", "synthetic", "--root", root, "--device", "cpu",
                    "--epochs", "1", "--set", "image_size=32", "batch_size=2", "cam_curve_interval=0.01",
                    "--save-scoremaps", "--out", run)
    assert result.exit_code == 0, result.output
    result = invoke("report", run)  # images from <root>/dataset/SYNTHETIC, the root the run read
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr, result.stderr  # the kept maps re-score to the record exactly
    page = (run / "report" / "report.html").read_text(encoding="utf-8")
    record = json.loads((run / "record.json").read_text())
    assert f"{record['scores']['test']['top1_cls']:.2f}" in page  # class scores kept with the maps
    # its leaderboard row, with the command that reproduces it (no published row for the synthetic dataset)
    section = page[page.index("Leaderboard rows"):]
    assert '<table class="leaderboard">' in section and "<td>cam</td>" in section and "<td>synthetic</td>" in section
    assert f"<code>{html.escape(record['provenance']['command'], quote=False)}</code>" in section


# --- the page in a browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("headless Chromium is not installed (.ci/run installs Debian's chromium package)")
    return path


def _chromium(binary, *args, timeout=120):
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-dev-shm-usage", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def rendered_report(tmp_path):
    meta, maps, images = hand_split(tmp_path / "split")
    out = tmp_path / "out"
    result = report_foreign(meta, maps, images, out)
    assert result.exit_code == 0, result.output
    return out / "report.html"


def test_chromium_renders_a_page_that_is_not_blank(chromium, rendered_report, tmp_path):
    shot = tmp_path / "shot.png"
    done = _chromium(chromium, f"--screenshot={shot}", "--window-size=1200,1600", rendered_report.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1200, 1600)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 20, pixels.std()  # text, a table and figures, not a blank page


def test_chromium_loads_every_image(chromium, rendered_report, tmp_path):
    page = rendered_report.read_text(encoding="utf-8")
    count = [t for t, _ in tags_of(page)].count("img")
    assert count == 2
    # a copy whose policy also allows one inline script, which counts the images that decoded
    probe = ("<script>window.addEventListener('load', () => { const images = Array.from(document.images); "
             "document.title = 'loaded ' + images.filter(i => i.complete && i.naturalWidth > 0).length; });</script>")
    copy = tmp_path / "probe.html"
    copy.write_text(page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
                    .replace("</body>", probe + "</body>"), encoding="utf-8")
    done = _chromium(chromium, "--virtual-time-budget=5000", "--dump-dom", copy.as_uri())
    title = re.search(r"<title>(.*?)</title>", done.stdout, re.S)
    assert title is not None, done.stderr[-2000:]
    assert title.group(1).strip() == f"loaded {count}"
    # the page as written runs no script at all: its policy blocks even this inline one
    copy.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    done = _chromium(chromium, "--virtual-time-budget=5000", "--dump-dom", copy.as_uri())
    title = re.search(r"<title>(.*?)</title>", done.stdout, re.S)
    assert title is not None and title.group(1).startswith("wsolbench report: score maps maps on "), done.stdout[:500]
