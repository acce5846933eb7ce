"""The built-in datasets, registered through the ``wsolbench`` entry-point group like any plugin's.

``cub``, ``imagenet`` and ``openimages`` are wsolevaluation's benchmarks (folders ``CUB``, ``ILSVRC``,
``OpenImages``; split sizes as measured in their metadata); ``synthetic`` and ``synthetic-masks`` are the
generated benchmark of :mod:`wsolbench.data.synthetic` at its default parameters.
"""

from __future__ import annotations

from wsolbench.data.prepare import prepare_cub, prepare_imagenet, prepare_openimages
from wsolbench.data.spec import SPLITS, DatasetSpec
from wsolbench.data.synthetic import FOLDERS, SynthParams
from wsolbench.plugins import hookimpl


def _synthetic_spec(name: str, variant: str, what: str) -> DatasetSpec:
    params = SynthParams(variant=variant)
    return DatasetSpec(
        name=name, folder=FOLDERS[variant], num_classes=params.classes, annotation=variant,
        description=f"generated: a shared body with a small class-specific part ({what}); "
                    "`wsolbench data synth` writes other sizes",
        split_sizes={split: params.classes * params.per_class(split) for split in SPLITS})


BUILTIN_DATASETS = (
    DatasetSpec(name="cub", folder="CUB", num_classes=200, annotation="boxes",
                description="CUB-200-2011 birds (train, test) and CUBV2 (val)",
                split_sizes={"train": 5994, "val": 1000, "test": 5794}, prepare=prepare_cub),
    DatasetSpec(name="imagenet", folder="ILSVRC", num_classes=1000, annotation="boxes",
                description="ILSVRC 2012 (train, test = its val) and ImageNetV2 threshold0.7 (val)",
                split_sizes={"train": 1281167, "val": 10000, "test": 50000}, prepare=prepare_imagenet),
    DatasetSpec(name="openimages", folder="OpenImages", num_classes=100, annotation="masks",
                description="OpenImages30k, 100 classes with instance masks",
                split_sizes={"train": 29819, "val": 2500, "test": 5000}, prepare=prepare_openimages),
    _synthetic_spec("synthetic", "boxes", "boxes"),
    _synthetic_spec("synthetic-masks", "masks", "masks"),
)


@hookimpl
def wsolbench_register_datasets(register):
    for spec in BUILTIN_DATASETS:
        register(spec.name, spec)
