"""Deterministic synthetic instance-segmentation data: circles, squares and triangles on noisy
gradients, written as PNG images with a VIA 2 project and optionally COCO instances JSON. One
``numpy.random.default_rng(seed)`` drives everything, so the same seed gives byte-identical files.
Each image has a two-colour gradient with Gaussian noise as background and 1 to 5 solid-colour
objects drawn in order with cv2 (``LINE_8``), later ones occluding earlier ones; an object is
re-sampled when it would hide more than 60 % of an earlier object, split its visible part or punch
a hole in it, so every instance is one simply connected region. Each annotation is the outer
outline of the instance's visible mask along pixel edges, lightly simplified; COCO area and bbox are those of that polygon as pycocotools rasterises it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segcli.errors import SegcliError
from segcli.fileio import write_json_atomic
from segcli.formats import geometry
from segcli.formats.geometry import polygons_to_rle, rle_area_bbox
from segcli.formats.via import VIA2_SETTINGS

CATEGORIES = ("circle", "square", "triangle")
"""Category names; COCO ids are 1, 2, 3 in this order."""

MIN_OBJECT_SIZE, MAX_OBJECT_SIZE = 20.0, 140.0
"""Object size in pixels: circle diameter, square side, twice the triangle circumradius."""

MAX_OBJECTS = 5
MAX_TRIES = 50
MIN_VISIBLE_FRACTION = 0.4
MIN_CONTRAST = 60.0
"""Mean absolute RGB difference an object's colour keeps from its surroundings."""

NOISE_SIGMA = 8.0
MIN_IMAGE_SIDE = 32
POLYGON_EPSILON = 0.5


@dataclass(frozen=True)
class Variety:
    """How varied the rendered images are; ``PLAIN`` is the original generator, ``VARIED`` the
    harder one (see the module docstring)."""

    max_objects: int = MAX_OBJECTS
    min_objects: int = 1
    min_size: float = MIN_OBJECT_SIZE
    log_sizes: bool = False
    min_visible_fraction: float = MIN_VISIBLE_FRACTION
    low_contrast_share: float = 0.0
    low_contrast: float = 25.0
    transparent_share: float = 0.0
    min_opacity: float = 0.6
    backgrounds: tuple[str, ...] = ("gradient",)
    noise_sigma: tuple[float, float] = (NOISE_SIGMA, NOISE_SIGMA)
    blur_share: float = 0.0
    max_blur_sigma: float = 1.5


PLAIN = Variety()
VARIED = Variety(max_objects=8, min_objects=0, min_size=10.0, log_sizes=True, min_visible_fraction=0.25,
                 low_contrast_share=0.25, transparent_share=0.35,
                 backgrounds=("gradient", "flat", "texture", "texture_lines"),
                 noise_sigma=(1.0, 14.0), blur_share=0.5)


@dataclass
class ShapeObject:
    """One drawn object.

    Attributes:
        category: one of ``CATEGORIES``.
        color: RGB colour, three ints in [0, 255].
        full_area: pixel count of the whole object as drawn.
        visible: H x W bool mask of the pixels no later object covers.
    """

    category: str
    color: tuple[int, int, int]
    full_area: int
    visible: np.ndarray


def generate_shapes_dataset(out_dir: Path, num_images: int, seed: int, *,
                            sizes: Sequence[tuple[int, int]] = ((320, 240),),
                            coco: bool = False, image_format: str = "png", varied: bool = False) -> Path:
    """Write a synthetic shapes dataset: PNG images, a VIA 2 project and optionally COCO JSON.

    Args:
        out_dir: folder to write into; gets ``images/000000.png``..., ``via_project.json`` and,
            with ``coco``, ``coco.json``. Existing files of the same names are replaced.
        num_images: number of images (>= 0).
        seed: seed for ``numpy.random.default_rng``; the same seed gives byte-identical files.
        sizes: candidate image sizes as ``(width, height)``; with several, each image picks one
            uniformly at random.
        coco: also write COCO instances JSON (polygon segmentation, pycocotools area and bbox).
        image_format: "png" (lossless) or "jpg" (quality 92, about 6x smaller; the committed
            examples use it).
        varied: draw the harder, more varied images (``VARIED``; some images have no object).

    Returns:
        The path of ``via_project.json``.
    """
    sizes = check_sizes(sizes)
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
        raise SegcliError(f"number of images must be an integer >= 0, got {num_images!r}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if image_format not in ("png", "jpg"):
        raise SegcliError(f"image format must be png or jpg, got {image_format!r}")
    variety = VARIED if varied else PLAIN
    records = [write_image(rng, out_dir, index, sizes, image_format, variety) for index in range(num_images)]
    via_path = out_dir / "via_project.json"
    write_json_atomic(via_path, build_via_project(records), overwrite=True)
    if coco:
        write_json_atomic(out_dir / "coco.json", build_coco(records), overwrite=True)
    return via_path


def check_sizes(sizes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Validate ``(width, height)`` pairs; raise SegcliError on an empty list or a tiny size."""
    pairs = [tuple(size) for size in sizes]
    if not pairs:
        raise SegcliError("sizes must hold at least one (width, height)")
    for pair in pairs:
        if (len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair)
                or min(pair) < MIN_IMAGE_SIDE):
            raise SegcliError(f"image size must be (width, height) integers >= {MIN_IMAGE_SIDE}, "
                              f"got {pair!r}")
    return [(int(w), int(h)) for w, h in pairs]


def write_image(rng: np.random.Generator, out_dir: Path, index: int,
                sizes: list[tuple[int, int]], image_format: str = "png", variety: Variety = PLAIN) -> dict:
    """Render image ``index``, save it (PNG or JPEG) and return its record (file, size, instances)."""
    width, height = sizes[int(rng.integers(len(sizes)))] if len(sizes) > 1 else sizes[0]
    image, objects = render_image(rng, width, height, variety)
    filename = f"images/{index:06d}.{image_format}"
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if image_format == "jpg" else []
    ok, png = cv2.imencode(f".{image_format}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise SegcliError("cv2 could not encode the image as PNG", out_dir / filename)
    (out_dir / filename).write_bytes(png.tobytes())
    instances = [(obj.category, mask_to_polygon(obj.visible)) for obj in objects]
    return {"filename": filename, "size": int(png.size), "width": width, "height": height,
            "instances": instances}


def render_image(rng: np.random.Generator, width: int, height: int, variety: Variety = PLAIN
                 ) -> tuple[np.ndarray, list[ShapeObject]]:
    """Draw a background and ``variety.min_objects`` to ``max_objects`` objects.

    Returns:
        (H x W x 3 uint8 RGB image, the objects in drawing order with their visible masks).
    """
    if variety == PLAIN:  # the original draw order, so old seeds give the same files
        background = draw_background(rng, width, height)
    else:
        background = draw_varied_background(rng, width, height, variety)
    image = background.astype(np.float64) if variety != PLAIN else background.copy()
    objects: list[ShapeObject] = []
    for _ in range(int(rng.integers(variety.min_objects, variety.max_objects + 1))):
        placed = place_object(rng, background, objects, width, height, variety)
        if placed is None:
            continue
        obj, mask, opacity = placed
        for earlier in objects:
            earlier.visible &= ~mask
        image[mask] = opacity * np.array(obj.color, np.float64) + (1.0 - opacity) * image[mask]
        objects.append(obj)
    if not objects and variety.min_objects > 0:
        raise RuntimeError("could not place a single object; image too small?")
    if variety == PLAIN:
        return image, objects
    return finish_varied_image(rng, image, variety), objects


def draw_background(rng: np.random.Generator, width: int, height: int,
                    noise_sigma: float = NOISE_SIGMA) -> np.ndarray:
    """Linear gradient between two random colours in a random direction, plus Gaussian noise."""
    start, end = rng.integers(0, 256, size=(2, 3)).astype(np.float64)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
    image = start + ramp[..., None] * (end - start)
    if noise_sigma:
        image += rng.normal(0.0, noise_sigma, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def draw_varied_background(rng: np.random.Generator, width: int, height: int, variety: Variety) -> np.ndarray:
    """A gradient, a flat colour or a texture (a smooth random field, optionally with lines), as
    float RGB without noise (``finish_varied_image`` adds that)."""
    style = variety.backgrounds[int(rng.integers(len(variety.backgrounds)))]
    if style == "gradient":
        return draw_background(rng, width, height, noise_sigma=0.0).astype(np.float64)
    base = rng.integers(0, 256, size=3).astype(np.float64)
    if style == "flat":
        return np.broadcast_to(base, (height, width, 3)).copy()
    cells = (int(rng.integers(2, 12)), int(rng.integers(2, 12)))
    coarse = base + rng.normal(0.0, rng.uniform(15.0, 60.0), size=(cells[1], cells[0], 3))
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    if style == "texture_lines":  # straight edges that belong to no object
        for _ in range(int(rng.integers(2, 12))):
            start = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            colour = tuple(float(v) for v in rng.integers(0, 256, size=3))
            cv2.line(image, start, end, colour, int(rng.integers(1, 5)), lineType=cv2.LINE_AA)
    return image


def finish_varied_image(rng: np.random.Generator, image: np.ndarray, variety: Variety) -> np.ndarray:
    """Blur (for some images) and add Gaussian noise of a random level; uint8 RGB."""
    if rng.random() < variety.blur_share:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, variety.max_blur_sigma))
    image = image + rng.normal(0.0, rng.uniform(*variety.noise_sigma), size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def place_object(rng: np.random.Generator, background: np.ndarray, objects: list[ShapeObject],
                 width: int, height: int, variety: Variety = PLAIN
                 ) -> tuple[ShapeObject, np.ndarray, float] | None:
    """Sample an object that keeps every earlier one visible enough and in one piece.

    Returns:
        (the object, its H x W bool mask, its opacity), or None after ``MAX_TRIES`` rejected samples.
    """
    for _ in range(MAX_TRIES):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        mask = draw_shape_mask(rng, category, width, height, variety)
        if not keeps_objects_visible(mask, objects, variety.min_visible_fraction):
            continue
        opacity, contrast = 1.0, MIN_CONTRAST  # no draw where a share is 0: PLAIN's stream stays as it was
        if variety.transparent_share and rng.random() < variety.transparent_share:
            opacity = rng.uniform(variety.min_opacity, 1.0)
        if variety.low_contrast_share and rng.random() < variety.low_contrast_share:
            contrast = variety.low_contrast
        color = pick_color(rng, mask, background, objects, contrast / opacity)
        if color is None:
            continue
        return ShapeObject(category, color, int(mask.sum()), mask.copy()), mask, opacity
    return None


def draw_shape_mask(rng: np.random.Generator, category: str, width: int, height: int,
                    variety: Variety = PLAIN) -> np.ndarray:
    """Rasterise one randomly sized, rotated and placed shape fully inside the image.

    Returns:
        H x W bool mask, as drawn by ``cv2.circle`` / ``cv2.fillPoly`` with ``LINE_8``.
    """
    limit = min(MAX_OBJECT_SIZE, min(width, height) - 1.0)
    if limit <= variety.min_size:
        size = limit
    elif variety.log_sizes:  # as many objects of 10-20 px as of 70-140 px
        size = float(np.exp(rng.uniform(np.log(variety.min_size), np.log(limit))))
    else:
        size = rng.uniform(variety.min_size, limit)
    canvas = np.zeros((height, width), np.uint8)
    if category == "circle":
        radius = max(1, int(size // 2))
        cx, cy = int(rng.integers(radius, width - radius)), int(rng.integers(radius, height - radius))
        cv2.circle(canvas, (cx, cy), radius, 1, thickness=-1, lineType=cv2.LINE_8)
        return canvas.astype(bool)
    points = sample_outline(rng, category, size)
    extent = np.ptp(points, axis=0)
    points *= min(1.0, (width - 1) / extent[0], (height - 1) / extent[1])
    low, high = -points.min(axis=0), np.array([width - 1, height - 1]) - points.max(axis=0)
    points += rng.uniform(low, np.maximum(high, low))  # equal up to rounding when it fills a side
    cv2.fillPoly(canvas, [np.rint(points).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def sample_outline(rng: np.random.Generator, category: str, size: float) -> np.ndarray:
    """Vertices (N x 2 float, centred on 0) of a randomly rotated square or jittered triangle."""
    if category == "square":
        angles = rng.uniform(0.0, np.pi / 2) + np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, size / np.sqrt(2.0))
    else:
        angles = (rng.uniform(0.0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3
                  + rng.uniform(-0.15, 0.15, size=3))
        radii = size / 2 * rng.uniform(0.9, 1.1, size=3)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def keeps_objects_visible(mask: np.ndarray, objects: list[ShapeObject],
                          min_fraction: float = MIN_VISIBLE_FRACTION) -> bool:
    """True if drawing ``mask`` on top leaves each earlier object ``min_fraction`` visible and whole."""
    for obj in objects:
        if not (obj.visible & mask).any():
            continue
        remaining = obj.visible & ~mask
        if remaining.sum() < min_fraction * obj.full_area or not is_simple_region(remaining):
            return False
    return True


def is_simple_region(mask: np.ndarray) -> bool:
    """True if a bool mask is one 4-connected region whose outside is 4-connected too.

    Requiring 4-connectivity on both sides rules out diagonal pinches, which ``cv2.findContours``
    (8-connected foreground) would otherwise trace around, enclosing a hole or a second part.
    """
    count, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    if count != 2:
        return False
    outside = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    count, _ = cv2.connectedComponents(outside, connectivity=4)
    return count == 2


def pick_color(rng: np.random.Generator, mask: np.ndarray, background: np.ndarray,
               objects: list[ShapeObject], min_contrast: float = MIN_CONTRAST) -> tuple[int, int, int] | None:
    """A random colour that differs by more than ``min_contrast`` from the background and the
    objects next to ``mask``.

    Returns:
        RGB ints, or None if 10 random colours all came too close to a neighbour.
    """
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    ring = grown & ~mask
    references = [background[ring].mean(axis=0)]
    references += [np.array(obj.color, np.float64) for obj in objects if (obj.visible & grown).any()]
    for _ in range(10):
        color = rng.integers(0, 256, size=3)
        if all(np.abs(color - ref).mean() > min_contrast for ref in references):
            return int(color[0]), int(color[1]), int(color[2])
    return None


def mask_to_polygon(mask: np.ndarray) -> list[float]:
    """Outline of a one-piece bool mask as a flat ``[x0, y0, ...]`` polygon on pixel edges
    (``geometry.mask_to_polygons``, staircases simplified by 0.5 px), rounded to 2 decimals."""
    parts, _ = geometry.mask_to_polygons(mask, tolerance=POLYGON_EPSILON)
    part = max(parts, key=len)
    return [round(v, 2) for v in part]


def build_via_project(records: list[dict]) -> dict:
    """A VIA 2.0.x project (as Project > Save writes it) for the image records."""
    settings = copy.deepcopy(VIA2_SETTINGS)
    settings["project"]["name"] = "shapes"
    metadata = {}
    for record in records:
        regions = [{"shape_attributes": {"name": "polygon", "all_points_x": polygon[0::2],
                                         "all_points_y": polygon[1::2]},
                    "region_attributes": {"shape": category}}
                   for category, polygon in record["instances"]]
        metadata[record["filename"] + str(record["size"])] = {
            "filename": record["filename"], "size": record["size"], "regions": regions,
            "file_attributes": {}}
    attributes = {"region": {"shape": {"type": "dropdown", "description": "object class",
                                       "options": {name: name for name in CATEGORIES},
                                       "default_options": {}}},
                  "file": {}}
    return {"_via_settings": settings, "_via_img_metadata": metadata,
            "_via_attributes": attributes, "_via_data_format_version": "2.0.10",
            "_via_image_id_list": list(metadata)}


def build_coco(records: list[dict]) -> dict:
    """COCO instances JSON for the image records; area and bbox from pycocotools."""
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        height, width = record["height"], record["width"]
        images.append({"id": image_id, "file_name": record["filename"],
                       "width": width, "height": height})
        for category, polygon in record["instances"]:
            area, bbox_xywh = rle_area_bbox(polygons_to_rle([polygon], height, width))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": CATEGORIES.index(category) + 1,
                                "segmentation": [polygon], "area": area, "bbox": bbox_xywh,
                                "iscrowd": 0})
    categories = [{"id": i, "name": name, "supercategory": "shape"}
                  for i, name in enumerate(CATEGORIES, start=1)]
    return {"images": images, "annotations": annotations, "categories": categories}
