"""VIA -> COCO conversion speed against a minimal script measured in the same run.

Generates a VIA 2 project of N images (default 10,000) with K polygons each (default 10, so
100,000 polygons), all inside the image, with image files on disk (hard links to one JPEG, so
sizes come from real headers), then times:
  baseline: json.load + PIL header size + pycocotools frPyObjects/merge/area/toBbox + json.dump,
            no validation, no repair, no ledger;
  segcli:   segcli.engine.convert.convert (detection, validation, shapely validity, ledger,
            atomic write).
Prints polygons/s for both and the ratio segcli / baseline.

    .venv/bin/python benchmarks/bench_convert.py [--images 10000] [--polygons-per-image 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from segcli.engine.convert import convert  # noqa: E402

WIDTH, HEIGHT = 640, 480


def make_project(folder: Path, num_images: int, per_image: int, seed: int = 0) -> Path:
    """Write the images (hard links) and the VIA 2 project; return the project path."""
    rng = np.random.default_rng(seed)
    template = folder / "template.jpg"
    cv2.imwrite(str(template), np.full((HEIGHT, WIDTH, 3), 127, np.uint8))
    (folder / "images").mkdir()
    metadata = {}
    for i in range(num_images):
        name = f"images/{i:06d}.jpg"
        os.link(template, folder / name)
        regions = []
        for _ in range(per_image):
            cx, cy = rng.uniform(60, WIDTH - 60), rng.uniform(60, HEIGHT - 60)
            n = int(rng.integers(6, 20))
            angles = np.sort(rng.uniform(0, 2 * math.pi, n))
            radii = rng.uniform(20, 55, n)
            xs = np.round(cx + radii * np.cos(angles), 1).tolist()
            ys = np.round(cy + radii * np.sin(angles), 1).tolist()
            regions.append({"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
                            "region_attributes": {"class": ["a", "b", "c"][int(rng.integers(3))]}})
        size = template.stat().st_size
        metadata[f"{name}{size}"] = {"filename": name, "size": size, "regions": regions, "file_attributes": {}}
    project = {"_via_settings": {"core": {"default_filepath": ""}, "project": {"name": "bench"}},
               "_via_img_metadata": metadata,
               "_via_attributes": {"region": {"class": {"type": "dropdown", "description": "",
                                                        "options": {"a": "a", "b": "b", "c": "c"},
                                                        "default_options": {}}}, "file": {}}}
    path = folder / "project.json"
    path.write_text(json.dumps(project))
    return path


def baseline(project: Path, output: Path) -> int:
    """The minimal converter: no validation. Returns the number of annotations written."""
    data = json.loads(project.read_text())
    names = {"a": 1, "b": 2, "c": 3}
    images, annotations = [], []
    for image_id, entry in enumerate(data["_via_img_metadata"].values(), start=1):
        with Image.open(project.parent / entry["filename"]) as im:
            width, height = im.size
        images.append({"id": image_id, "file_name": entry["filename"], "width": width, "height": height})
        for region in entry["regions"]:
            shape = region["shape_attributes"]
            poly = [v for xy in zip(shape["all_points_x"], shape["all_points_y"]) for v in xy]
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], height, width))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": names[region["region_attributes"]["class"]],
                                "segmentation": [poly], "area": int(mask_utils.area(rle)),
                                "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": 0})
    output.write_text(json.dumps({"images": images, "annotations": annotations,
                                  "categories": [{"id": v, "name": k} for k, v in names.items()]}))
    return len(annotations)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--polygons-per-image", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project = make_project(folder, args.images, args.polygons_per_image)
        polygons = args.images * args.polygons_per_image
        times = {"baseline": [], "segcli": []}
        for repeat in range(args.repeats):
            start = time.perf_counter()
            assert baseline(project, folder / f"base{repeat}.json") == polygons
            times["baseline"].append(time.perf_counter() - start)
            start = time.perf_counter()
            result = convert(project, folder / f"segcli{repeat}.json")
            times["segcli"].append(time.perf_counter() - start)
            assert result.objects_written == polygons
    best = {k: min(v) for k, v in times.items()}
    print(f"VIA -> COCO, {args.images} images, {polygons} polygons (best of {args.repeats})")
    for name, seconds in best.items():
        print(f"  {name:8s} {seconds:7.2f} s  {polygons / seconds:9.0f} polygons/s")
    print(f"  ratio segcli / baseline: {best['segcli'] / best['baseline']:.2f}x")


if __name__ == "__main__":
    main()
