"""Torch datasets for training and validation, built on the dataset model.

Each image's objects are rasterised once (as compressed RLE, the masks a segcli COCO file holds)
when the dataset is built; pixels are decoded per item with cv2 (EXIF orientation applied, grey,
16-bit and RGBA turned into 8-bit RGB). Augmentations use torchvision.transforms.v2 with
tv_tensors so boxes and masks follow the image. Images with no objects are kept as negatives;
crowd regions are left out of instance targets and ignored (255) in label maps. An image that
cannot be decoded yields ``None`` (the collate function drops it and reports its name).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from segcli.data.copy_paste import copy_paste
from segcli.data.mosaic import mosaic
from segcli.data.targets import class_index, instance_target, semantic_target
from segcli.fileio import not_regular_problem
from segcli.formats.images import decode_image
from segcli.formats.rasterize import IGNORE_INDEX, ObjectMask, rasterize_image
from segcli.ledger import Ledger
from segcli.models.registry import IMAGENET_MEAN, IMAGENET_STD
from segcli.structures import Dataset, ImageRecord

MAX_ASPECT_RATIO = 32  # a 2000x1 image resized to the model's size has a side of 0 pixels


def image_problem(image: ImageRecord) -> tuple[str, str] | None:
    """("skipped" | "damaged", why) for an image training cannot use as it is, else None: not a
    regular file (a FIFO would block the reader), an aspect ratio over ``MAX_ASPECT_RATIO``, or a
    JPEG without its end marker (truncated: libjpeg decodes the rest as grey, and says so only
    on stderr). Reads at most the file's last 4 KB."""
    try:
        if image.path is None or not_regular_problem(image.path) is not None:
            return "skipped", "not a regular file"
        long, short = max(image.width, image.height), min(image.width, image.height)
        if long > MAX_ASPECT_RATIO * short:
            return "skipped", f"{image.width}x{image.height} pixels: sides more than {MAX_ASPECT_RATIO}:1"
        if image.path.suffix.lower() in (".jpg", ".jpeg"):
            with open(image.path, "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
                if b"\xff\xd9" not in fh.read():
                    return "damaged", "truncated JPEG (no end marker): trained on the part that decodes"
    except OSError as exc:  # gone or unreadable since its header was read
        return "skipped", f"cannot be read: {exc.strerror}"
    return None


def read_rgb(image: ImageRecord) -> np.ndarray | None:
    """H x W x 3 uint8 RGB pixels of an image record, or None when it cannot be decoded or its
    size is not the one its header gave (only regular files are opened)."""
    if image.path is None or not os.path.isfile(image.path):
        return None
    pixels = decode_image(image.path)
    return pixels if pixels is not None and pixels.shape[:2] == (image.height, image.width) else None


class SegmentationDataset(TorchDataset):
    """Images of known size with their rasterised objects; subclasses shape the targets.

    Args:
        dataset: the annotations (images resolved: ``path``, ``width``, ``height`` set).
        ledger: where dropped objects are recorded while rasterising.
        train: apply training augmentations.
        classes: model label of each category name (default: the dataset's own, 1..N); a
            validation set takes the training set's so labels agree by name.
    """

    def __init__(self, dataset: Dataset, ledger: Ledger, train: bool, classes: dict[str, int] | None = None):
        self.problems: list[tuple[str, str, str]] = []  # (file name, skipped | damaged, why)
        self.records = []
        for image in (image for image in dataset.images if image.path is not None):
            problem = image_problem(image)
            if problem is not None:
                self.problems.append((image.file_name, *problem))
            if problem is None or problem[0] == "damaged":
                self.records.append(image)
        self.objects: list[list[ObjectMask]] = [rasterize_image(image, ledger) for image in self.records]
        self.classes = classes or class_index(dataset)
        self.train = train
        self.seed, self.epoch = 0, 0  # set by the trainer each epoch

    def augment(self, index: int, *inputs):
        """Apply ``self.transform``; in training with a random stream fixed by (seed, epoch,
        index), so an image gets the same augmentation whatever the worker count, process count
        or resume point (runs are reproducible and distributed runs match single-process ones)."""
        if not self.train:
            return self.transform(*inputs)
        with torch.random.fork_rng(devices=[]):
            # modulo 2^63: torch takes 64-bit seeds (unchanged below it, so runs stay as they were)
            torch.manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index) % 2**63)
            return self.transform(*inputs)

    def __len__(self) -> int:
        return len(self.records)

    def aspect_ratio(self, index: int) -> float:
        """Width / height from the header, for aspect-ratio grouping without decoding."""
        return self.records[index].width / self.records[index].height


class InstanceDataset(SegmentationDataset):
    """Items: (image float [3, H, W] in [0, 1], target with boxes/labels/masks, index)."""

    def __init__(self, dataset: Dataset, ledger: Ledger, train: bool, classes: dict[str, int] | None = None):
        super().__init__(dataset, ledger, train, classes)
        steps = [v2.RandomHorizontalFlip(), v2.ColorJitter(0.2, 0.2, 0.2, 0.02)] if train else []
        self.transform = v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.SanitizeBoundingBoxes()])
        self.mosaic = False  # set by the trainer per epoch (--mosaic, off for the last epochs)
        self.copy_paste = False  # likewise (--copy-paste)

    def _pixels_and_target(self, index: int) -> tuple[np.ndarray | None, dict | None]:
        record = self.records[index]
        pixels = read_rgb(record)
        if pixels is None:
            return None, None
        return pixels, instance_target(self.objects[index], self.classes, record.height, record.width)

    def __getitem__(self, index: int):
        record = self.records[index]
        pixels, target = self._pixels_and_target(index)
        if pixels is None:
            return None, record.file_name
        if self.train and self.mosaic and len(self) > 1:
            pixels, target = self._mosaic(index, pixels, target)
        if self.train and self.copy_paste and len(self) > 1:
            pixels, target = self._copy_paste(index, pixels, target)
        size = pixels.shape[:2]
        sample = {"boxes": tv_tensors.BoundingBoxes(torch.from_numpy(target["boxes"]), format="XYXY", canvas_size=size),
                  "masks": tv_tensors.Mask(torch.from_numpy(target["masks"])),
                  "labels": torch.from_numpy(target["labels"])}
        image, sample = self.augment(index, tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1)), sample)
        return image.as_subclass(torch.Tensor), {k: v.as_subclass(torch.Tensor) for k, v in sample.items()}, index

    def _mosaic(self, index: int, pixels: np.ndarray, target: dict) -> tuple[np.ndarray, dict]:
        """This image and three others drawn by (seed, epoch, index), as one (``data.mosaic``); an
        image that no longer decodes leaves this one as it is."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        tiles = [(pixels, target)]
        for other in rng.choice(len(self), size=3, replace=len(self) < 4):
            tile = self._pixels_and_target(int(other))
            if tile[0] is None:
                return pixels, target
            tiles.append(tile)
        return mosaic(tiles, rng)

    def _copy_paste(self, index: int, pixels: np.ndarray, target: dict) -> tuple[np.ndarray, dict]:
        """Objects of another image drawn by (seed, epoch, index) pasted onto this one (or onto its
        mosaic; ``data.copy_paste``); an image that no longer decodes leaves this one as it is."""
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])  # a stream of its own, not mosaic's
        other = int(rng.integers(len(self) - 1))
        source_pixels, source_target = self._pixels_and_target(other + (other >= index))
        if source_pixels is None:
            return pixels, target
        return copy_paste(pixels, target, source_pixels, source_target, rng)


class SemanticDataset(SegmentationDataset):
    """Items: (normalised image float [3, S, S], int64 label map of the same size, index). A
    validation set is not iterated: validation predicts its images through the shared inference
    path and scores against ``full_label(index)``, the label map at the original resolution."""

    def __init__(self, dataset: Dataset, ledger: Ledger, train: bool, input_size: int,
                 classes: dict[str, int] | None = None):
        super().__init__(dataset, ledger, train, classes)
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
        if train:
            steps = [v2.RandomResize(int(0.75 * input_size), int(1.25 * input_size) + 1),
                     v2.RandomCrop(input_size, pad_if_needed=True, fill=fill), v2.RandomHorizontalFlip(),
                     v2.ColorJitter(0.2, 0.2, 0.2, 0.02)]
        else:
            steps = []
        self.transform = v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def full_label(self, index: int) -> np.ndarray:
        return semantic_target(self.records[index], self.objects[index], self.classes)

    def __getitem__(self, index: int):
        record = self.records[index]
        pixels = read_rgb(record)
        if pixels is None:
            return None, record.file_name
        label = tv_tensors.Mask(torch.from_numpy(self.full_label(index)))
        image, label = self.augment(index, tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1)), label)
        return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor).long(), index


def collate_instance(batch: list) -> tuple[list, list, list, list[str]]:
    """(images, targets, indices, names of images that could not be decoded)."""
    good = [item for item in batch if item[0] is not None]
    bad = [item[1] for item in batch if item[0] is None]
    return [b[0] for b in good], [b[1] for b in good], [b[2] for b in good], bad


def collate_semantic(batch: list) -> tuple[torch.Tensor | None, torch.Tensor | None, list, list[str]]:
    good = [item for item in batch if item[0] is not None]
    bad = [item[1] for item in batch if item[0] is None]
    if not good:
        return None, None, [], bad
    return torch.stack([b[0] for b in good]), torch.stack([b[1] for b in good]), [b[2] for b in good], bad


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of images of the same orientation (landscape or portrait), shuffled per epoch
    with ``seed + epoch``, so padded batches waste little; each rank takes its share.

    Args:
        aspect_ratios: width / height of every image.
        batch_size: images per batch per process.
        shuffle: shuffle (training) or keep order (validation).
        rank, world_size: this process's share when distributed.
    """

    def __init__(self, aspect_ratios: list[float], batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, min_batch: int = 1):
        self.min_batch = min_batch
        self.groups = [0 if ratio >= 1 else 1 for ratio in aspect_ratios]
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0  # batches of this epoch to leave out (resuming in the middle of an epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        order = list(range(len(self.groups)))
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(order)
        buckets: dict[int, list[int]] = defaultdict(list)
        batches = []
        for index in order:
            bucket = buckets[self.groups[index]]
            bucket.append(index)
            if len(bucket) == self.batch_size * self.world_size:
                batches.append(list(bucket))
                bucket.clear()
        leftovers = [i for g in sorted(buckets) for i in buckets[g]]
        for start in range(0, len(leftovers), self.batch_size * self.world_size):
            batches.append(leftovers[start:start + self.batch_size * self.world_size])
        return batches

    def _batches(self) -> list[list[int]]:
        # every rank must take the same number of steps (DDP waits for all), so a final global
        # batch too small to give each rank ``min_batch`` images is dropped (BatchNorm after a 1x1
        # pooling cannot train on one image: PSPNet needs 2)
        return [b[self.rank::self.world_size] for b in self._all_batches()
                if len(b) >= self.world_size * self.min_batch]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.start:]

    def __len__(self) -> int:
        return len(self._batches())
