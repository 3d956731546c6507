"""Peak memory of the two inputs that can be huge: an annotation file and an image.

1. Annotation files: a generated COCO file of about --mb MB (320x240 images, polygon objects of
   12-24 points) is read by ``segcli stats`` in a fresh process; its peak resident memory, minus
   that of the same command on a tiny file (the baseline: Python, numpy, shapely, pycocotools),
   is printed as a multiple of the file size. This is the "about 7x" behind SEGCLI_MAX_JSON_MB.
2. Images: ``segcli predict folder`` (shipped Mask R-CNN, every output) on one 10000x10000 JPEG
   and, as the baseline, on one 320x240 JPEG, each in a fresh process; peak resident memory of
   both and their ratio.

Peak memory is the maximum resident set size GNU time (/usr/bin/time) reports. Run by hand:

    .venv/bin/python benchmarks/bench_memory.py [--mb 200] [--side 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _peak_mb(args: list[str]) -> float:
    """Run ``python -m segcli ARGS`` in a fresh process; its own peak resident memory in MB.

    Measured by GNU time, whose child is forked from that small process: a child forked from
    this script would inherit this script's peak (Linux keeps the larger of the two across exec).
    """
    done = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M", sys.executable, "-m", "segcli", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"segcli {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return int(done.stderr.rsplit("PEAK_KB ", 1)[1].split()[0]) / 1024


def _write_coco(path: Path, target_mb: float, seed: int = 0) -> float:
    """A COCO file of about ``target_mb`` MB; returns its real size in MB."""
    rng = np.random.default_rng(seed)
    per_image = 10
    images, annotations = [], []
    size = 0
    image_id = 0
    while size < target_mb * 1024**2:
        image_id += 1
        images.append({"id": image_id, "file_name": f"{image_id:07d}.jpg", "width": 320, "height": 240})
        for _ in range(per_image):
            points = int(rng.integers(12, 25))
            angles = np.sort(rng.uniform(0, 2 * np.pi, points))
            radius = rng.uniform(10, 50)
            cx, cy = rng.uniform(60, 260), rng.uniform(60, 180)
            polygon = np.round(np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1), 2)
            x0, y0 = polygon.min(0)
            x1, y1 = polygon.max(0)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "segmentation": [polygon.ravel().tolist()], "iscrowd": 0,
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                "area": float((x1 - x0) * (y1 - y0) / 2)})
            size += 150 + 16 * points
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "thing"}]}))
    return path.stat().st_size / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200, help="size of the generated COCO file")
    parser.add_argument("--side", type=int, default=10000, help="side of the big square image")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, big = tmp / "small.json", tmp / "big.json"
        small_mb = _write_coco(small, 0.05)
        big_mb = _write_coco(big, args.mb)
        os.environ["SEGCLI_MAX_JSON_MB"] = str(int(big_mb * 2 + 100))

        baseline = _peak_mb(["stats", str(small)])
        peak = _peak_mb(["stats", str(big)])
        print(f"annotation file: {big_mb:.0f} MB COCO -> peak {peak:.0f} MB; baseline ({small_mb * 1024:.0f} kB file) "
              f"{baseline:.0f} MB; {(peak - baseline) / big_mb:.1f}x the file size above the baseline")

        example = next(iter(sorted((REPO / "examples" / "shapes" / "val" / "images").iterdir())))
        pixels = cv2.imread(str(example))
        for name, side in (("small", None), ("big", args.side)):
            folder = tmp / name
            folder.mkdir()
            picture = pixels if side is None else cv2.resize(pixels, (side, side), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(folder / "image.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
        baseline = _peak_mb(["predict", "folder", str(tmp / "small"), "--out", str(tmp / "out_small"), "--procs", "1"])
        peak = _peak_mb(["predict", "folder", str(tmp / "big"), "--out", str(tmp / "out_big"), "--procs", "1"])
        print(f"predict: one {args.side}x{args.side} image -> peak {peak:.0f} MB; one "
              f"{pixels.shape[1]}x{pixels.shape[0]} image -> {baseline:.0f} MB; ratio {peak / baseline:.1f}x")


if __name__ == "__main__":
    main()
