"""Reader internals behind the hostile-input fixes of issue 13 (the CLI side is in
tests/cli/test_hostile_convert.py): the one-pass connected components of label maps match
cv2's per-class components exactly, repeated JSON keys are found where they would drop data and
nowhere else, and regular-file checks never open what they test.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from segcli.fileio import _decode_checking_keys, parse_json
from segcli.formats import geometry
from segcli.formats.images import is_regular_file, not_regular_problem
from segcli.formats.masks import label_components

ENTRY = '{"filename": "a.png", "size": -1, "regions": [], "file_attributes": {}}'


def cv2_components(label_map: np.ndarray) -> list[tuple[int, bytes]]:
    """(class, RLE counts) of every 8-connected component, one cv2 pass per class (the old way)."""
    found = []
    for value in np.unique(label_map):
        if value in (0, 255):
            continue
        count, components = cv2.connectedComponents((label_map == value).astype(np.uint8), connectivity=8)
        found += [(int(value), geometry.mask_to_rle(components == k)["counts"]) for k in range(1, count)]
    return found


@pytest.mark.parametrize("seed", range(40))
def test_one_pass_components_equal_cv2_per_class_components(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 40, 2)
    label_map = rng.integers(0, rng.integers(1, 6), (height, width))
    label_map[rng.random((height, width)) < 0.2] = 255  # void pixels are no object
    components, values = label_components(label_map)
    rles = geometry.components_to_rles(components, len(values))
    ours = [(int(v), r["counts"]) for v, r in zip(values, rles)]
    assert sorted(ours) == sorted(cv2_components(label_map))
    assert [v for v, _ in ours] == sorted(v for v, _ in ours)  # grouped by class
    for rle in rles:
        assert list(rle["size"]) == [height, width]


def test_components_of_an_empty_map():
    components, values = label_components(np.zeros((5, 7), dtype=np.int64))
    assert values.size == 0 and (components == -1).all()
    assert geometry.components_to_rles(components, 0) == []


def test_a_spiral_is_one_component():
    """The longest path a component can take: the union-find still joins it."""
    n = 101
    spiral = np.zeros((n, n), dtype=np.uint8)
    top, left, bottom, right = 0, 0, n - 1, n - 1
    while top <= bottom and left <= right:
        spiral[top, left:right + 1] = spiral[top:bottom + 1, right] = spiral[bottom, left:right + 1] = 1
        spiral[top + 2:bottom + 1, left] = 1
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    _, values = label_components(spiral)
    assert len(values) == len(cv2_components(spiral))


@pytest.mark.parametrize("text, where", [
    (f'{{"k": {ENTRY}, "k": {ENTRY}}}', "at the top level"),
    (f'{{"_via_settings": {{}}, "_via_img_metadata": {{"k": {ENTRY}, "k": {ENTRY}}}}}', "in _via_img_metadata"),
    ('{"images": [], "annotations": [], "images": [], "categories": []}', "at the top level"),
])
def test_repeated_key_where_it_drops_data_is_refused(text, where):
    with pytest.raises(ValueError, match=f"duplicate key .* {where}"):
        parse_json(text, check_keys=True)
    assert isinstance(parse_json(text), dict)  # without check_keys: json's own behaviour


@pytest.mark.parametrize("text", [
    f'{{"k": {ENTRY}, "k2": {ENTRY}}}',
    '{"images": [{"a": 1, "a": 2}], "annotations": []}',  # inside an entry: not checked
    '{"images": ["images"], "annotations": [], "note": "filename"}',  # suspicious counts, no repeat
    '[1, 2, {"a": 1, "a": 2}]',
])
def test_no_repeated_key_reads_as_json_does(text):
    assert parse_json(text, check_keys=True) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1,', '{"a" 1}', '{"a": 1} x', '{"a": }', '{"a": [1, 2}', '{"a": 1, "b": 2', ' {"a"'])
def test_key_check_reports_syntax_errors_like_json(text):
    """The key-by-key reader (run on suspicion) fails as json does, at the same place."""
    with pytest.raises(json.JSONDecodeError) as ours:
        _decode_checking_keys(text, json.JSONDecoder())
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert (ours.value.msg, ours.value.pos) == (theirs.value.msg, theirs.value.pos)


def test_regular_file_checks_never_open(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "file.png").write_bytes(b"x")
    assert is_regular_file(tmp_path / "file.png")
    assert not_regular_problem(tmp_path / "pipe.png") == "not a regular file (a FIFO)"
    assert not_regular_problem(tmp_path) == "not a regular file (a folder)"
    assert "NUL" in not_regular_problem(tmp_path / "a\x00.png")
    assert "too long" in not_regular_problem(tmp_path / ("x" * 300))
    assert not is_regular_file(tmp_path / "missing.png")
