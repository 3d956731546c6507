"""Geometry shared by every format: VIA shapes to polygons, repair and clipping, RLE and masks.

This is the only module that calls pycocotools.mask, shapely and cv2 contour functions. Pixel
convention (COCO's and detectron2's): pixel (i, j) covers [j, j+1) x [i, i+1), so a polygon through
pixel centres sits at index + 0.5. Areas and boxes are always those of the rasterised mask
(pycocotools ``area``/``toBbox``), i.e. of what a model trains on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import shapely
from pycocotools import mask as mask_utils
from shapely.geometry import MultiPolygon, Polygon, box

from segcli.ledger import REPAIRED_SAME_MASK

Note = Callable[[str, str], None]
"""Callback ``note(action, reason)`` that records a ledger entry for the current object."""

MAX_COORDINATE = 1e6
"""Coordinates beyond this magnitude are treated as corrupt input, not clipped."""

MAX_SELF_CROSSINGS = 1000
"""An invalid polygon whose edges cross each other more often than this is refused, not repaired:
GEOS's make_valid takes time growing faster than the square of the crossings (a random 400-point
scribble, 40,000 crossings, takes over a minute; a million points would never end), and no drawn
outline crosses itself that often."""


def is_int(value: object) -> bool:
    """A JSON integer (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_numbers(values: list, what: str) -> str | None:
    """Return a problem description if ``values`` is not a list of finite, sane numbers."""
    if not isinstance(values, list):
        return f"{what} must be a list of numbers, got {type(values).__name__}"
    types = set(map(type, values))
    if types and types <= {int, float}:  # fast path: one vectorised range check
        try:
            array = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float range (JSON allows 1 with 400 zeros)
            array = None
        if array is not None and np.isfinite(array).all() and np.abs(array).max() <= MAX_COORDINATE:
            return None
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{what} holds a non-number ({_short_repr(value)})"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{what} holds {value}"
        if abs(value) > MAX_COORDINATE:
            shown = f"{value:g}" if isinstance(value, float) else _short_repr(value)
            return f"{what} holds {shown}, beyond +-{MAX_COORDINATE:g}"
    return None


def _short_repr(value: object, limit: int = 40) -> str:
    """``repr`` cut to ``limit`` characters: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def ellipse_points(cx: float, cy: float, rx: float, ry: float, theta: float = 0.0) -> np.ndarray:
    """Polygon (N x 2 float64) approximating an ellipse rotated by ``theta`` radians (clockwise
    on screen, as VIA draws it); a vertex every ~1.5 px, 24 to 720 vertices, radii scaled so the
    polygon's area equals the ellipse's (an inscribed polygon would be up to 1% too small)."""
    n = int(min(720, max(24, math.ceil(2 * math.pi * max(rx, ry) / 1.5))))
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    ct, st = math.cos(theta), math.sin(theta)
    scale = math.sqrt(2 * math.pi / (n * math.sin(2 * math.pi / n)))
    x = rx * scale * np.cos(t)
    y = ry * scale * np.sin(t)
    return np.stack([cx + x * ct - y * st, cy + x * st + y * ct], axis=1)


def via_shape_to_points(shape: dict) -> np.ndarray:
    """Outline of an area VIA shape as an N x 2 float64 array (polygon, rect, circle, ellipse).

    The input is assumed validated by the reader (numbers present and finite).
    """
    name = shape["name"]
    if name == "polygon":
        points = np.array((shape["all_points_x"], shape["all_points_y"]), dtype=np.float64).T
        if len(points) > 1 and (points[0] == points[-1]).all():
            points = points[:-1]  # VIA 0.1b repeats the first point; the ring closes anyway
        return points
    if name == "rect":
        x, y, w, h = (float(shape[k]) for k in ("x", "y", "width", "height"))
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)
    if name == "circle":
        r = float(shape["r"])
        return ellipse_points(float(shape["cx"]), float(shape["cy"]), r, r)
    if name == "ellipse":
        return ellipse_points(float(shape["cx"]), float(shape["cy"]), float(shape["rx"]),
                              float(shape["ry"]), float(shape.get("theta", 0.0) or 0.0))
    raise ValueError(f"shape {name!r} has no area")


def simple_polygons_inside(xs: np.ndarray, ys: np.ndarray, counts: np.ndarray, widths: np.ndarray,
                           heights: np.ndarray) -> np.ndarray:
    """Vectorised fast-path test over many polygons given as concatenated vertex coordinates.

    Args:
        xs, ys: float64 vertex coordinates of all polygons, one after the other.
        counts: number of vertices of each polygon.
        widths, heights: size of each polygon's image.

    Returns:
        bool per polygon: a valid polygon with an area, inside [0, width] x [0, height], i.e. one
        that ``clean_polygon`` would leave unchanged.
    """
    counts = np.asarray(counts, dtype=np.int64)
    result = np.zeros(len(counts), dtype=bool)
    keep = counts >= 3
    if not keep.any():
        return result
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    coords = np.column_stack([xs, ys])
    # drop polygons with < 3 vertices, then close every ring by repeating its first vertex
    index = np.concatenate([np.arange(s, s + n) for s, n in zip(starts[keep], counts[keep])]) \
        if not keep.all() else np.arange(len(coords))
    coords, kept_counts = coords[index], counts[keep]
    kept_starts = np.concatenate([[0], np.cumsum(kept_counts)[:-1]])
    closed = np.insert(coords, kept_starts + kept_counts, coords[kept_starts], axis=0)
    ring_offsets = np.concatenate([[0], np.cumsum(kept_counts + 1)])
    polygons = shapely.from_ragged_array(shapely.GeometryType.POLYGON, np.ascontiguousarray(closed),
                                         (ring_offsets, np.arange(len(kept_counts) + 1)))
    bounds = shapely.bounds(polygons)
    inside = ((bounds[:, 0] >= 0) & (bounds[:, 1] >= 0) & (bounds[:, 2] <= np.asarray(widths)[keep])
              & (bounds[:, 3] <= np.asarray(heights)[keep]))
    result[keep] = inside & shapely.is_valid(polygons) & (shapely.area(polygons) > 0)
    return result


def clean_polygon(points: np.ndarray, width: int, height: int, note: Note) -> tuple[list[Polygon], bool]:
    """Make a polygon valid and clip it to the image, recording every change.

    Args:
        points: N x 2 float64 outline.
        width, height: image size; the polygon is clipped to [0, width] x [0, height].
        note: ledger callback.

    Returns:
        (valid shapely polygons, possibly with holes, empty if nothing is left;
         whether they differ from ``points``).
    """
    polygon = Polygon(points) if len(points) >= 3 else None
    valid = polygon is not None and polygon.is_valid
    if polygon is not None and not valid and count_self_crossings(points, MAX_SELF_CROSSINGS) > MAX_SELF_CROSSINGS:
        note("error", f"polygon crosses itself more than {MAX_SELF_CROSSINGS} times ({len(points)} points): "
             "too tangled to repair")
        return [], True
    if polygon is None or (valid and polygon.area == 0) or (not valid and not polygon_parts(shapely.make_valid(polygon))):
        distinct = len(np.unique(points, axis=0))
        note("dropped", f"degenerate polygon: {distinct} distinct points" if distinct < 3
             else "degenerate polygon: zero area (points on a line)")
        return [], True
    inside = (points.min() >= 0 and points[:, 0].max() <= width and points[:, 1].max() <= height)
    if inside and valid:
        return [polygon], False
    parts: list[Polygon] = [polygon]
    if not valid:
        before = abs(shoelace_area(points))
        parts = polygon_parts(shapely.make_valid(polygon))
        after = sum(p.area for p in parts)
        same = same_mask(points, parts, width, height)
        note(REPAIRED_SAME_MASK if same else "repaired",
             f"invalid polygon made valid: {shapely.is_valid_reason(polygon)}, "
             f"area {before:.1f} -> {after:.1f} px2, {len(parts)} part(s)"
             + ("; mask unchanged (the same pixels once rasterised)" if same else "; the rasterised mask changed"))
    if not inside:
        frame = box(0, 0, width, height)
        before = sum(p.area for p in parts)
        limits = np.array([width, height], dtype=np.float64)
        parts = [shapely.transform(q, lambda c: np.clip(c, 0.0, limits))  # GEOS leaves -1e-300s
                 for p in parts for q in polygon_parts(p.intersection(frame))]
        after = sum(p.area for p in parts)
        if not parts:
            note("dropped", f"entirely outside the image: {width}x{height}")
            return [], True
        note("clipped", f"extends outside the image: {width}x{height}, area {before:.1f} -> {after:.1f} px2")
    return [p for p in parts if p.area > 0] or _dropped_flat(note), True


def same_mask(points: np.ndarray, parts: list[Polygon], width: int, height: int) -> bool:
    """True when the repaired ``parts`` rasterise to exactly the pixels of the original outline
    ``points`` (as pycocotools rasterises it, clipped to the image): then the repair changes
    nothing a COCO reader or a model sees."""
    if not parts:
        return False
    original = polygons_to_rle([points_to_flat(points)], height, width)
    return bool(np.array_equal(rle_to_mask(original), rle_to_mask(shapely_to_rle(parts, height, width))))


def count_self_crossings(points: np.ndarray, limit: int) -> int:
    """Intersections between non-adjacent edges of the closed outline ``points`` (N x 2), counted
    until more than ``limit`` are found. Edges are queried in growing batches through an R-tree, so
    a clean million-point outline costs a few seconds and a scribble stops at the first batch."""
    keep = np.any(points != np.roll(points, 1, axis=0), axis=1)  # repeated points are not crossings
    points = points[keep] if keep.any() else points[:1]
    n = len(points)
    if n < 4:
        return 0
    edges = shapely.linestrings(np.stack([points, np.roll(points, -1, axis=0)], axis=1))
    tree = shapely.STRtree(edges)
    found, start, batch = 0, 0, 1
    while start < n:
        left, right = tree.query(edges[start:start + batch], predicate="intersects")
        left = left + start
        gap = np.abs(left - right)
        found += int(((gap > 1) & (gap < n - 1) & (left < right)).sum())  # each pair once, neighbours aside
        if found > limit:
            return found
        start += batch
        # grow while edges meet only their neighbours; shrink where they tangle (bounded memory)
        batch = min(batch * 2, 1 << 16) if len(left) <= 4 * batch else max(batch // 2, 1)
    return found


def _dropped_flat(note: Note) -> list[Polygon]:
    note("dropped", "polygon has zero area")
    return []


def shoelace_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygon_parts(geometry) -> list[Polygon]:
    """The polygons inside any shapely geometry (lines and points are dropped)."""
    if geometry.is_empty:
        return []
    if isinstance(geometry, Polygon):
        return [geometry]
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    if hasattr(geometry, "geoms"):
        return [p for g in geometry.geoms for p in polygon_parts(g)]
    return []


def ring_to_flat(ring) -> list[float]:
    """A shapely ring as a flat COCO list without the closing point."""
    coords = np.asarray(ring.coords, dtype=np.float64)[:-1]
    return [float(v) for v in coords.reshape(-1)]


def points_to_flat(points: np.ndarray) -> list[float]:
    """N x 2 points as a flat COCO list."""
    return points.reshape(-1).tolist()


def polygons_to_rle(parts: list[list[float]], height: int, width: int) -> dict:
    """Rasterise COCO polygon parts (union) into one compressed RLE, as pycocotools does."""
    rles = mask_utils.frPyObjects(parts, height, width)
    return rles[0] if len(rles) == 1 else mask_utils.merge(rles)


def shapely_to_rle(parts: list[Polygon], height: int, width: int) -> dict:
    """Rasterise shapely polygons with holes: exteriors minus interiors, one compressed RLE."""
    outer = polygons_to_rle([ring_to_flat(p.exterior) for p in parts], height, width)
    holes = [ring_to_flat(r) for p in parts for r in p.interiors]
    if not holes:
        return outer
    mask = rle_to_mask(outer) & ~rle_to_mask(polygons_to_rle(holes, height, width))
    return mask_to_rle(mask)


def shapely_to_segmentation(parts: list[Polygon], height: int, width: int) -> tuple[list | dict, dict]:
    """COCO segmentation for valid polygons: polygon list when no holes, else RLE.

    Returns:
        (segmentation as written to JSON, compressed RLE of the same mask).
    """
    if any(p.interiors for p in parts):
        rle = shapely_to_rle(parts, height, width)
        return rle_to_json(rle), rle
    flat = [ring_to_flat(p.exterior) for p in parts]
    return flat, polygons_to_rle(flat, height, width)


def rle_to_json(rle: dict) -> dict:
    """A compressed RLE with ``counts`` as str, ready for JSON."""
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def rle_from_json(segmentation: dict, height: int, width: int) -> dict:
    """Compressed RLE from a COCO RLE dict (compressed str or uncompressed int list)."""
    h, w = segmentation["size"]
    counts = segmentation["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(segmentation, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def rle_json_problem(segmentation: dict) -> str | None:
    """What is wrong with a COCO RLE object (``{"size": [h, w], "counts": ...}``), or None:
    pycocotools crashes on a malformed one, and decodes a compressed string whose runs do not
    add up to ``h * w`` into garbage instead of failing."""
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not (isinstance(size, list) and len(size) == 2
            and all(is_int(v) and v > 0 for v in size)):
        return f"RLE 'size' must be the mask size [h, w] in positive integers, got {size!r}"
    if isinstance(counts, list):
        problem = check_numbers(counts, "RLE counts")
        if problem or any(v < 0 or v != int(v) for v in counts):
            return problem or "RLE counts must be non-negative integers"
        total = sum(counts)
    elif isinstance(counts, str):
        runs = rle_string_counts(counts)
        if runs is None:
            return "corrupt RLE: 'counts' is not a compressed COCO RLE string"
        total = int(runs.sum())
    else:
        return "RLE 'counts' must be a string or a list of integers"
    if total != size[0] * size[1]:
        return f"RLE counts sum to {total}, expected {size[0]}x{size[1]}"
    return None


def rle_string_counts(counts: str | bytes) -> np.ndarray | None:
    """The run lengths a compressed RLE string holds (pycocotools' ``rleFrString``, vectorised),
    or None when it is not one: a character outside '0'..'o', a number cut off at the end, or a
    negative or over-long run.

    pycocotools does not check that the runs add up to ``h * w``: a short string leaves the
    rest of the decoded mask uninitialised, so callers compare the sum with the size.
    """
    if isinstance(counts, str):
        if not counts.isascii():
            return None
        counts = counts.encode("ascii")
    codes = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    if codes.min() < 0 or codes.max() > 63:
        return None
    ends = np.flatnonzero((codes & 0x20) == 0)  # the last character of each number
    if not len(ends) or ends[-1] != len(codes) - 1:
        return None
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 7:  # 35 bits: more than any uint32 run needs
        return None
    number = np.repeat(np.arange(len(ends)), lengths)
    position = np.arange(len(codes)) - starts[number]
    values = np.bincount(number, weights=(codes & 0x1F) << (5 * position), minlength=len(ends)).astype(np.int64)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])  # sign extension
    runs = values.copy()  # runs after the second are stored as differences to the run two back
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    if (runs < 0).any() or (runs >= 2**32).any():
        return None
    return runs


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode a compressed RLE to an H x W bool mask."""
    return mask_utils.decode(rle).astype(bool)


def mask_to_rle(mask: np.ndarray) -> dict:
    """Encode an H x W bool/uint8 mask as compressed RLE (Fortran order, as COCO wants)."""
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def rle_area_bbox(rle: dict) -> tuple[int, list[float]]:
    """Pixel area and tight box ``[x, y, w, h]`` of a compressed RLE."""
    return int(mask_utils.area(rle)), mask_utils.toBbox(rle).tolist()


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Outer contours through boundary pixel centres (int32 N x 1 x 2, cv2 layout), for drawing."""
    contours, _ = cv2.findContours(np.asarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(contours)


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.0) -> tuple[list[list[float]], bool]:
    """Outer outlines of a bool mask as COCO polygon parts, on pixel edges.

    cv2 traces contours through pixel centres, which would shave half a pixel off every edge (a
    2x2 blob would rasterise to 1 pixel). Tracing the mask upsampled 2x instead, every contour
    point is the centre of a quarter pixel at ``k + 0.25`` or ``k + 0.75``, and rounding it to
    the nearest integer puts it on the pixel edge it belongs to: the outline rasterises back to the
    same pixels. (The union of each row's pixel runs with shapely gives the same outline, ~20x
    slower.)
    ``tolerance`` > 0 simplifies staircase edges (Douglas-Peucker, cv2.approxPolyDP).

    Returns:
        (one flat part per outer outline, whether the mask has holes, which polygons drop).
    """
    mask = np.asarray(mask, dtype=np.uint8)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return [], False
    y0, x0 = rows[0], cols[0]  # work on the object's box only: objects are small next to images
    crop = mask[y0:rows[-1] + 1, x0:cols[-1] + 1]
    doubled = cv2.resize(crop, (crop.shape[1] * 2, crop.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=(2 * int(x0), 2 * int(y0)))
    links = hierarchy.reshape(-1, 4)
    parts = []
    for contour, (_, _, _, parent) in zip(contours, links):
        if parent >= 0:
            continue
        points = (contour.reshape(-1, 2) + 1) // 2  # quarter-pixel centre -> its pixel edge
        if tolerance > 0 and len(points) > 3:
            points = cv2.approxPolyDP(points.reshape(-1, 1, 2).astype(np.int32), tolerance, True).reshape(-1, 2)
        points = points[np.any(points != np.roll(points, 1, axis=0), axis=1)]  # drop repeats
        if len(points) >= 3:
            parts.append(points.astype(np.float64).reshape(-1).tolist())
    return parts, bool((links[:, 3] >= 0).any())


def mask_to_via_polygons(mask: np.ndarray) -> tuple[list[dict], bool]:
    """VIA polygon shapes (one per outer outline) for a bool mask, and whether it has holes."""
    parts, holes = mask_to_polygons(mask, tolerance=0.5)
    return [{"name": "polygon", "all_points_x": part[0::2], "all_points_y": part[1::2]} for part in parts], holes


def components_to_rles(components: np.ndarray, count: int) -> list[dict]:
    """Compressed RLE of each component of an H x W map holding component numbers 0..count-1
    (-1 elsewhere), all in one pass over the pixels: encoding each component's own H x W mask
    costs count x H x W (a 2000x2000 speckle map of a million specks: hours). Gives the RLEs
    ``mask_to_rle`` gives for each component's mask."""
    height, width = components.shape
    column_major = components.T.ravel()  # COCO RLE runs go down the columns
    change = np.flatnonzero(np.diff(column_major)) + 1
    starts = np.concatenate(([0], change))
    ids = column_major[starts]
    ends = np.append(change, column_major.size)
    keep = ids >= 0
    starts, ends, ids = starts[keep], ends[keep], ids[keep]
    if not ids.size:
        if count:
            raise ValueError(f"{count} components expected, none found")
        return []
    order = np.argsort(ids, kind="stable")  # runs grouped by component, still in pixel order
    starts, ends, ids = starts[order], ends[order], ids[order]
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    previous_end = np.where(first, 0, np.roll(ends, 1))
    pairs = np.empty(2 * len(ids), dtype=np.int64)
    pairs[0::2] = starts - previous_end  # zeros before the run, then the run
    pairs[1::2] = ends - starts
    last = np.flatnonzero(np.append(first[1:], True))  # each component's last run
    trailing = column_major.size - ends[last]
    bounds = np.flatnonzero(first) * 2
    counts = np.split(pairs, bounds[1:])
    objects = [{"size": [height, width], "counts": c.tolist() + ([int(t)] if t else [])}
               for c, t in zip(counts, trailing)]
    if len(objects) != count:
        raise ValueError(f"{count} components expected, {len(objects)} found")
    return mask_utils.frPyObjects(objects, height, width)
