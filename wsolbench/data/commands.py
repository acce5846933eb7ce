"""``wsolbench data ...``: prepare, verify and synthesize datasets."""

import time
from pathlib import Path

import click


@click.group()
def data():
    """Prepare, verify and generate datasets in wsolevaluation's layout."""


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
