"""``segcli eval`` on prediction files against a direct pycocotools call, and the faster backend.

A generated COCO ground truth (N images of 320x240, about 10 polygon objects each: squares,
triangles and circles) and predictions made from it (shifted, some missed, some mislabelled,
false alarms, random scores), written as files. Then, in the same run:
  direct:  pycocotools COCO(gt) + loadRes(pred) + COCOeval segm and bbox (evaluate, accumulate,
           summarize): what a user would type;
  segcli:  run_eval(--gt, --pred) with everything segcli adds (validation, joins, per-class and
           per-image tables, PR curves, metrics.json);
  faster:  the same with --backend faster (faster-coco-eval), when installed.
Prints seconds and the ratios segcli / direct (target <= 1.1) and direct / faster (target >= 2.5).

    .venv/bin/python benchmarks/bench_eval.py [--images 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from segcli.engine.eval.run import EvalOptions, run_eval  # noqa: E402


def _shape(rng, width: int, height: int) -> list[float]:
    kind = rng.integers(3)
    size = float(rng.uniform(10, 60))
    cx, cy = float(rng.uniform(size, width - size)), float(rng.uniform(size, height - size))
    if kind == 0:
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    elif kind == 1:
        angles = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(0, np.pi)
    else:
        angles = np.array([0, 0.5, 1, 1.5]) * np.pi + rng.uniform(0, np.pi)
    points = np.stack([cx + size * np.cos(angles), cy + size * np.sin(angles)], 1)
    return [round(float(v), 2) for v in points.ravel()]


def make_files(folder: Path, num_images: int, seed: int = 0) -> tuple[Path, Path, int]:
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.png", "width": 320, "height": 240})
        for _ in range(int(rng.integers(6, 15))):
            polygon = _shape(rng, 320, 240)
            xs, ys = polygon[0::2], polygon[1::2]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            category = int(rng.integers(1, 4))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "segmentation": [polygon], "area": 0.5 * box[2] * box[3] + 1, "bbox": box,
                                "iscrowd": 0})
            if rng.random() < 0.1:
                continue  # missed
            dx, dy = rng.normal(0, 2, size=2)
            moved = [round(v + (dx if k % 2 == 0 else dy), 2) for k, v in enumerate(polygon)]
            label = category if rng.random() > 0.05 else int(rng.integers(1, 4))
            results.append({"image_id": image_id, "category_id": label, "segmentation": [moved],
                            "score": round(float(rng.random()), 4)})
        for _ in range(int(rng.integers(0, 3))):  # false alarms
            results.append({"image_id": image_id, "category_id": int(rng.integers(1, 4)),
                            "segmentation": [_shape(rng, 320, 240)], "score": round(float(rng.random()) * 0.5, 4)})
    truth = {"images": images, "annotations": annotations,
             "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "triangle"}, {"id": 3, "name": "square"}]}
    gt_path, pred_path = folder / "gt.json", folder / "pred.json"
    gt_path.write_text(json.dumps(truth))
    # results as RLE: what segcli predict and most tools write
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
    from pycocotools import mask as mask_utils
    for result in results:
        rle = mask_utils.frPyObjects(result["segmentation"], 240, 320)
        rle = mask_utils.merge(rle)
        result["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
    del coco
    pred_path.write_text(json.dumps(results))
    return gt_path, pred_path, len(annotations)


def direct(gt_path: Path, pred_path: Path) -> tuple[float, list[float]]:
    start = time.perf_counter()
    stats = []
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        for iou_type in ("segm", "bbox"):
            evaluator = COCOeval(gt, gt.loadRes(str(pred_path)), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            stats.append(float(evaluator.stats[0]))
    return time.perf_counter() - start, stats


def segcli(gt_path: Path, pred_path: Path, out: Path, backend: str) -> tuple[float, list[float]]:
    start = time.perf_counter()
    report = run_eval(EvalOptions(gt=gt_path, pred=pred_path, out=out, backend=backend))
    return time.perf_counter() - start, [report["segm"]["AP"], report["bbox"]["AP"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gt_path, pred_path, objects = make_files(folder, args.images)
        print(f"{args.images} images, {objects} objects, {len(json.loads(pred_path.read_text()))} predictions")
        direct_seconds, direct_stats = direct(gt_path, pred_path)
        segcli_seconds, segcli_stats = segcli(gt_path, pred_path, folder / "e1", "pycocotools")
        print(f"direct pycocotools: {direct_seconds:7.1f} s   AP segm/bbox {direct_stats}")
        print(f"segcli eval:        {segcli_seconds:7.1f} s   AP segm/bbox {segcli_stats}")
        print(f"segcli / direct time: {segcli_seconds / direct_seconds:.3f}x   (target <= 1.1)")
        try:
            import faster_coco_eval  # noqa: F401
        except ImportError:
            print("faster-coco-eval not installed: pip install 'segcli[faster]'")
            return
        faster_seconds, faster_stats = segcli(gt_path, pred_path, folder / "e2", "faster")
        print(f"segcli --backend faster: {faster_seconds:7.1f} s   AP segm/bbox {faster_stats}")
        print(f"direct / faster: {direct_seconds / faster_seconds:.2f}x faster   (target >= 2.5)")


if __name__ == "__main__":
    main()
