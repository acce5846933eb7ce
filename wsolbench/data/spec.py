"""What a registered dataset is: its place in the wsolevaluation layout and its expected shape.

A dataset root is laid out like a wsolevaluation checkout, so an existing one can be used as it is::

    <root>/metadata/<FOLDER>/{train,val,test}/{image_ids,class_labels,image_sizes,localization}.txt
    <root>/dataset/<FOLDER>/<image_id>                 images (ids are relative paths)
    <root>/dataset/<FOLDER>/<mask_path>                instance and ignore masks (mask datasets)

``train`` is train-weaksup, ``val`` train-fullsup, ``test`` test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as registered through ``wsolbench_register_datasets``.

    ``split_sizes`` gives the expected number of images per split (splits left out are not checked);
    ``prepare(root, **options)``, when given, downloads or arranges the dataset under ``root``.
    """

    name: str
    folder: str
    num_classes: int
    annotation: str  # "boxes" or "masks"
    description: str = ""
    split_sizes: dict[str, int] = field(default_factory=dict)
    prepare: Callable[..., None] | None = None

    def metadata_dir(self, root: str | Path, split: str) -> Path:
        return Path(root) / "metadata" / self.folder / split

    def data_dir(self, root: str | Path) -> Path:
        """Folder that image ids and mask paths are relative to."""
        return Path(root) / "dataset" / self.folder
