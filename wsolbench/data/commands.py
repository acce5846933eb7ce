"""``wsolbench data ...``: prepare, verify and synthesize datasets."""

import inspect
import time
from pathlib import Path

import click

from wsolbench.data.spec import SPLITS, DatasetSpec
from wsolbench.errors import WsolbenchError


@click.group()
def data():
    """Prepare, verify and generate datasets in wsolevaluation's layout."""


def dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered as ``name`` (an unknown name is a one-line error)."""
    from wsolbench.plugins import registry

    return registry("dataset").get(name)


_ROOT = click.option("--root", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Dataset root: <root>/metadata/<FOLDER>/... and <root>/dataset/<FOLDER>/...")


@data.command()
@click.argument("dataset")
@_ROOT
@click.option("--from", "from_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder holding archives (and metadata/<FOLDER>/<split>/*.txt) to use instead of downloading.")
@click.option("--base-url", help="Replace the scheme and host of every download URL (a mirror).")
@click.option("--imagenet-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="imagenet: folder with ILSVRC2012 train/<wnid>/*.JPEG and val/ILSVRC2012_val_*.JPEG.")
@click.option("--copy", is_flag=True, help="imagenet: copy the ILSVRC2012 images instead of linking them.")
@click.option("--no-verify", is_flag=True, help="Do not check the SHA-256 of downloaded or local files.")
def prepare(dataset, root, from_dir, base_url, imagenet_dir, copy, no_verify):
    """Download and arrange DATASET under --root; say what must be fetched by hand."""
    from wsolbench.data.prepare import PrepareIncomplete

    spec = dataset_spec(dataset)
    preparer = spec.prepare
    if preparer is None:
        raise WsolbenchError(f"dataset {dataset!r} has no prepare step; put its files under {root} by hand")
    given = {"--from": ("from_dir", from_dir), "--base-url": ("base_url", base_url),
             "--imagenet-dir": ("imagenet_dir", imagenet_dir), "--copy": ("copy", copy or None),
             "--no-verify": ("verify_checksums", False if no_verify else None)}
    parameters = inspect.signature(preparer).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    options = {}
    for flag, (name, value) in given.items():
        if value is not None:
            if name not in parameters and not takes_any:
                raise WsolbenchError(f"{flag} does not apply to dataset {dataset!r}")
            options[name] = value
    try:
        preparer(root, **options)
    except PrepareIncomplete as incomplete:
        for step in incomplete.todo:
            click.echo(f"wsolbench: to do: {step}", err=True)
        raise WsolbenchError(f"{dataset} under {root} is not complete: {len(incomplete.todo)} "
                             f"step{'s' if len(incomplete.todo) > 1 else ''} left to you (listed above)") from None


@data.command()
@click.argument("dataset", required=False)
@_ROOT
@click.option("--folder", help="Metadata/dataset folder name (default: the dataset's); enough on its own.")
@click.option("--splits", default=",".join(SPLITS), show_default=True, help="Comma-separated splits to check.")
@click.option("--no-decode", is_flag=True, help="Read image headers only (sizes), do not decode pixels.")
@click.option("--workers", type=click.IntRange(min=1), help="Threads checking images (default: CPU count).")
def verify(dataset, root, folder, splits, no_decode, workers):
    """Check every image, size, box, mask and split count of DATASET under --root; list every problem."""
    from wsolbench.data.verify import verify_dataset

    if dataset is None and folder is None:
        raise click.UsageError("give a DATASET or --folder NAME")
    spec = dataset_spec(dataset) if dataset is not None else None
    chosen = [s.strip() for s in splits.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SPLITS]
    if unknown or not chosen:
        raise WsolbenchError(f"--splits {splits!r}: splits are {', '.join(SPLITS)}")
    report = verify_dataset(root, folder or spec.folder, splits=chosen,
                            split_sizes=spec.split_sizes if spec else None, decode=not no_decode, workers=workers)
    for problem in report.problems:
        click.echo(problem)
    click.echo(report.table())
    if report.problems:
        count = len(report.problems)
        noun = "problems" if count > 1 else "problem"
        raise WsolbenchError(f"{count} {noun} in {report.folder} under {root} (listed above)")
@data.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset root to create (absent or empty): gets metadata/ and dataset/.")
@click.option("--variant", type=click.Choice(["boxes", "masks"]), default="boxes", show_default=True,
              help="Boxes (CUB-style) or instance + ignore masks (OpenImages-style) for val and test.")
@click.option("--classes", type=click.IntRange(min=2), default=10, show_default=True)
@click.option("--train-per-class", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--val-per-class", type=click.IntRange(min=1), default=5, show_default=True,
              help="Images per class in val (train-fullsup).")
@click.option("--test-per-class", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--image-size", type=click.IntRange(min=32), default=64, show_default=True,
              help="Side of the square images in pixels (224 for GPU runs).")
@click.option("--seed", type=int, default=0, show_default=True)
def synth(out, variant, classes, train_per_class, val_per_class, test_per_class, image_size, seed):
    """Generate the synthetic WSOL benchmark: one textured body per image with a small part that tells
    the class, on a cluttered background. The same arguments give byte-identical files."""
    from wsolbench.data.synthetic import SynthParams, generate

    params = SynthParams(variant=variant, classes=classes, train_per_class=train_per_class,
                         val_per_class=val_per_class, test_per_class=test_per_class, image_size=image_size,
                         seed=seed)
    start = time.perf_counter()
    generate(out, params)
    counts = ", ".join(f"{split} {classes * params.per_class(split)}" for split in ("train", "val", "test"))
    click.echo(f"wrote {params.folder} ({counts} images, {image_size}x{image_size}) to {out} "
               f"in {time.perf_counter() - start:.1f} s")
