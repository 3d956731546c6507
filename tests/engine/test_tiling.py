"""Tiling for big images: tile origins cover the image with overlap; merging keeps whole objects."""

from __future__ import annotations

import torch

from segcli.engine.core.inference import merge_tile_detections, tile_starts


def test_tiles_cover_the_side_with_at_least_a_quarter_overlap():
    for length, tile in [(100, 320), (320, 320), (321, 320), (1000, 320), (8000, 640), (6001, 512)]:
        starts = tile_starts(length, tile)
        assert starts[0] == 0 and starts[-1] + min(tile, length) == length
        overlaps = [previous + tile - start for previous, start in zip(starts, starts[1:])]
        assert all(overlap >= tile // 4 for overlap in overlaps), (length, tile, overlaps)
        # any object of up to a quarter tile lies whole inside some tile
        for x in range(0, length - tile // 4, 7):
            assert any(s <= x and x + tile // 4 <= s + tile for s in starts)


def test_pieces_inside_a_whole_detection_are_dropped_and_duplicates_merged():
    boxes = torch.tensor([[100., 100, 150, 150],   # whole object, seen in tile A
                          [101., 100, 150, 151],   # the same whole object, seen in tile B
                          [120., 100, 150, 150],   # a piece of it, cut by a tile edge
                          [300., 300, 320, 340],   # a piece of an object seen nowhere whole: kept
                          [120., 100, 150, 150]])  # a piece of another class: kept
    scores = torch.tensor([0.9, 0.8, 0.95, 0.7, 0.6])
    labels = torch.tensor([1, 1, 1, 1, 2])
    cut = torch.tensor([False, False, True, True, True])
    assert merge_tile_detections(boxes, scores, labels, cut, 0.5) == [0, 3, 4]


def test_merging_without_pieces_is_plain_class_wise_nms():
    boxes = torch.tensor([[0., 0, 10, 10], [1., 0, 10, 10], [0., 0, 10, 10]])
    kept = merge_tile_detections(boxes, torch.tensor([0.5, 0.9, 0.7]), torch.tensor([1, 1, 2]),
                                 torch.zeros(3, dtype=torch.bool), 0.5)
    assert kept == [1, 2]
