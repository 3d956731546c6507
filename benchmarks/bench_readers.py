"""Reader growth on hostile sizes (issue 13): each case at two sizes 4x apart, timed with the
real engine, so the ratio of the times shows the growth (4x: linear; 16x: quadratic).

  categories: a COCO file with N categories (and one box each) -> ``segcli stats`` (engine
              dataset_stats): N = 50,000 and 200,000. Was quadratic (duplicate check by list scan).
  speckle:    a label map of isolated pixels (every other row and column: H*W/4 instances) ->
              ``segcli convert`` to COCO: 1000x1000 and 2000x2000. Was one full-size mask per
              instance (1000x1000: 26 s; 2000x2000: over 300 s).
  classes:    a 16-bit label map where every class is scattered over the map -> ``segcli stats``:
              150x150 with 15,000 classes and 300x300 with 60,000. Was one connected-components
              pass per class over the whole map (300x300 with 60,000 classes: 22 s).

Each case runs --repeat times (default 3); prints min and spread (max - min) per size and the
ratio of the minima.

    .venv/bin/python benchmarks/bench_readers.py [--repeat 3] [--only categories,speckle,classes]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from segcli.engine.convert import convert  # noqa: E402
from segcli.engine.stats import dataset_stats  # noqa: E402


def coco_with_categories(folder: Path, count: int) -> Path:
    cv2.imwrite(str(folder / "a.png"), np.zeros((48, 64, 3), np.uint8))
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
            "annotations": [{"id": k, "image_id": 1, "category_id": k, "bbox": [1, 1, 5, 5], "segmentation": [],
                             "iscrowd": 0, "area": 25} for k in range(1, count + 1)],
            "categories": [{"id": k, "name": f"c{k}"} for k in range(1, count + 1)]}
    path = folder / "coco.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def mask_folder(folder: Path, label_map: np.ndarray, classes: int) -> Path:
    maps = folder / "maps"
    maps.mkdir()
    assert cv2.imwrite(str(maps / "a.png"), label_map)
    (maps / "classes.txt").write_text("\n".join(["_background_", *(f"c{k}" for k in range(1, classes + 1))]) + "\n",
                                      encoding="utf-8")
    return maps


def speckle(side: int) -> np.ndarray:
    label_map = np.zeros((side, side), np.uint8)
    label_map[::2, ::2] = 1
    return label_map


def scattered_classes(side: int, classes: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.permutation(side * side) % classes + 1).reshape(side, side).astype(np.uint16)


def case_categories(folder: Path, size: int):
    path = coco_with_categories(folder, size)
    return lambda: dataset_stats(path)


def case_speckle(folder: Path, size: int):
    maps = mask_folder(folder, speckle(size), 1)
    out = folder / "out.json"
    return lambda: convert(maps, out, overwrite=True)


def case_classes(folder: Path, size: int):
    classes = {150: 15_000, 300: 60_000}[size]
    maps = mask_folder(folder, scattered_classes(size, classes), classes)
    return lambda: dataset_stats(maps)


CASES = {"categories": (case_categories, (50_000, 200_000), "categories"),
         "speckle": (case_speckle, (1000, 2000), "px side"),
         "classes": (case_classes, (150, 300), "px side")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(CASES))
    args = parser.parse_args()
    for name in args.only.split(","):
        make, sizes, unit = CASES[name]
        minima = []
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                job = make(Path(tmp), size)
                times = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    job()
                    times.append(time.perf_counter() - start)
            minima.append(min(times))
            print(f"{name:10s} {size:>8,} {unit:10s} min {min(times):7.2f} s  spread {max(times) - min(times):5.2f} s",
                  flush=True)
        print(f"{name:10s} ratio {minima[1] / minima[0]:.1f}x for 4x the size (4x: linear, 16x: quadratic)", flush=True)


if __name__ == "__main__":
    main()
