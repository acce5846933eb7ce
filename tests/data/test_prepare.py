"""``wsolbench data prepare`` end to end, on fake archives in the real layouts, served from 127.0.0.1."""

import hashlib

import pytest
from click.testing import CliRunner

from wsolbench.cli import cli
from wsolbench.data.spec import DatasetSpec
from wsolbench.plugins import registry

# Where the real files live (the loopback server stands in for each host through --base-url).
METADATA = "/clovaai/wsolevaluation/96f4b88679af41f005824661f47e6fe3628af2aa/metadata"
MAPPING = "/clovaai/wsolevaluation/e9972606b18064ea886f098f2b5b29b9ade75f09/metadata/ILSVRC/val/mapping.txt"
CUB_TGZ = "/records/65de6-vp158/files/CUB_200_2011.tgz"
IMAGENETV2_TGZ = "/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-threshold0.7.tar.gz"
FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


def serve_metadata(server, fakes, tmp_path, folder, splits):
    """Write each split's metadata by hand and serve it at its wsolevaluation path."""
    for split, (records, localization) in splits.items():
        local = tmp_path / "made" / folder / split
        fakes.write_split(local, records, localization)
        for name in FILES:
            server.files[f"{METADATA}/{folder}/{split}/{name}"] = (local / name).read_bytes()


def run(*args):
    return CliRunner().invoke(cli, ["data", "prepare", *map(str, args)])


# --- CUB ----------------------------------------------------------------------------------------------------

A, B = "001.Black_footed_Albatross", "002.Laysan_Albatross"
CUB_SPLITS = {  # id -> size
    "train": {f"{A}/Black_Footed_Albatross_0009_34.jpg": (60, 40), f"{B}/Laysan_Albatross_0002_1027.jpg": (50, 70)},
    "val": {f"{A}/30107316117.jpg": (70, 50), f"{B}/12345.jpg": (30, 60)},
    "test": {f"{A}/Black_Footed_Albatross_0001_796111.jpg": (64, 48), f"{B}/Laysan_Albatross_0001_545.jpg": (40, 40)},
}


@pytest.fixture
def cub(server, fakes, tmp_path):
    images = {}
    for seed, (split, sizes) in enumerate(CUB_SPLITS.items()):
        for k, (image_id, (w, h)) in enumerate(sizes.items()):
            images[image_id] = fakes.jpeg(w, h, seed=10 * seed + k)
    serve_metadata(server, fakes, tmp_path, "CUB", {
        split: ([(i, n, size) for n, (i, size) in enumerate(sizes.items())],
                [f"{i},1,2,{w - 5},{h - 5}" for i, (w, h) in sizes.items()])
        for split, sizes in CUB_SPLITS.items()})
    original = {f"CUB_200_2011/images/{i}": images[i] for s in ("train", "test") for i in CUB_SPLITS[s]}
    original.update({"CUB_200_2011/README": b"readme", "attributes.txt": b"1 has_bill_shape::curved"})
    tgz = fakes.tar(original)
    server.files[CUB_TGZ] = tgz
    cubv2 = fakes.tar({i: images[i] for i in CUB_SPLITS["val"]}, mode="w")
    return images, tgz, cubv2


def test_prepare_cub_downloads_unpacks_and_places_every_image(cub, server, tmp_path):
    images, tgz, cubv2 = cub
    local = tmp_path / "local"
    local.mkdir()
    (local / "CUBV2.tar").write_bytes(cubv2)
    root = tmp_path / "root"
    result = run("cub", "--root", root, "--base-url", server.url, "--no-verify", "--from", local)
    assert result.exit_code == 0, result.output
    for image_id, data in images.items():
        assert (root / "dataset" / "CUB" / image_id).read_bytes() == data
    assert (root / "metadata" / "CUB" / "val" / "image_ids.txt").read_bytes() == \
        server.files[f"{METADATA}/CUB/val/image_ids.txt"]
    sums = (root / "downloads" / "SHA256SUMS").read_text().splitlines()
    assert f"{hashlib.sha256(tgz).hexdigest()}  CUB_200_2011.tgz" in sums
    assert f"{hashlib.sha256(cubv2).hexdigest()}  CUBV2.tar" in sums
    assert hashlib.sha256(tgz).hexdigest() in result.stderr  # no published checksum: printed
    assert not (root / "downloads" / "extracted").exists() or not any((root / "downloads" / "extracted").iterdir())
    assert server.count(CUB_TGZ) == 1


def test_prepare_cub_without_cubv2_says_what_to_fetch_then_continues_from_it(cub, server, tmp_path):
    images, _, cubv2 = cub
    root = tmp_path / "root"
    result = run("cub", "--root", root, "--base-url", server.url, "--no-verify")
    assert result.exit_code == 2
    todo = [line for line in result.stderr.splitlines() if line.startswith("wsolbench: to do:")]
    assert len(todo) == 1
    assert "CUBV2.tar" in todo[0] and "https://drive.google.com/open?id=1U6cwKHS65wayT9FFvoLIA8cn1k0Ot2M1" in todo[0]
    assert "--from" in todo[0]
    for image_id in (*CUB_SPLITS["train"], *CUB_SPLITS["test"]):  # what could be done was done
        assert (root / "dataset" / "CUB" / image_id).read_bytes() == images[image_id]

    local = tmp_path / "fetched-by-hand"
    local.mkdir()
    (local / "CUBV2.tar").write_bytes(cubv2)
    result = run("cub", "--root", root, "--base-url", server.url, "--no-verify", "--from", local)
    assert result.exit_code == 0, result.output
    for image_id in CUB_SPLITS["val"]:
        assert (root / "dataset" / "CUB" / image_id).read_bytes() == images[image_id]
    assert server.count(CUB_TGZ) == 1  # the CUB images were in place: no second download


def test_prepare_checks_metadata_against_the_pinned_checksums(cub, server, tmp_path):
    root = tmp_path / "root"
    result = run("cub", "--root", root, "--base-url", server.url)
    assert result.exit_code == 2
    assert "checksum mismatch" in result.stderr and f"{METADATA}/CUB/train/image_ids.txt" in result.stderr
    assert not (root / "metadata" / "CUB" / "train" / "image_ids.txt").exists()


def test_imagenet_dir_does_not_apply_to_cub(tmp_path):
    result = run("cub", "--root", tmp_path, "--imagenet-dir", tmp_path)
    assert result.exit_code == 2 and "--imagenet-dir does not apply to dataset 'cub'" in result.stderr


def test_a_dataset_prepare_gets_only_the_options_given(tmp_path, monkeypatch):
    calls = []
    toy = DatasetSpec("toy", "Toy", 2, "boxes", prepare=lambda root: calls.append(root))
    monkeypatch.setitem(registry("dataset")._entries, "toy", (toy, "the test"))
    assert run("toy", "--root", tmp_path).exit_code == 0
    assert calls == [tmp_path]
    result = run("toy", "--root", tmp_path, "--from", tmp_path)
    assert result.exit_code == 2 and "--from does not apply to dataset 'toy'" in result.stderr
    assert calls == [tmp_path]


# --- ImageNet -----------------------------------------------------------------------------------------------

# val2 ids -> planted sizes; in class 0, ids 0 and 2 share a size (sizes alone cannot tell them apart)
V2_SIZES = {"val2/0/0.jpeg": (50, 40), "val2/0/1.jpeg": (60, 40), "val2/0/2.jpeg": (50, 40),
            "val2/1/0.jpeg": (30, 30), "val2/1/1.jpeg": (40, 50), "val2/1/2.jpeg": (45, 35)}
TRAIN_IDS = ("train/n01440764/n01440764_10026.JPEG", "train/n01443537/n01443537_1.JPEG")
TEST_IDS = {"val/ILSVRC2012_val_00000001.JPEG": (32, 24), "val/ILSVRC2012_val_00000002.JPEG": (24, 32)}


@pytest.fixture
def imagenet(server, fakes, tmp_path):
    """Serves ILSVRC metadata and a hashed-name ImageNetV2 tarball; returns (val2 id -> bytes, id -> hash name)."""
    images = {i: fakes.jpeg(w, h, seed=n) for n, (i, (w, h)) in enumerate(V2_SIZES.items())}
    hashed = {i: hashlib.sha1(data).hexdigest() + ".jpeg" for i, data in images.items()}
    server.files[IMAGENETV2_TGZ] = fakes.tar({
        f"imagenetv2-threshold0.7-format-val/{i.split('/')[1]}/{hashed[i]}": data for i, data in images.items()})
    serve_metadata(server, fakes, tmp_path, "ILSVRC", {
        "train": ([(i, n, None) for n, i in enumerate(TRAIN_IDS)], []),
        "val": ([(i, int(i.split("/")[1]), s) for i, s in V2_SIZES.items()],
                [f"{i},0,0,{w - 1},{h - 1}" for i, (w, h) in V2_SIZES.items()]),
        "test": ([(i, n, s) for n, (i, s) in enumerate(TEST_IDS.items())],
                 [f"{i},2,2,10,10" for i in TEST_IDS]),
    })
    return images, hashed


@pytest.fixture
def imagenet_dir(tmp_path, fakes):
    folder = tmp_path / "ILSVRC2012"
    for n, image_id in enumerate((*TRAIN_IDS, *TEST_IDS)):
        (folder / image_id).parent.mkdir(parents=True, exist_ok=True)
        (folder / image_id).write_bytes(fakes.jpeg(32, 24, seed=100 + n))
    return folder


def read_mapping_csv(root):
    lines = (root / "dataset" / "ILSVRC" / "val2" / "mapping.csv").read_text().splitlines()
    assert lines[0] == "image_id,archive_file,how"
    return {line.split(",")[0]: line.split(",", 2)[1:] for line in lines[1:]}


def test_prepare_imagenet_uses_the_published_mapping(imagenet, imagenet_dir, server, tmp_path):
    images, hashed = imagenet
    server.files[MAPPING] = "\n".join(f"{i.removeprefix('val2/')}, {i.split('/')[1]}/{hashed[i]}"
                                      for i in V2_SIZES).encode()
    root = tmp_path / "root"
    result = run("imagenet", "--root", root, "--base-url", server.url, "--no-verify", "--imagenet-dir", imagenet_dir)
    assert result.exit_code == 0, result.output
    for image_id, data in images.items():  # including the two that share a size
        assert (root / "dataset" / "ILSVRC" / image_id).read_bytes() == data
    mapping = read_mapping_csv(root)
    assert mapping == {i: [f"{i.split('/')[1]}/{hashed[i]}", "published mapping"] for i in V2_SIZES}
    assert (root / "dataset" / "ILSVRC" / "train").is_symlink()
    for image_id in (*TRAIN_IDS, *TEST_IDS):
        assert (root / "dataset" / "ILSVRC" / image_id).read_bytes() == (imagenet_dir / image_id).read_bytes()


def test_published_mapping_entries_contradicting_image_sizes_are_reported(imagenet, imagenet_dir, server, tmp_path):
    images, hashed = imagenet
    swapped = dict(hashed)  # 1/0 (30x30) and 1/1 (40x50) exchanged: both contradict image_sizes.txt
    swapped["val2/1/0.jpeg"], swapped["val2/1/1.jpeg"] = hashed["val2/1/1.jpeg"], hashed["val2/1/0.jpeg"]
    server.files[MAPPING] = "\n".join(f"{i.removeprefix('val2/')}, {i.split('/')[1]}/{swapped[i]}"
                                      for i in V2_SIZES).encode()
    root = tmp_path / "root"
    result = run("imagenet", "--root", root, "--base-url", server.url, "--no-verify", "--imagenet-dir", imagenet_dir)
    assert result.exit_code == 2
    todo = [line for line in result.stderr.splitlines() if line.startswith("wsolbench: to do:")]
    assert "2 entries of the published ImageNetV2 mapping do not fit the archive" in todo[0]
    assert f"val2/1/0.jpeg -> 1/{hashed['val2/1/1.jpeg']} (40x50, image_sizes.txt says 30x30)" in todo[0]
    assert "2 of the 6 ImageNetV2 images could not be matched" in todo[1]
    for image_id in ("val2/0/0.jpeg", "val2/0/1.jpeg", "val2/0/2.jpeg", "val2/1/2.jpeg"):
        assert (root / "dataset" / "ILSVRC" / image_id).read_bytes() == images[image_id]
    assert not (root / "dataset" / "ILSVRC" / "val2/1/0.jpeg").exists()


def test_prepare_imagenet_matches_sizes_without_the_published_mapping(imagenet, server, tmp_path):
    images, hashed = imagenet  # MAPPING is not served: 404
    root = tmp_path / "root"
    result = run("imagenet", "--root", root, "--base-url", server.url, "--no-verify")
    v2 = root / "dataset" / "ILSVRC"
    for image_id in ("val2/0/1.jpeg", "val2/1/0.jpeg", "val2/1/1.jpeg", "val2/1/2.jpeg"):  # unique sizes
        assert (v2 / image_id).read_bytes() == images[image_id]
    # the tie: ids in ascending k take the tied files in ascending name order
    first, second = sorted([hashed["val2/0/0.jpeg"], hashed["val2/0/2.jpeg"]])
    by_name = {hashed[i]: images[i] for i in ("val2/0/0.jpeg", "val2/0/2.jpeg")}
    assert (v2 / "val2/0/0.jpeg").read_bytes() == by_name[first]
    assert (v2 / "val2/0/2.jpeg").read_bytes() == by_name[second]
    mapping = read_mapping_csv(root)
    assert mapping["val2/1/1.jpeg"] == [f"1/{hashed['val2/1/1.jpeg']}", "unique size"]
    assert "may be wrong" in mapping["val2/0/0.jpeg"][1] and "may be wrong" in mapping["val2/0/2.jpeg"][1]
    assert sum("may be wrong" in how for _, how in mapping.values()) == 2
    assert "2 ImageNetV2 images share their size" in result.stderr
    # ILSVRC2012 needs a licence: the public part is done, then exit non-zero saying what is missing
    assert result.exit_code == 2
    todo = [line for line in result.stderr.splitlines() if line.startswith("wsolbench: to do:")]
    assert len(todo) == 2
    assert "2 of the 2 ILSVRC2012 train images are missing" in todo[0] and "image-net.org" in todo[0]
    assert "2 of the 2 ILSVRC2012 val images are missing" in todo[1] and next(iter(TEST_IDS)) in todo[1]


def test_prepare_imagenet_lists_images_missing_from_imagenet_dir(imagenet, imagenet_dir, server, tmp_path):
    (imagenet_dir / "val/ILSVRC2012_val_00000002.JPEG").unlink()
    root = tmp_path / "root"
    result = run("imagenet", "--root", root, "--base-url", server.url, "--no-verify", "--imagenet-dir",
                 imagenet_dir, "--copy")
    assert result.exit_code == 2
    todo = [line for line in result.stderr.splitlines() if line.startswith("wsolbench: to do:")]
    assert len(todo) == 1
    assert f"1 of the 2 ILSVRC2012 val images are missing in {imagenet_dir}, " \
           "e.g. val/ILSVRC2012_val_00000002.JPEG" in todo[0]
    copied = root / "dataset" / "ILSVRC" / "val/ILSVRC2012_val_00000001.JPEG"
    assert copied.is_file() and not copied.is_symlink()
    assert not (root / "dataset" / "ILSVRC" / "train").is_symlink()


# --- OpenImages ---------------------------------------------------------------------------------------------


def test_prepare_openimages_from_local_archives(server, fakes, tmp_path):
    ids = {"train": "train/c1/aaa.jpg", "val": "val/c1/bbb.jpg", "test": "test/c2/ccc.jpg"}
    masks = {"val/c1/bbb.jpg": ("val/c1/bbb_mc1_1.png", "val/c1/bbb_ignore.png"),
             "test/c2/ccc.jpg": ("test/c2/ccc_mc2_1.png", "test/c2/ccc_ignore.png")}
    serve_metadata(server, fakes, tmp_path, "OpenImages", {
        split: ([(i, 0, None)], [f"{i},{masks[i][0]},{masks[i][1]}"] if i in masks else [])
        for split, i in ids.items()})
    images = {i: fakes.jpeg(40, 30, seed=n) for n, i in enumerate(ids.values())}
    mask_files = {m: fakes.png_mask(40, 30) for pair in masks.values() for m in pair}
    local = tmp_path / "local"
    local.mkdir()
    root = tmp_path / "root"
    result = run("openimages", "--root", root, "--base-url", server.url, "--no-verify")
    assert result.exit_code == 2
    todo = [line for line in result.stderr.splitlines() if line.startswith("wsolbench: to do:")]
    assert len(todo) == 2 and "OpenImages_images.zip" in todo[0] and "OpenImages_annotations.zip" in todo[1]

    (local / "OpenImages_images.zip").write_bytes(fakes.zip({f"OpenImages/{i}": d for i, d in images.items()}))
    (local / "OpenImages_annotations.zip").write_bytes(fakes.zip(mask_files))
    result = run("openimages", "--root", root, "--base-url", server.url, "--no-verify", "--from", local)
    assert result.exit_code == 0, result.output
    for path, data in {**images, **mask_files}.items():
        assert (root / "dataset" / "OpenImages" / path).read_bytes() == data
