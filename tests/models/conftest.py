"""Fixtures for model tests: a tiny generated shapes dataset as tensors."""

from __future__ import annotations

import cv2
import pytest
import torch

from segcli.data.synthetic import generate_shapes_dataset
from segcli.data.targets import class_index, instance_target, semantic_target
from segcli.formats.io import locate_images, read_annotations
from segcli.formats.rasterize import rasterize_image
from segcli.ledger import Ledger


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """Two generated 160x120 images: (images [3,H,W] in [0,1], instance targets, label maps)."""
    folder = tmp_path_factory.mktemp("tiny_shapes")
    project = generate_shapes_dataset(folder, 2, seed=3, sizes=((160, 120),))
    ledger = Ledger()
    dataset = read_annotations(project, ledger)
    locate_images(dataset, None, ledger)
    classes = class_index(dataset)
    images, targets, label_maps = [], [], []
    for image in dataset.images:
        pixels = cv2.cvtColor(cv2.imread(str(image.path)), cv2.COLOR_BGR2RGB)
        images.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
        objects = rasterize_image(image, ledger)
        targets.append({k: torch.from_numpy(v) for k, v in
                        instance_target(objects, classes, image.height, image.width).items()})
        label_maps.append(torch.from_numpy(semantic_target(image, objects, classes)))
    return images, targets, torch.stack(label_maps)
