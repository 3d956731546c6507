"""Find and load the training and validation splits of ``segcli train``.

DATA is a folder with ``train/`` and ``val/`` (each holding its images and exactly one annotation
file of any supported format: the matterport balloon layout works as it is), or the files are
given one by one. Category names come from the training annotations; validation categories are
matched to them by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segcli.engine.core.annotation_files import find_annotation_file
from segcli.errors import SegcliError
from segcli.formats.io import locate_images, read_annotations
from segcli.formats.split_record import recorded_images_folder
from segcli.ledger import Ledger
from segcli.structures import Dataset

@dataclass
class Split:
    """One loaded split: annotations with image paths and sizes resolved, and its ledger."""

    name: str
    dataset: Dataset
    ledger: Ledger
    annotation: Path
    images: Path


def load_split(name: str, annotation: Path, images: Path | None, label_attr: str | None,
               category: str) -> Split:
    """Read one split, resolve its images; errors for bad input or a split with no usable image."""
    ledger = Ledger(str(annotation))
    dataset = read_annotations(annotation, ledger, label_attr, category, images)
    ledger.raise_errors()
    if not dataset.images:
        raise SegcliError(f"the {name} split has no images", annotation)
    folder = locate_images(dataset, images, ledger)
    usable = [image for image in dataset.images if image.path is not None]
    if name == "train" and not any(image.annotations for image in usable):
        raise SegcliError("no object in any training image that was found on disk", annotation)
    return Split(name, dataset, ledger, annotation, folder)


def resolve_splits(data: Path | None, train: Path | None, train_images: Path | None, val: Path | None,
                   val_images: Path | None, label_attr: str | None, category: str) -> tuple[Split, Split]:
    """Load (train, val) from DATA/train + DATA/val or from explicit files."""
    if data is not None:
        if not Path(data).is_dir():
            raise SegcliError("DATA must be a folder with train/ and val/", data)
        train = train or find_annotation_file(Path(data) / "train")
        val = val or find_annotation_file(Path(data) / "val")
        recorded = recorded_images_folder(Path(data))  # a `segcli split` output: images stay where they were
        train_images = train_images or recorded or train.parent
        val_images = val_images or recorded or val.parent
    if train is None or val is None:
        raise SegcliError("give DATA (a folder with train/ and val/) or both --train and --val")
    train_split = load_split("train", Path(train), train_images, label_attr, category)
    val_split = load_split("val", Path(val), val_images, label_attr, category)
    check_categories(train_split, val_split)
    return train_split, val_split


def check_categories(train: Split, val: Split) -> None:
    """Every category used in val must exist in train (matched by name)."""
    known = {c.name for c in train.dataset.categories}
    used = {a.category for image in val.dataset.images for a in image.annotations}
    unknown = sorted(used - known)
    if unknown:
        raise SegcliError(f"validation categories absent from the training set: {', '.join(unknown)} "
                          f"(training has {', '.join(sorted(known))})", val.annotation)
