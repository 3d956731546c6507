"""Determinism on the CPU: the same seed and data give bit-identical trained weights, whatever
the number of DataLoader workers (each image's augmentation is seeded by seed, epoch and index);
another seed gives other weights."""

from __future__ import annotations

import pytest
import torch

from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.train.trainer import TrainConfig, train
from segcli.models.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism")
    for split, seed in (("train", 3), ("val", 4)):
        generate_shapes_dataset(root / split, 4, seed=seed, sizes=((128, 96),))
    return root


def _weights(tiny_data, tmp_path, name, **options):
    train(TrainConfig(data=str(tiny_data), out=str(tmp_path), name=name, batch=2, val_every=2, **options))
    return read_checkpoint(tmp_path / name / "weights" / "last.pt")["state_dict"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("task, options", [
    ("instance", {"imgsz": 96, "epochs": 2, "warmup_iters": 2}),
    ("instance", {"model": "yolact_resnet18_fpn", "imgsz": 96, "epochs": 2, "warmup_iters": 2}),
    ("semantic", {"model": "pspnet_mobilenet_v3_large", "imgsz": 96, "epochs": 2}),
])
def test_same_seed_same_weights_whatever_the_workers(tiny_data, tmp_path, task, options):
    first = _weights(tiny_data, tmp_path, "a", task=task, seed=5, workers=0, **options)
    again = _weights(tiny_data, tmp_path, "b", task=task, seed=5, workers=2, **options)
    other = _weights(tiny_data, tmp_path, "c", task=task, seed=6, workers=0, **options)
    assert _same(first, again)
    assert not _same(first, other)
