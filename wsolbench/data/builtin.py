"""The built-in datasets, registered through the ``wsolbench`` entry-point group like any plugin's, and
which of them are generated into the cache when no data root is given (:func:`generated_root`).

``cub``, ``imagenet`` and ``openimages`` are wsolevaluation's benchmarks (folders ``CUB``, ``ILSVRC``,
``OpenImages``; split sizes as measured in their metadata); ``synthetic`` and ``synthetic-masks`` are the
generated benchmark of :mod:`wsolbench.data.synthetic` at its default parameters, the only datasets
generated implicitly.
"""

from __future__ import annotations

from pathlib import Path

from wsolbench.data.prepare import prepare_cub, prepare_imagenet, prepare_openimages
from wsolbench.data.spec import SPLITS, DatasetSpec
from wsolbench.data.synthetic import SynthParams, cached
from wsolbench.plugins import hookimpl

#: built-in dataset name -> the parameters it is generated with into the cache when no data root is given
GENERATED_DATASETS = {"synthetic": SynthParams(variant="boxes"), "synthetic-masks": SynthParams(variant="masks")}


def _synthetic_spec(name: str, params: SynthParams) -> DatasetSpec:
    return DatasetSpec(
        name=name, folder=params.folder, num_classes=params.classes, annotation=params.variant,
        description=f"generated: a shared body with a small class-specific part ({params.variant}); "
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
    *(_synthetic_spec(name, params) for name, params in GENERATED_DATASETS.items()),
)


def generated_root(spec: DatasetSpec) -> Path | None:
    """The cached default-parameter root when ``spec`` is one of the built-in synthetic specs
    (:data:`GENERATED_DATASETS`, compared field by field), generated on first use; None for any other spec,
    even one whose folder is named like theirs: only these are generated implicitly."""
    for builtin in BUILTIN_DATASETS:
        if builtin.name in GENERATED_DATASETS and spec == builtin:
            return cached(GENERATED_DATASETS[builtin.name])
    return None


@hookimpl
def wsolbench_register_datasets(register):
    for spec in BUILTIN_DATASETS:
        register(spec.name, spec)
