"""``wsolbench data prepare``: download what is public, arrange it in the dataset root layout.

Every file prepare fetches is in one table, :data:`RESOURCES` (archives) plus :data:`METADATA_SHA256`
(wsolevaluation's metadata files, fetched from one pinned commit). For each file, prepare uses in turn: the
copy named ``<--from DIR>/<name>``, a copy already in ``<root>/downloads/``, or a download from its URL
(``--base-url`` replaces the scheme and host of every URL, keeping path and query). Files with no direct
URL (CUBV2 and OpenImages30k live on Google Drive) produce an instruction naming the page, the file, and
where to put it; prepare does everything else and then exits non-zero listing what is left.

Archives are unpacked into ``<root>/downloads/extracted/<archive>/``; the files that metadata ids name are
then moved to ``<root>/dataset/<FOLDER>/<image_id>`` (CUB's ``images/<class>/<file>`` and CUBV2's
``<class>/<file>`` land in the same class folders). Images already in place are left alone, so a rerun
only does what is missing.

**ImageNetV2 file names.** wsolevaluation's train-fullsup ids are ``val2/<class>/<k>.jpeg`` (k = 0..9),
but the ImageNetV2 tarball now names its files by a 40-hex-digit hash, ``<class>/<hash>.jpeg``
(wsolevaluation issue #42, still open). The one published mapping between the two is
``metadata/ILSVRC/val/mapping.txt`` (lines ``<c>/<k>.jpeg, <c>/<hash>.jpeg``) of wsolevaluation pull request
#53 (2021, contributed, not merged; its renamed metadata keeps every size, label and box of the original).
prepare fetches it from that commit, uses it, and checks each mapped file's size against
``image_sizes.txt``: an entry that contradicts it is reported, not used. Only if that file cannot be had
does prepare match sizes instead: within each class folder, an id takes the file whose width and height
equal the id's size in ``image_sizes.txt``. Sizes alone leave ties (in wsolevaluation's
``image_sizes.txt``, 4,340 of the 10,000 images share their size with another image of their class); tied
ids (ascending k) take the tied files in ascending name order, and every tie is reported as possibly
wrong. Either way the mapping used is written to ``dataset/ILSVRC/val2/mapping.csv``
(``image_id,archive_file,how``).

**ImageNet ILSVRC2012** train and val (wsolevaluation's ``train`` and ``test``) need a licence: prepare
links (or with ``copy=True`` copies) them from ``imagenet_dir`` (``train/<wnid>/*.JPEG``,
``val/ILSVRC2012_val_*.JPEG``) and reports what is missing there.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from wsolbench.data.download import ARCHIVE_SUFFIXES, download, extract, sha256_of
from wsolbench.data.metadata import IMAGE_SIZES, METADATA_FILES, SplitMetadata, parse_split
from wsolbench.data.spec import SPLITS
from wsolbench.errors import WsolbenchError

#: wsolevaluation commit the metadata comes from (master, 2022-09-20; the metadata last changed 2020-01).
METADATA_COMMIT = "96f4b88679af41f005824661f47e6fe3628af2aa"
#: wsolevaluation pull request #53 (2021-09-30), which added ``metadata/ILSVRC/val/mapping.txt``.
MAPPING_COMMIT = "e9972606b18064ea886f098f2b5b29b9ade75f09"
_RAW = "https://raw.githubusercontent.com/clovaai/wsolevaluation"


@dataclass(frozen=True)
class Resource:
    """A file prepare needs: its file name, direct URL (None: fetched by hand from ``manual``), SHA-256."""

    name: str
    url: str | None
    sha256: str | None
    manual: str = ""


# Every archive prepare needs. A checksum is given only where it was computed from the very bytes served
# (the pinned GitHub blobs); the others are unknown offline, stay None, and are printed after download and
# recorded in <root>/downloads/SHA256SUMS. CUBV2 and OpenImages30k have no direct URL: wsolevaluation's
# scripts used OneDrive "download?cid=..&resid=..&authkey=.." links, which OneDrive no longer serves to
# scripts (403 / "unauthenticated" reported since 2024), and Google Drive needs a browser confirmation
# for files this large; so they are fetched by hand from the Google Drive pages named in wsolevaluation's
# README.
RESOURCES: dict[str, Resource] = {
    "cub": Resource("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                    None),
    "cubv2": Resource("CUBV2.tar", None, None,
                      manual="https://drive.google.com/open?id=1U6cwKHS65wayT9FFvoLIA8cn1k0Ot2M1"),
    "imagenetv2": Resource(
        "imagenetv2-threshold0.7.tar.gz",
        "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-threshold0.7.tar.gz", None),
    "imagenetv2-mapping": Resource(
        "imagenetv2-threshold0.7-mapping.txt", f"{_RAW}/{MAPPING_COMMIT}/metadata/ILSVRC/val/mapping.txt",
        "9b18465a4dee82036f99210d02cded66f7e136a45906309e26216e3f77d2e96c"),
    "openimages-images": Resource("OpenImages_images.zip", None, None,
                                  manual="https://drive.google.com/open?id=1oOb4WQ-lb8SYppHEg3lWnpHk1X8WVO4e"),
    "openimages-masks": Resource("OpenImages_annotations.zip", None, None,
                                 manual="https://drive.google.com/open?id=1eu1YvcZlsEalhXTS_5Ni5tkImCliIPie"),
}

# wsolevaluation's metadata files at METADATA_COMMIT, fetched from
# f"{_RAW}/{METADATA_COMMIT}/metadata/<key>"; SHA-256 of the blobs at that commit. ILSVRC/train's ids and
# labels (1.28M lines) could not be read offline: None, recorded after download like the archives.
METADATA_SHA256: dict[str, str | None] = {
    "CUB/train/image_ids.txt": "c04cbe44e79ef2129afac49a15eb51b8f050cdef140cef4cf908cef823000b66",
    "CUB/train/class_labels.txt": "4f19c23e9fdf3cfae8027a9ea8a1cec1b4ecc6a3cb6cf0fe12723c48cde82b30",
    "CUB/train/image_sizes.txt": "307a9ed88a011e41b16153ed9745f4cf41054fdfb834f412f104873a42a959cd",
    "CUB/train/localization.txt": "672f41482883e8a23e9b1406b8e75aec7c74c18da39b024724c804dba3c480fd",
    "CUB/val/image_ids.txt": "455f26689daf2219d42208fba21be12da219c8724eab38482210c4ac2bc57c02",
    "CUB/val/class_labels.txt": "36791366bc002b82df029b8d84500d731ecc4a5dea603250f134e927d7df5748",
    "CUB/val/image_sizes.txt": "b0d5495ba5af9f7b1e34753cc8548be5debb267a3d7803a5408a3bc4d173ef63",
    "CUB/val/localization.txt": "08ff9afa478b3a7e29a15c173e11927c9cb1867b58ae8a541df69a4c0c830ab5",
    "CUB/test/image_ids.txt": "f654e4676187fc322ad409487faa3568bffa751438198011692e7ff01be574ca",
    "CUB/test/class_labels.txt": "0e65f035658267b2c7eec0d289048bb822e4a5f9a244b034c127ea7fb1367d7d",
    "CUB/test/image_sizes.txt": "96c4e79810545b237b2a79f4623a198ce6effb290fba01790b5587b464abd33b",
    "CUB/test/localization.txt": "85d2bd87f1bfb1641ae42f36df070c34b4755f260267326d2a2d19e65a9acf00",
    "ILSVRC/train/image_ids.txt": None,
    "ILSVRC/train/class_labels.txt": None,
    "ILSVRC/train/image_sizes.txt": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "ILSVRC/train/localization.txt": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "ILSVRC/val/image_ids.txt": "bcd13383b7fdaa8aa9cfd02228b398802cf64b20f6efe13aa4b0696b9431d993",
    "ILSVRC/val/class_labels.txt": "316209e92831b0dd910432afe74c55f2fb33ed72ade1378d3d0954df325ea51e",
    "ILSVRC/val/image_sizes.txt": "4c82c4c1e14bc7f6a1a8a1fe7ab91df2ec369318b39a8b70618d6bd041cc7410",
    "ILSVRC/val/localization.txt": "4d01d6e9eab27ec860092a43f5b7480f10aadbf21234bd01ae419e9c8181ea3f",
    "ILSVRC/test/image_ids.txt": "68bed6c35194a126dba32ad15f2f19596a5f1a3923ffc4ac301402d93e045583",
    "ILSVRC/test/class_labels.txt": "a226044e3e00900291053ecb8e68640385a196c5521c793d242df9e084e898b6",
    "ILSVRC/test/image_sizes.txt": "dde3957c4bf3bdab41ec759386c6ebaa8bed2c1790891ec3465e3a235ed63f3e",
    "ILSVRC/test/localization.txt": "c4a9929837b61e9c2a03524f5b963945782ddc9930c4f8ea764cc10004c5ee62",
    "OpenImages/train/image_ids.txt": "12c206be5ec47a8e94dbc9cb62a5e0325507335c4daa199b88b4792e4e59d084",
    "OpenImages/train/class_labels.txt": "963b8b21ffdbabc145817f92183371fcdbe9adf3636edde878e45186c0ac9132",
    "OpenImages/train/image_sizes.txt": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "OpenImages/train/localization.txt": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "OpenImages/val/image_ids.txt": "32f491e7f25f2a99cb26926b85df5a442df2fa990138b2b938e52674cf4b8ab7",
    "OpenImages/val/class_labels.txt": "fa8500d1d6a940a4d7a2dd383cb0f3f508565a3cc71fd34a06ba1c804ec84707",
    "OpenImages/val/image_sizes.txt": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "OpenImages/val/localization.txt": "74c9b64d462e423008cda2cb0d4c12bb55b69b2fe438d8e10e49dd61d21d01be",
    "OpenImages/test/image_ids.txt": "7f279c569eb501986ecd98917ba6f116524fe744f84684ad16b3a01087c00bf8",
    "OpenImages/test/class_labels.txt": "38d9c771b4031770c5e366ff2c50650ec130ce24ceb4b75be96e494f89a1f959",
    "OpenImages/test/image_sizes.txt": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "OpenImages/test/localization.txt": "9d1f0bad885884f7e79913b00c5b984fc8d532ed80886bd5e72d37e3274aeb55",
}

CUB, ILSVRC, OPENIMAGES = "CUB", "ILSVRC", "OpenImages"
CHECKSUMS_FILE = "SHA256SUMS"
MAPPING_CSV = "mapping.csv"


class PrepareIncomplete(WsolbenchError):
    """Prepare did all it could; ``todo`` lists, one line each, what is left to the user."""

    def __init__(self, dataset: str, root: Path, todo: list[str]):
        self.todo = todo
        steps = "1 step is" if len(todo) == 1 else f"{len(todo)} steps are"
        super().__init__(f"{dataset} under {root} is not complete: {steps} left to you; first: {todo[0]}")


@dataclass
class _Session:
    """One prepare run: where files come from, and what is left for the user."""

    dataset: str
    root: Path
    from_dir: Path | None = None
    base_url: str | None = None
    verify_checksums: bool = True
    progress: bool = True
    todo: list[str] = field(default_factory=list)

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    def data_dir(self, folder: str) -> Path:
        return self.root / "dataset" / folder

    def url(self, url: str) -> str:
        """``url`` with its scheme and host replaced by ``base_url`` when one is set."""
        if not self.base_url:
            return url
        parts = urlsplit(url)
        return self.base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")

    def say(self, message: str) -> None:
        print(f"wsolbench: {message}", file=sys.stderr)

    def rerun_hint(self) -> str:
        return f"wsolbench data prepare {self.dataset} --root {self.root} --from DIR"

    def obtain(self, resource: Resource, *, required: bool = True) -> Path | None:
        """A local, checked copy of ``resource``; None (a to-do recorded if ``required``) if there is none."""
        expected = resource.sha256 if self.verify_checksums else None
        local = self.from_dir / resource.name if self.from_dir else None
        if local is not None and local.is_file():
            actual = sha256_of(local)
            if expected and actual != expected:
                raise WsolbenchError(f"checksum mismatch for {local}: expected sha256 {expected}, got {actual}")
            self._record(resource.name, actual, known=resource.sha256 is not None)
            return local
        dest = self.downloads / resource.name
        if resource.url is None:
            if dest.is_file():
                self._record(resource.name, sha256_of(dest), known=False)
                return dest
            if required:
                self.todo.append(
                    f"fetch {resource.name} by hand from {resource.manual} (no direct download exists), put it in "
                    f"a folder DIR (or at {dest}), then rerun: {self.rerun_hint()}")
            return None
        try:
            actual = download(self.url(resource.url), dest, expected, progress=self.progress)
        except WsolbenchError as error:
            if required:
                raise
            self.say(f"warning: {error}")
            return None
        self._record(resource.name, actual, known=resource.sha256 is not None)
        return dest

    def _record(self, name: str, actual: str, *, known: bool) -> None:
        """Add a file's SHA-256 to downloads/SHA256SUMS; print it when no checksum is known for it."""
        if not known:
            self.say(f"sha256 {actual}  {name} (no known checksum; recorded in {self.downloads / CHECKSUMS_FILE})")
        path = self.downloads / CHECKSUMS_FILE
        sums = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                digest, _, file_name = line.partition("  ")
                sums[file_name] = digest
        sums[name] = actual
        _write_text(path, "".join(f"{digest}  {file_name}\n" for file_name, digest in sorted(sums.items())))

    def fetch_metadata(self, folder: str) -> dict[str, SplitMetadata]:
        """Put the four metadata files of every split of ``folder`` in place and parse them."""
        splits = {}
        for split in SPLITS:
            for file_name in METADATA_FILES:
                key = f"{folder}/{split}/{file_name}"
                dest = self.root / "metadata" / key
                expected = METADATA_SHA256[key] if self.verify_checksums else None
                local = self.from_dir / "metadata" / key if self.from_dir else None
                if dest.is_file() and (expected is None or sha256_of(dest) == expected):
                    continue
                if local is not None and local.is_file():
                    actual = sha256_of(local)
                    if expected and actual != expected:
                        raise WsolbenchError(f"checksum mismatch for {local}: expected sha256 {expected}, "
                                             f"got {actual}")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_name(dest.name + ".tmp")
                    shutil.copyfile(local, tmp)
                    os.replace(tmp, dest)
                else:
                    url = self.url(f"{_RAW}/{METADATA_COMMIT}/metadata/{key}")
                    actual = download(url, dest, expected, progress=self.progress)
                if METADATA_SHA256[key] is None:
                    self._record(f"metadata/{key}", actual, known=False)
            splits[split], _ = parse_split(self.root / "metadata" / folder / split)
        return splits

    def unpack(self, archive: Path) -> Path:
        name = archive.name
        for suffix in ARCHIVE_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        self.say(f"extracting {archive}")
        return extract(archive, self.downloads / "extracted" / name)

    def place(self, archive: Resource, rel_paths: Sequence[str], folder: str, what: str) -> None:
        """Make every ``rel_paths`` exist under ``dataset/<folder>``, taking missing ones from ``archive``."""
        data_dir = self.data_dir(folder)
        missing = [p for p in rel_paths if not os.path.isfile(data_dir / p)]
        if not missing:
            self.say(f"{what}: all {len(rel_paths)} files already in {data_dir}")
            return
        path = self.obtain(archive)
        if path is None:
            return
        staging = self.unpack(path)
        base = _locate(staging, missing, lambda d, p: os.path.isfile(d / p))
        absent = [p for p in missing if base is None or not _move(base / p, data_dir / p)]
        if absent:
            self.todo.append(f"{path} lacks {len(absent)} of the {len(missing)} {what} files needed, e.g. "
                             f"{', '.join(absent[:3])}; is it the right file?")
        else:
            shutil.rmtree(staging)
            self.say(f"{what}: {len(missing)} files placed in {data_dir}")

    def finish(self) -> None:
        if self.todo:
            raise PrepareIncomplete(self.dataset, self.root, self.todo)
        self.say(f"{self.dataset} is ready under {self.root}; check it with: "
                 f"wsolbench data verify {self.dataset} --root {self.root}")


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _locate(staging: Path, rel_paths: Sequence[str], exists, max_depth: int = 3) -> Path | None:
    """The folder at most ``max_depth`` levels under ``staging`` in which most of a sample of ``rel_paths``
    exist (``exists(folder, rel_path)``); None if none of them exists anywhere."""
    sample = list(rel_paths[:: max(1, len(rel_paths) // 20)])[:20]
    best, best_hits = None, 0
    level = [staging]
    for depth in range(max_depth + 1):
        for folder in level:
            hits = sum(bool(exists(folder, p)) for p in sample)
            if hits > best_hits:
                best, best_hits = folder, hits
            if hits == len(sample):
                return folder
        if depth < max_depth:
            level = [child for folder in level for child in sorted(folder.iterdir()) if child.is_dir()]
    return best


def _move(source: Path, target: Path) -> bool:
    if not source.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, target)
    return True


def _ids(splits: dict[str, SplitMetadata], *names: str) -> list[str]:
    return [image_id for name in names for image_id in splits[name].image_ids]


# --- CUB ---------------------------------------------------------------------------------------------------


def prepare_cub(root: str | os.PathLike, *, from_dir: str | os.PathLike | None = None, base_url: str | None = None,
                verify_checksums: bool = True, progress: bool = True) -> None:
    """CUB-200-2011 (train-weaksup, test) from CaltechDATA and CUBV2 (train-fullsup), fetched by hand."""
    session = _session("cub", root, from_dir, base_url, verify_checksums, progress)
    splits = session.fetch_metadata(CUB)
    session.place(RESOURCES["cub"], _ids(splits, "train", "test"), CUB, "CUB-200-2011 image")
    session.place(RESOURCES["cubv2"], _ids(splits, "val"), CUB, "CUBV2 image")
    session.finish()


def _session(dataset, root, from_dir, base_url, verify_checksums, progress) -> _Session:
    if from_dir is not None and not Path(from_dir).is_dir():
        raise WsolbenchError(f"--from folder {from_dir} does not exist")
    return _Session(dataset, Path(root), Path(from_dir) if from_dir is not None else None, base_url,
                    verify_checksums, progress)


# --- OpenImages --------------------------------------------------------------------------------------------


def prepare_openimages(root: str | os.PathLike, *, from_dir: str | os.PathLike | None = None,
                       base_url: str | None = None, verify_checksums: bool = True, progress: bool = True) -> None:
    """OpenImages30k images and masks: both archives are fetched by hand (Google Drive)."""
    session = _session("openimages", root, from_dir, base_url, verify_checksums, progress)
    splits = session.fetch_metadata(OPENIMAGES)
    session.place(RESOURCES["openimages-images"], _ids(splits, *SPLITS), OPENIMAGES, "OpenImages30k image")
    masks = [path for split in SPLITS for annotation in splits[split].masks.values()
             for path in (*annotation.mask_paths, annotation.ignore_path)]
    session.place(RESOURCES["openimages-masks"], masks, OPENIMAGES, "OpenImages30k mask")
    session.finish()


# --- ImageNet ----------------------------------------------------------------------------------------------

ILSVRC2012_HELP = ("ImageNet ILSVRC2012 needs a licence: download ILSVRC2012_img_train.tar and "
                   "ILSVRC2012_img_val.tar from https://image-net.org, unpack them as DIR/train/<wnid>/*.JPEG and "
                   "DIR/val/ILSVRC2012_val_*.JPEG, then rerun with --imagenet-dir DIR")


def prepare_imagenet(root: str | os.PathLike, *, from_dir: str | os.PathLike | None = None,
                     base_url: str | None = None, verify_checksums: bool = True, progress: bool = True,
                     imagenet_dir: str | os.PathLike | None = None, copy: bool = False) -> None:
    """ImageNetV2 threshold-0.7 (train-fullsup) downloaded and renamed to its metadata ids; ILSVRC2012 train
    (train-weaksup) and val (test) linked or copied from ``imagenet_dir``."""
    session = _session("imagenet", root, from_dir, base_url, verify_checksums, progress)
    splits = session.fetch_metadata(ILSVRC)
    _place_imagenetv2(session, splits["val"])
    data_dir = session.data_dir(ILSVRC)
    for split, sub in (("train", "train"), ("test", "val")):
        ids = splits[split].image_ids
        missing = [i for i in ids if not os.path.isfile(data_dir / i)]
        if not missing:
            session.say(f"ILSVRC2012 {sub}: all {len(ids)} images already in {data_dir / sub}")
        elif imagenet_dir is None:
            session.todo.append(f"{len(missing)} of the {len(ids)} ILSVRC2012 {sub} images are missing in "
                                f"{data_dir / sub}, e.g. {', '.join(missing[:3])}. {ILSVRC2012_HELP}")
        else:
            _link_ilsvrc2012(session, Path(imagenet_dir), sub, missing, len(ids), copy)
    session.finish()


def _link_ilsvrc2012(session: _Session, imagenet_dir: Path, sub: str, missing: list[str], total: int,
                     copy: bool) -> None:
    """Link (or copy) the ``missing`` ids (``<sub>/...``) from ``imagenet_dir`` into dataset/ILSVRC."""
    data_dir = session.data_dir(ILSVRC)
    absent = [i for i in missing if not os.path.isfile(imagenet_dir / i)]
    if absent:
        session.todo.append(f"{len(absent)} of the {total} ILSVRC2012 {sub} images are missing in {imagenet_dir}, "
                            f"e.g. {', '.join(absent[:5])}. {ILSVRC2012_HELP}")
    target = data_dir / sub
    if not copy and not os.path.lexists(target) and (imagenet_dir / sub).is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to((imagenet_dir / sub).resolve(), target_is_directory=True)
        session.say(f"linked {target} -> {(imagenet_dir / sub).resolve()}")
        return
    absent_set = set(absent)
    present = [i for i in missing if i not in absent_set]
    for image_id in present:
        destination = data_dir / image_id
        destination.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copy2(imagenet_dir / image_id, destination)
        else:
            destination.symlink_to((imagenet_dir / image_id).resolve())
    session.say(f"{'copied' if copy else 'linked'} {len(present)} ILSVRC2012 {sub} images into {target}")


def _place_imagenetv2(session: _Session, metadata: SplitMetadata) -> None:
    data_dir = session.data_dir(ILSVRC)
    ids = list(metadata.image_ids)
    missing = [i for i in ids if not os.path.isfile(data_dir / i)]
    if not missing:
        session.say(f"ImageNetV2: all {len(ids)} images already in {data_dir / 'val2'}")
        return
    archive = session.obtain(RESOURCES["imagenetv2"])
    if archive is None:
        return
    staging = session.unpack(archive)
    classes = sorted({_class_of(i) for i in missing})
    base = _locate(staging, classes, lambda d, c: os.path.isdir(d / c))
    if base is None:
        session.todo.append(f"{archive} holds no class folders {', '.join(classes[:3])}, ...; is it the right file?")
        return
    if all((base / i.removeprefix("val2/")).is_file() for i in missing[:20]):
        mapping = {i: (i.removeprefix("val2/"), "same name") for i in missing}  # an archive with the old names
    else:
        wanted = set(missing)
        mapping = (_documented_mapping(session, base, metadata, wanted)
                   or _size_mapping(session, base, metadata, wanted))
    _write_mapping_csv(data_dir / "val2" / MAPPING_CSV, mapping)
    absent = [i for i in missing if i not in mapping or not _move(base / mapping[i][0], data_dir / i)]
    if absent:
        session.todo.append(f"{len(absent)} of the {len(ids)} ImageNetV2 images could not be matched to files of "
                            f"{archive}, e.g. {', '.join(absent[:3])} (see {data_dir / 'val2' / MAPPING_CSV})")
    else:
        shutil.rmtree(staging)
        session.say(f"ImageNetV2: {len(missing)} images placed in {data_dir / 'val2'}; mapping in "
                    f"{data_dir / 'val2' / MAPPING_CSV}")


def _class_of(image_id: str) -> str:
    return image_id.split("/")[1]


def _id_key(image_id: str):
    """Sort key of ``val2/<class>/<k>.jpeg`` ids: numeric class, then numeric k."""
    parts = image_id.split("/")
    stem = parts[-1].split(".")[0]
    return (0, int(parts[1]), int(stem), image_id) if len(parts) == 3 and parts[1].isdigit() and stem.isdigit() \
        else (1, 0, 0, image_id)


def _write_mapping_csv(path: Path, mapping: dict[str, tuple[str, str]]) -> None:
    """Merge ``mapping`` into the CSV ``image_id,archive_file,how`` at ``path`` (rows of earlier runs kept)."""
    rows = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            image_id, source, how = line.split(",", 2)
            rows[image_id] = (source, how)
    rows.update(mapping)
    ordered = sorted(rows.items(), key=lambda row: _id_key(row[0]))
    _write_text(path, "image_id,archive_file,how\n" + "".join(f"{i},{source},{how}\n" for i, (source, how) in ordered))


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError):
        return None


def _documented_mapping(session: _Session, base: Path, metadata: SplitMetadata,
                        wanted: set[str]) -> dict[str, tuple[str, str]]:
    """``wanted`` id -> (file under ``base``, how) from wsolevaluation's mapping.txt; {} if it cannot be had.

    Entries whose file is missing or whose size differs from image_sizes.txt are left out and reported.
    """
    path = session.obtain(RESOURCES["imagenetv2-mapping"], required=False)
    if path is None:
        session.say("warning: the published ImageNetV2 mapping is unavailable; matching files by image size")
        return {}
    mapping, rejected = {}, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not all(fields):
            raise WsolbenchError(f"{path}:{number}: expected '<class>/<k>.jpeg, <class>/<file>.jpeg', got {line!r}")
        image_id, source = f"val2/{fields[0]}", fields[1]
        if image_id not in wanted:
            continue
        size = _image_size(base / source)
        listed = metadata.image_sizes.get(image_id)
        if size is None or (listed is not None and size != listed):
            found = "missing or unreadable" if size is None else f"{size[0]}x{size[1]}"
            rejected.append(f"{image_id} -> {source} ({found}, {IMAGE_SIZES} says {listed[0]}x{listed[1]})"
                            if listed else f"{image_id} -> {source} ({found})")
            continue
        mapping[image_id] = (source, "published mapping")
    if rejected:
        session.todo.append(f"{len(rejected)} entries of the published ImageNetV2 mapping do not fit the archive, "
                            f"e.g. {'; '.join(rejected[:3])}")
    return mapping


def _size_mapping(session: _Session, base: Path, metadata: SplitMetadata,
                  wanted: set[str]) -> dict[str, tuple[str, str]]:
    """``wanted`` id -> (file under ``base``, how), matching sizes within each class folder (module docstring)."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for image_id in metadata.image_ids:
        if image_id in wanted:
            by_class[_class_of(image_id)].append(image_id)
    mapping: dict[str, tuple[str, str]] = {}
    ties = unmatched = 0
    for cls, class_ids in by_class.items():
        folder = base / cls
        files = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        files_by_size: dict[tuple[int, int] | None, list[str]] = defaultdict(list)
        for name in files:
            files_by_size[_image_size(folder / name)].append(name)
        ids_by_size: dict[tuple[int, int] | None, list[str]] = defaultdict(list)
        for image_id in sorted(class_ids, key=_id_key):
            ids_by_size[metadata.image_sizes.get(image_id)].append(image_id)
        for size, same_size_ids in ids_by_size.items():
            candidates = files_by_size.get(size, []) if size is not None else []
            for k, image_id in enumerate(same_size_ids):
                if k >= len(candidates):
                    unmatched += 1
                    continue
                tied = len(same_size_ids) > 1 or len(candidates) > 1
                how = (f"size {size[0]}x{size[1]} shared by {len(same_size_ids)} ids and {len(candidates)} files: "
                       f"assigned in name order; may be wrong" if tied else "unique size")
                ties += tied
                mapping[image_id] = (f"{cls}/{candidates[k]}", how)
    if ties:
        session.say(f"warning: {ties} ImageNetV2 images share their size with another image of their class; they "
                    "were assigned in file-name order and may be swapped (their boxes would then be wrong)")
    if unmatched:
        session.say(f"warning: {unmatched} ImageNetV2 ids have no file of their size in their class folder")
    return mapping
