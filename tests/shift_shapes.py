"""A second generator of circles, squares and triangles, for tests only: written apart from
``segcli.data.synthetic`` and rendered differently, so a score on it is not flattered by the
generator the training data came from.

Where segcli's generator draws aliased cv2 shapes (``LINE_8``) in solid colours on noisy
gradients and annotates pixel-edge outlines, this one draws with Pillow at 4x and scales down
(anti-aliased edges), rotates squares, blends objects with partial opacity onto textured
backgrounds (stripes, blobs or flat), blurs and adds noise afterwards, and annotates the
geometric outline of each shape's visible part (shapely), not its pixels. Same three classes,
COCO ids 1, 2, 3.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from shapely.geometry import Point, Polygon

CLASSES = ("circle", "square", "triangle")
SCALE = 4  # supersampling factor of the drawing


def _outline(rng: np.random.Generator, kind: str, cx: float, cy: float, size: float) -> Polygon:
    if kind == "circle":
        return Point(cx, cy).buffer(size / 2, quad_segs=32)
    turn = rng.uniform(0, 2 * math.pi)
    corners = 4 if kind == "square" else 3
    radius = size / math.sqrt(2) if kind == "square" else size / 2
    return Polygon([(cx + radius * math.cos(turn + 2 * math.pi * k / corners),
                     cy + radius * math.sin(turn + 2 * math.pi * k / corners)) for k in range(corners)])


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    base = tuple(int(v) for v in rng.integers(0, 256, 3))
    image = Image.new("RGB", (width * SCALE, height * SCALE), base)
    draw = ImageDraw.Draw(image)
    style = rng.choice(["stripes", "clouds", "flat"])
    if style == "stripes":
        step = int(rng.integers(12, 40)) * SCALE
        other = tuple(int(v) for v in np.clip(np.array(base) + rng.integers(-50, 50, 3), 0, 255))
        for x in range(-height * SCALE, width * SCALE, 2 * step):
            draw.polygon([(x, 0), (x + step, 0), (x + step + height * SCALE, height * SCALE),
                          (x + height * SCALE, height * SCALE)], fill=other)
    elif style == "clouds":  # a smooth random field: texture that is no shape
        coarse = np.clip(np.array(base) + rng.normal(0, 40, (4, 5, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(coarse).resize(image.size, Image.BICUBIC)
    return image


def _render(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[tuple[int, Polygon]]]:
    canvas = _background(rng, width, height).convert("RGBA")
    shapes: list[tuple[int, Polygon]] = []
    for _ in range(int(rng.integers(1, 5))):
        for _try in range(30):
            kind = int(rng.integers(0, 3))
            size = rng.uniform(24, 110)
            cx, cy = rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2)
            outline = _outline(rng, CLASSES[kind], cx, cy, size)
            # an earlier object must keep most of itself, in one piece, without a hole
            kept = [(k, p.difference(outline)) for k, p in shapes]
            if all(v.geom_type == "Polygon" and not v.interiors and v.area > 0.5 * p.area
                   for (_, v), (_, p) in zip(kept, shapes)):
                break
        else:
            continue
        layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3)) + (int(rng.integers(190, 256)),)
        ImageDraw.Draw(layer).polygon([(x * SCALE, y * SCALE) for x, y in outline.exterior.coords], fill=colour)
        canvas = Image.alpha_composite(canvas, layer)
        shapes = [(k, v) for k, v in kept] + [(kind, outline)]
    image = canvas.convert("RGB").resize((width, height), Image.LANCZOS)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    pixels = np.asarray(image).astype(np.float32) + rng.normal(0, rng.uniform(2, 10), (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8), shapes


def make_shift_set(out: Path, count: int, seed: int, size: tuple[int, int] = (320, 240)) -> Path:
    """``count`` images in ``out/images`` and their ground truth in ``out/coco.json``; returns
    the COCO file's path."""
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for number in range(1, count + 1):
        pixels, shapes = _render(rng, *size)
        name = f"shift_{number:04d}.png"
        Image.fromarray(pixels).save(out / "images" / name)
        images.append({"id": number, "file_name": name, "width": size[0], "height": size[1]})
        for kind, polygon in shapes:  # visible parts: each later object was cut out of those below it
            x0, y0, x1, y1 = polygon.bounds
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": kind + 1,
                                "segmentation": [[round(v, 2) for xy in polygon.exterior.coords[:-1] for v in xy]],
                                "area": float(polygon.area), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]}
    path = out / "coco.json"
    path.write_text(json.dumps(coco))
    return path
