"""--mosaic (issue 16, the training recipe): four training images in one, objects cut at the
quadrants with their boxes from their masks, drawn by (seed, epoch, index), off for the last
epochs; and --optimizer auto."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcli.data.mosaic import MIN_PIXELS, mosaic
from segcli.engine.train.metrics_csv import read_metrics_csv
from segcli.engine.train.trainer import TrainConfig, Trainer
from tests.helpers import small_train_val


def _tile(height: int, width: int, value: int, square: tuple[int, int, int, int]) -> tuple[np.ndarray, dict]:
    pixels = np.full((height, width, 3), value, dtype=np.uint8)
    mask = np.zeros((1, height, width), dtype=np.uint8)
    y0, x0, y1, x1 = square
    mask[0, y0:y1, x0:x1] = 1
    return pixels, {"boxes": np.array([[x0, y0, x1, y1]], np.float32), "labels": np.array([value], np.int64),
                    "masks": mask}


def test_four_images_meet_at_the_centre_and_objects_keep_their_visible_part():
    tiles = [_tile(40, 60, 10 * (k + 1), (5, 5, 35, 55)) for k in range(4)]
    pixels, target = mosaic(tiles, np.random.default_rng(0))
    assert pixels.shape == (80, 120, 3)
    assert len(target["masks"]) == len(target["labels"]) == len(target["boxes"])
    for mask, label, box in zip(target["masks"], target["labels"], target["boxes"]):
        assert mask.sum() >= MIN_PIXELS
        assert set(np.unique(pixels[mask.astype(bool)][:, 0])) == {label}  # the object's own image below it
        rows, cols = np.nonzero(mask)
        assert box.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    values = set(np.unique(pixels[..., 0]))
    assert values <= {10, 20, 30, 40, 114} and len(values & {10, 20, 30, 40}) >= 2


def test_a_sliver_left_of_an_object_is_dropped():
    # the centre at (20, 30) of an 80 x 120 canvas: the first image ends there, so only its
    # bottom-right 20 x 30 shows; an object in its top-left corner is cut away whole
    tiles = [_tile(40, 60, 10, (0, 0, 10, 10))] + [_tile(40, 60, 20, (30, 50, 40, 60))] * 3

    class Centre:
        def uniform(self, low, high):
            return low

    _, target = mosaic(tiles, Centre())
    assert 10 not in target["labels"].tolist()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_train_val(tmp_path_factory.mktemp("mosaic_data"), 6)


def test_mosaic_items_are_reproducible_and_stop_for_the_last_epochs(data, tmp_path):
    config = TrainConfig(train=str(data / "train" / "coco.json"), val=str(data / "val" / "coco.json"), epochs=10,
                         batch=2, imgsz=64, workers=0, out=str(tmp_path), name="run", mosaic=True,
                         optimizer="auto")
    trainer = Trainer.new(config)
    assert config.optimizer == "adamw" and config.lr == round(0.01 / 7, 6)  # auto, 3 classes
    dataset = trainer.train_data
    dataset.mosaic, dataset.seed, dataset.epoch = True, 0, 3
    first, again = dataset[1], dataset[1]
    assert first[0].shape[1:] == (192, 256)  # twice the image
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["masks"], again[1]["masks"])
    dataset.epoch = 4
    assert not torch.equal(dataset[1][0], first[0])  # another epoch, another mosaic
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer.config.epochs = 2  # a short run: its last epoch (of 2) without mosaic
        trainer.run()
    finally:
        torch.set_num_threads(threads)
    assert dataset.mosaic is False and len(read_metrics_csv(tmp_path / "run" / "metrics.csv")) == 2
