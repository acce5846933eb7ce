"""``wsolbench data verify``: clean trees pass; every planted problem is reported, each on its own line."""

import pytest
from click.testing import CliRunner

from wsolbench.cli import cli
from wsolbench.data.verify import verify_dataset

C = "001.Black_footed_Albatross"
CUB_SIZES = {
    "train": {f"{C}/t1.jpg": (60, 40), f"{C}/t2.jpg": (50, 50), f"{C}/t3.jpg": (40, 30)},
    "val": {f"{C}/v1.jpg": (48, 32), f"{C}/v2.jpg": (32, 48)},
    "test": {f"{C}/s1.jpg": (64, 48), f"{C}/s2.jpg": (30, 40), f"{C}/s3.jpg": (44, 44)},
}


def make_box_tree(root, fakes, folder="CUB", extra_boxes=None):
    """Images and metadata in the real layout; every box lies inside its image."""
    for split, sizes in CUB_SIZES.items():
        for n, (image_id, (w, h)) in enumerate(sizes.items()):
            path = root / "dataset" / folder / image_id
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(fakes.jpeg(w, h, seed=n))
        boxes = [f"{i},1,1,{w - 2},{h - 2}" for i, (w, h) in sizes.items()] + (extra_boxes or {}).get(split, [])
        fakes.write_split(root / "metadata" / folder / split, [(i, 0, s) for i, s in sizes.items()], boxes)


def verify(*args):
    return CliRunner().invoke(cli, ["data", "verify", *map(str, args)])


def test_clean_tree_passes(tmp_path, fakes):
    make_box_tree(tmp_path, fakes)
    result = verify("--root", tmp_path, "--folder", "CUB")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["split", "images", "readable", "expected", "boxes/masks", "problems"]
    assert [line.split() for line in lines[2:]] == [
        ["train", "3", "3", "-", "3", "boxes", "0"],
        ["val", "2", "2", "-", "2", "boxes", "0"],
        ["test", "3", "3", "-", "3", "boxes", "0"],
    ]


def test_every_planted_problem_is_reported(tmp_path, fakes):
    # s2 gets a second box reaching x1 = 30 in its 30-pixel-wide image (valid x1 <= 29): localization line 4
    make_box_tree(tmp_path, fakes, extra_boxes={"test": [f"{C}/s2.jpg,0,0,30,39"]})
    data = tmp_path / "dataset" / "CUB"
    (data / f"{C}/t1.jpg").unlink()                                         # missing image
    (data / f"{C}/t3.jpg").write_bytes(b"<html>not a jpeg</html>")          # not an image at all
    whole = (data / f"{C}/s1.jpg").read_bytes()
    (data / f"{C}/s1.jpg").write_bytes(whole[: len(whole) // 2])            # truncated JPEG
    (data / f"{C}/v1.jpg").write_bytes(fakes.jpeg(50, 32))                  # 50x32, metadata says 48x32
    result = verify("cub", "--root", tmp_path)                              # cub expects 5994/1000/5794 images
    assert result.exit_code == 2
    meta = tmp_path / "metadata" / "CUB"
    expected = [
        f"{meta / 'train' / 'image_ids.txt'}: lists 3 images, expected 5994",
        f"{data / C / 't1.jpg'}: is missing (image '{C}/t1.jpg' of train)",
        f"{data / C / 't3.jpg'}: is not an image PIL can read (image '{C}/t3.jpg' of train)",
        f"{meta / 'val' / 'image_ids.txt'}: lists 2 images, expected 1000",
        f"{data / C / 'v1.jpg'}: image is 50x32 but {meta / 'val' / 'image_sizes.txt'} says 48x32",
        f"{meta / 'test' / 'localization.txt'}:4: box (0, 0, 30, 39) of '{C}/s2.jpg' lies outside its 30x40 image",
        f"{meta / 'test' / 'image_ids.txt'}: lists 3 images, expected 5794",
        f"{data / C / 's1.jpg'}: does not decode",
    ]
    problems = result.stdout.splitlines()[: -5]  # the table (header, rule, 3 rows) comes last
    assert len(problems) == len(expected), problems
    for start in expected:
        assert sum(line.startswith(start) for line in problems) == 1, start
    assert [line.split()[-1] for line in result.stdout.splitlines()[-3:]] == ["3", "2", "3"]
    assert "8 problems in CUB" in result.stderr


def test_no_decode_reads_headers_only(tmp_path, fakes):
    make_box_tree(tmp_path, fakes)
    data = tmp_path / "dataset" / "CUB"
    whole = (data / f"{C}/s1.jpg").read_bytes()
    (data / f"{C}/s1.jpg").write_bytes(whole[: len(whole) // 2])  # header intact, pixels cut
    (data / f"{C}/v2.jpg").write_bytes(fakes.jpeg(33, 48))
    report = verify_dataset(tmp_path, "CUB", decode=False, progress=False)
    assert len(report.problems) == 1 and "image is 33x48" in report.problems[0]
    assert len(verify_dataset(tmp_path, "CUB", decode=True, progress=False).problems) == 2


def test_split_sizes_and_split_selection(tmp_path, fakes):
    make_box_tree(tmp_path, fakes)
    report = verify_dataset(tmp_path, "CUB", splits=["val", "test"], split_sizes={"val": 2, "test": 4},
                            progress=False, workers=2)
    assert [s.split for s in report.splits] == ["val", "test"]
    assert report.problems == [f"{tmp_path / 'metadata/CUB/test/image_ids.txt'}: lists 3 images, expected 4 "
                               "for split 'test'"]


def test_folder_wsolbench_has_never_seen(tmp_path, fakes):
    make_box_tree(tmp_path, fakes, folder="MyBirds")
    result = verify("--root", tmp_path, "--folder", "MyBirds", "--splits", "train,test")
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[2:]] == ["train", "test"]


def test_missing_metadata_folder_is_a_problem(tmp_path):
    result = verify("--root", tmp_path, "--folder", "Nothing", "--splits", "val")
    assert result.exit_code == 2
    assert f"{tmp_path / 'metadata/Nothing/val'}: metadata folder does not exist" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--splits", "train,dev"], "--splits 'train,dev': splits are train, val, test"),
    ([], "give a DATASET or --folder NAME"),
])
def test_bad_arguments(tmp_path, args, message):
    result = verify("--root", tmp_path, *(["--folder", "CUB"] if args else []), *args)
    assert result.exit_code == 2 and message in result.output


# --- masks (OpenImages layout) --------------------------------------------------------------------------------


def make_mask_tree(root, fakes):
    """Two val images with instance and ignore masks at <root>/dataset/OpenImages/<mask path>."""
    data = root / "dataset" / "OpenImages"
    records, lines = [], []
    images = [("val/c1/aaa.jpg", (40, 30), 2), ("val/c2/bbb.jpg", (36, 24), 1)]  # id, size, instance masks
    for n, (image_id, (w, h), instances) in enumerate(images):
        stem = image_id[:-4]
        (data / image_id).parent.mkdir(parents=True, exist_ok=True)
        (data / image_id).write_bytes(fakes.jpeg(w, h, seed=n))
        for k in range(instances):
            (data / f"{stem}_m{k}.png").write_bytes(fakes.png_mask(w, h))
            lines.append(f"{image_id},{stem}_m{k}.png,{stem + '_ignore.png' if k == 0 else ''}")
        (data / f"{stem}_ignore.png").write_bytes(fakes.png_mask(w, h))
        records.append((image_id, n, None))
    fakes.write_split(root / "metadata" / "OpenImages" / "val", records, lines)
    return data


def test_clean_mask_tree_passes(tmp_path, fakes):
    make_mask_tree(tmp_path, fakes)
    report = verify_dataset(tmp_path, "OpenImages", splits=["val"], progress=False)
    assert report.problems == []
    assert (report.splits[0].annotation, report.splits[0].annotations) == ("masks", 3)


def test_every_mask_problem_is_reported(tmp_path, fakes):
    data = make_mask_tree(tmp_path, fakes)
    (data / "val/c1/aaa_m1.png").unlink()                                  # missing instance mask
    (data / "val/c1/aaa_ignore.png").write_bytes(fakes.png_mask(30, 40))  # transposed size
    (data / "val/c2/bbb_m0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # not a PNG PIL can read
    result = verify("--root", tmp_path, "--folder", "OpenImages", "--splits", "val")
    assert result.exit_code == 2
    problems = result.stdout.splitlines()[:-3]
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{data / 'val/c1/aaa_m1.png'}: mask is missing (image 'val/c1/aaa.jpg' of val)")
    assert problems[1].startswith(f"{data / 'val/c1/aaa_ignore.png'}: mask is 30x40, its image 40x30")
    assert problems[2].startswith(f"{data / 'val/c2/bbb_m0.png'}: mask is not an image PIL can read")
