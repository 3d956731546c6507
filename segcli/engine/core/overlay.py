"""Overlay pictures of predictions: what a user looks at first.

Instances: a translucent mask per object painted largest first (so small ones stay visible),
its outline, box, class name and score; one fixed colour per class. Semantic: the class colour
map blended over the image with a legend. Drawing uses cv2 on RGB uint8 arrays.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import cv2
import numpy as np

from segcli.formats import geometry

BLEND_ROWS = 512


def class_colours(count: int) -> list[tuple[int, int, int]]:
    """Distinct, fixed RGB colours for classes 1..count (index 0 unused: background)."""
    colours = [(0, 0, 0)]
    for k in range(count):
        hue = (k * 0.61803398875) % 1.0  # golden-ratio steps keep neighbours apart
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def draw_instances(rgb: np.ndarray, rles: list[dict], boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                   names: list[str], alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 picture with every instance drawn (see the module docstring)."""
    canvas = rgb.copy()
    colours = class_colours(len(names))
    areas = [geometry.rle_area_bbox(rle)[0] for rle in rles]
    order = sorted(range(len(rles)), key=lambda i: -areas[i])
    for i in order:
        mask = geometry.rle_to_mask(rles[i])
        colour = colours[int(labels[i])]
        _blend(canvas, mask, lambda band, colour=colour: np.full((band.stop - band.start, canvas.shape[1], 3),
                                                                 colour, np.uint8), alpha)
        cv2.polylines(canvas, geometry.mask_contours(mask), True, colours[int(labels[i])], 1, cv2.LINE_AA)
    thickness = max(1, round(min(rgb.shape[:2]) / 400))
    for i in order:
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        colour = colours[int(labels[i])]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        _label(canvas, f"{names[int(labels[i]) - 1]} {scores[i]:.2f}", (x1, y1), colour)
    return canvas


def draw_semantic(rgb: np.ndarray, label_map: np.ndarray, names: list[str], alpha: float = 0.5) -> np.ndarray:
    """RGB uint8 picture with the class colour map blended in and a legend of present classes."""
    colours = np.array(class_colours(len(names)), dtype=np.uint8)
    canvas = rgb.copy()
    _blend(canvas, label_map > 0, lambda band: colours[label_map[band]], alpha)
    present = [int(v) for v in np.unique(label_map) if v > 0]
    for row, value in enumerate(present):
        _label(canvas, names[value - 1], (4, 4 + row * 18 + 14), tuple(int(c) for c in colours[value]))
    return canvas


def _blend(canvas: np.ndarray, mask: np.ndarray, colour_rows: Callable[[slice], np.ndarray], alpha: float) -> None:
    """``canvas = (1 - alpha) * canvas + alpha * colour`` where ``mask`` is set, in bands of rows:
    done on the whole picture at once, the float copies of a 10000x10000 image took 2.6 GB.
    ``colour_rows(band)`` gives the colour image (uint8 RGB) of a band of rows."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return
    for start in range(int(rows[0]), int(rows[-1]) + 1, BLEND_ROWS):
        band = slice(start, min(int(rows[-1]) + 1, start + BLEND_ROWS))
        part = canvas[band]
        blended = cv2.addWeighted(part, 1 - alpha, colour_rows(band), alpha, 0)
        np.copyto(part, blended, where=mask[band][..., None])


def _label(canvas: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int]) -> None:
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    x, y = max(0, corner[0]), max(h + base, corner[1])
    cv2.rectangle(canvas, (x, y - h - base), (x + w + 2, y), colour, -1)
    dark = sum(colour) > 380
    cv2.putText(canvas, text, (x + 1, y - base), font, scale, (0, 0, 0) if dark else (255, 255, 255), 1, cv2.LINE_AA)
