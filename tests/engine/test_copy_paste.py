"""--copy-paste (Simple Copy-Paste): objects of another training image pasted onto this one, the
objects they cover losing those pixels (or dropped), boxes from masks, drawn by (seed, epoch,
index), off for the last epochs as mosaic."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from segcli.data.copy_paste import copy_paste
from segcli.data.mosaic import MIN_PIXELS
from segcli.engine.train.trainer import TrainConfig, Trainer
from tests.helpers import small_train_val


class Draws:
    """An rng giving ``random`` the values listed, in order (the subset's draws, then the flip's)."""

    def __init__(self, *values: float):
        self.values = list(values)

    def random(self, size=None):
        if size is None:
            return self.values.pop(0)
        return np.array([self.values.pop(0) for _ in range(size)])

    def integers(self, high):
        return high - 1


def _image(height: int, width: int, value: int, squares: list[tuple[int, int, int, int]], labels: list[int]):
    pixels = np.full((height, width, 3), value, dtype=np.uint8)
    masks = np.zeros((len(squares), height, width), dtype=np.uint8)
    for mask, (y0, x0, y1, x1) in zip(masks, squares):
        mask[y0:y1, x0:x1] = 1
    boxes = np.array([[x0, y0, x1, y1] for y0, x0, y1, x1 in squares], np.float32).reshape(-1, 4)
    return pixels, {"boxes": boxes, "labels": np.array(labels, np.int64), "masks": masks}


def _box(mask: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(mask)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_pasted_objects_cover_the_image_and_its_objects_lose_what_they_cover():
    # this image: object 1 fully under the pasted square, object 2 half under it, object 3 clear
    pixels, target = _image(40, 60, 10, [(12, 12, 18, 18), (10, 25, 20, 35), (30, 45, 38, 55)], [1, 2, 3])
    source, source_target = _image(40, 60, 200, [(10, 10, 20, 30), (0, 0, 5, 5)], [7, 8])
    before = pixels.copy(), {k: v.copy() for k, v in target.items()}
    out, result = copy_paste(pixels, target, source, source_target, Draws(0.1, 0.9, 0.9))  # the first, not flipped
    assert out.dtype == np.uint8 and result["masks"].dtype == np.uint8
    assert result["boxes"].dtype == np.float32 and result["labels"].dtype == np.int64
    assert result["labels"].tolist() == [2, 3, 7]  # 1 covered whole: dropped; 8 not drawn
    pasted = source_target["masks"][0].astype(bool)
    assert np.array_equal(result["masks"][2], source_target["masks"][0])
    assert (out[pasted] == 200).all() and (out[~pasted] == 10).all()
    assert result["boxes"][2].tolist() == [10, 10, 30, 20]
    half = target["masks"][1].astype(bool)
    assert np.array_equal(result["masks"][0].astype(bool), half & ~pasted)  # exactly the covered pixels lost
    assert result["boxes"][0].tolist() == [30, 10, 35, 20] == _box(result["masks"][0])
    assert np.array_equal(result["masks"][1], target["masks"][2]) and result["boxes"][1].tolist() == [45, 30, 55, 38]
    assert np.array_equal(pixels, before[0]) and all(np.array_equal(target[k], before[1][k]) for k in target)


def test_a_source_of_another_size_is_resized_and_a_flip_mirrors_pixels_and_mask():
    pixels, target = _image(70, 100, 10, [], [])
    source = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    triangle = np.zeros((1, 40, 60), np.uint8)
    for row in range(4, 24):
        triangle[0, row, 6:row + 3] = 1
    source_target = {"boxes": np.array([[6, 4, 26, 24]], np.float32), "labels": np.array([5], np.int64),
                     "masks": triangle}
    out, result = copy_paste(pixels, target, source, source_target, Draws(0.9, 0.1))  # none drawn: one kept; flipped
    expected = cv2.resize(triangle[0, :, ::-1].copy(), (100, 70), interpolation=cv2.INTER_NEAREST)
    below = cv2.resize(source[:, ::-1].copy(), (100, 70), interpolation=cv2.INTER_LINEAR)
    assert result["labels"].tolist() == [5] and result["masks"].shape == (1, 70, 100)
    assert np.array_equal(result["masks"][0], expected) and result["boxes"][0].tolist() == _box(expected)
    assert _box(expected)[0] > 50  # mirrored to the right half
    shown = expected.astype(bool)
    assert np.array_equal(out[shown], below[shown]) and (out[~shown] == 10).all()


def test_objects_left_small_or_under_a_tenth_are_dropped_and_one_mostly_left_is_kept():
    # 1: 5x5 with 5 pixels left (< MIN_PIXELS); 2: 20x20 with a quarter covered; 3: 20x20 with
    # 30 pixels left (>= MIN_PIXELS but under a tenth of its 400)
    pixels, target = _image(60, 60, 10, [(0, 0, 5, 5), (20, 20, 40, 40), (40, 0, 60, 20)], [1, 2, 3])
    mask = np.zeros((1, 60, 60), np.uint8)
    mask[0, :4, :5] = 1
    mask[0, 30:, 30:] = 1
    mask[0, 40:, :20] = 1
    mask[0, 40:43, :10] = 0
    source = np.full((60, 60, 3), 50, np.uint8)
    source_target = {"boxes": np.array([[0, 0, 60, 60]], np.float32), "labels": np.array([9], np.int64), "masks": mask}
    _, result = copy_paste(pixels, target, source, source_target, Draws(0.1, 0.9))
    assert 5 < MIN_PIXELS <= 30 < 40
    assert result["labels"].tolist() == [2, 9]
    assert int(result["masks"][0].sum()) == 300 and result["boxes"][0].tolist() == [20, 20, 40, 40]


def test_no_objects_on_either_side():
    pixels, target = _image(40, 60, 10, [(5, 5, 15, 15)], [1])
    empty_pixels, empty = _image(40, 60, 200, [], [])
    out, result = copy_paste(pixels, target, empty_pixels, empty, np.random.default_rng(0))
    assert np.array_equal(out, pixels) and all(np.array_equal(result[k], target[k]) for k in target)
    out, result = copy_paste(empty_pixels, empty, pixels, target, np.random.default_rng(0))
    assert result["labels"].tolist() == [1] and result["masks"].shape == (1, 40, 60)
    assert result["boxes"].dtype == np.float32 and result["boxes"].shape == (1, 4)
    assert (out[result["masks"][0].astype(bool)] == 10).all()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_train_val(tmp_path_factory.mktemp("copy_paste_data"), 6)


def test_copy_paste_items_are_reproducible_and_stop_for_the_last_epochs(data, tmp_path):
    config = TrainConfig(train=str(data / "train" / "coco.json"), val=str(data / "val" / "coco.json"), epochs=10,
                         batch=2, imgsz=64, workers=0, out=str(tmp_path), name="run", copy_paste=True,
                         mosaic=False)
    assert [config.mixes_images(epoch) for epoch in range(10)] == [True] * 9 + [False]
    seen: list[tuple[bool, bool]] = []
    trainer = Trainer.new(config, lambda event, **_: seen.append((dataset.copy_paste, dataset.mosaic))
                          if event == "epoch_start" else None)
    dataset = trainer.train_data
    dataset.seed, dataset.epoch = 0, 3
    plain = dataset[1]
    dataset.copy_paste = True
    first, again = dataset[1], dataset[1]
    assert not torch.equal(first[1]["masks"], plain[1]["masks"]) and not torch.equal(first[0], plain[0])
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["masks"], again[1]["masks"])
    assert torch.equal(first[1]["labels"], again[1]["labels"])
    pixels, target = dataset._pixels_and_target(1)  # the paste alone (no flip or jitter after it)
    pasted, repeated = dataset._copy_paste(1, pixels, target), dataset._copy_paste(1, pixels, target)
    assert np.array_equal(pasted[0], repeated[0]) and np.array_equal(pasted[1]["masks"], repeated[1]["masks"])
    dataset.epoch = 4
    other = dataset._copy_paste(1, pixels, target)  # another epoch, other objects
    assert not np.array_equal(other[0], pasted[0]) or not np.array_equal(other[1]["masks"], pasted[1]["masks"])
    dataset.mosaic, dataset.copy_paste, dataset.epoch = True, False, 3
    mosaic_only = dataset[1]
    dataset.copy_paste = True
    on_mosaic = dataset[1]  # pasted onto the mosaic canvas, the source resized to it
    assert on_mosaic[0].shape[1:] == (192, 256) and on_mosaic[1]["masks"].shape[1:] == (192, 256)
    assert not torch.equal(on_mosaic[0], mosaic_only[0])
    dataset.mosaic = False
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer.config.epochs = 2  # a short run: its last epoch (of 2) without copy-paste
        trainer.run()
    finally:
        torch.set_num_threads(threads)
    assert seen == [(True, False), (False, False)] and dataset.copy_paste is False
