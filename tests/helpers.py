"""Small builders shared by tests: images on disk and VIA/COCO dicts."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """Write a random RGB PNG (or JPEG by suffix) of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return path


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def via2_project(images: dict[str, list[dict]], attributes: dict | None = None,
                 file_attributes: dict[str, dict] | None = None) -> dict:
    """A VIA 2 project from {filename: [region, ...]}."""
    metadata = {}
    for name, regions in images.items():
        metadata[f"{name}-1"] = {"filename": name, "size": -1, "regions": regions,
                                 "file_attributes": (file_attributes or {}).get(name, {})}
    return {"_via_settings": {"core": {"buffer_size": 18, "filepath": {}, "default_filepath": ""},
                              "project": {"name": "t"}},
            "_via_img_metadata": metadata,
            "_via_attributes": attributes or {"region": {}, "file": {}}}


def region(shape: dict, **attrs) -> dict:
    return {"shape_attributes": shape, "region_attributes": attrs}
