"""Find the image files an annotation file names and read their sizes from file headers.

VIA never stores image sizes and COCO's may be wrong, so sizes come from the files: Pillow reads
only the header (no pixel decoding) and the EXIF orientation tag, so a photo rotated by its
camera gets the width and height a user sees. Names are looked up as written, then by base name
(VIA exports with a ``./images/`` prefix), then by byte size (VIA 1 files whose names differ from
the files on disk). A name never resolves to a file outside the image folder.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from segcli.errors import SegcliError
from segcli.fileio import not_regular_problem
from segcli.ledger import Ledger
from segcli.structures import Dataset, ImageRecord

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
ROTATED_ORIENTATIONS = {5, 6, 7, 8}
EXIF_ORIENTATION = 0x0112
MAX_MEGAPIXELS = 179
"""Largest image segcli reads, in megapixels (env SEGCLI_MAX_MEGAPIXELS), for every command and
every kind of image (photos, label maps, a COCO file's claimed sizes): about 13000x13000, where
Pillow's own decompression-bomb check stops. A 400-megapixel PNG can be a 400 KB file that needs
gigabytes once decoded, so sizes are checked from headers before any pixel is decoded."""


def max_image_pixels() -> int:
    """The pixel limit (SEGCLI_MAX_MEGAPIXELS, else MAX_MEGAPIXELS) as a number of pixels."""
    value = os.environ.get("SEGCLI_MAX_MEGAPIXELS", str(MAX_MEGAPIXELS))
    try:
        megapixels = float(value)
    except ValueError:
        megapixels = float("nan")
    if not megapixels > 0 or megapixels == float("inf"):
        raise SegcliError(f"SEGCLI_MAX_MEGAPIXELS={value!r} is not a positive number of megapixels")
    return int(megapixels * 1e6)


def pixel_limit_problem(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` is refused (over the pixel limit), or None."""
    limit = max_image_pixels()
    if width * height <= limit:
        return None
    return (f"image is {width}x{height} ({width * height / 1e6:.0f} megapixels), more than the "
            f"{limit / 1e6:g} megapixel limit (raise it with SEGCLI_MAX_MEGAPIXELS)")


def _sync_pillow_limit() -> None:
    # Pillow raises DecompressionBombError above 2 x MAX_IMAGE_PIXELS and warns above it: its
    # error stops at our limit and its warning is ours to give
    Image.MAX_IMAGE_PIXELS = max(1, max_image_pixels() // 2)
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


try:
    _sync_pillow_limit()
except SegcliError:  # a bad SEGCLI_MAX_MEGAPIXELS is reported where the limit is used
    pass


def decode_image(path: Path) -> np.ndarray | None:
    """H x W x 3 uint8 RGB with EXIF orientation applied (grey, 16-bit and RGBA made 8-bit RGB),
    or None if unreadable. The bytes are read by numpy and decoded by ``cv2.imdecode``, not
    ``cv2.imread``: OpenCV's path functions crash (SIGSEGV) on a path that is not UTF-8."""
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        pixels = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error:  # e.g. a header claiming more pixels than OpenCV decodes (2**30)
        return None
    return None if pixels is None else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def is_regular_file(path: Path) -> bool:
    """True for a regular file (symlinks followed); never raises, never blocks."""
    return not_regular_problem(path) is None


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def open_image(path: Path) -> Image.Image:
    """``Image.open`` (header only) for regular files; an image over the pixel limit is a
    ValueError saying so (not Pillow's DecompressionBombError).

    Raises:
        OSError / UnidentifiedImageError / ValueError: not a readable image.
    """
    problem = not_regular_problem(path)
    if problem is not None:
        raise ValueError(problem)
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:  # raised from the header, before any decoding
        size = _png_size(path)
        if size is not None and (problem := pixel_limit_problem(*size)) is not None:
            raise ValueError(problem) from None
        found = _BOMB_PIXELS.search(str(exc))
        pixels = f"{int(found.group(1)) / 1e6:.0f} megapixels, " if found else ""
        raise ValueError(f"image is {pixels}more than the {max_image_pixels() / 1e6:g} megapixel limit "
                         "(raise it with SEGCLI_MAX_MEGAPIXELS)") from None


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR (Pillow does not say it when it refuses an image)."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as displayed (EXIF orientation applied), from its header.

    Raises:
        OSError / UnidentifiedImageError / ValueError: not a readable image.
    """
    with open_image(path) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(EXIF_ORIENTATION)
        except Exception:  # a broken EXIF block must not make a good image unreadable
            orientation = None
    if width <= 0 or height <= 0:
        raise ValueError(f"image has size {width}x{height}")
    if (problem := pixel_limit_problem(width, height)) is not None:
        raise ValueError(problem)
    return (height, width) if orientation in ROTATED_ORIENTATIONS else (width, height)


class ImageFolder:
    """An image folder with lookups by relative name, base name and byte size.

    ``recursive=False``: only the folder's own files are candidates (for a folder the user did
    not choose, such as a VIA project's absolute ``default_filepath``: never searched below).
    """

    def __init__(self, root: Path, recursive: bool = True):
        self.root = root.resolve()
        self.recursive = recursive
        self._by_name: dict[str, list[Path]] | None = None
        self._by_size: dict[int, list[Path]] | None = None
        self._by_stem: dict[str, list[Path]] | None = None
        self._real_dirs: dict[str, Path] = {}

    def _walk(self):
        if self.recursive:
            yield from os.walk(self.root)
        else:
            yield str(self.root), [], sorted(e.name for e in os.scandir(self.root))

    def _index(self) -> None:
        self._by_name, self._by_size, self._by_stem = {}, {}, {}
        for dirpath, _, filenames in self._walk():
            for filename in filenames:
                path = Path(dirpath) / filename
                if path.suffix.lower() not in IMAGE_SUFFIXES or filename.startswith("._"):
                    continue
                try:
                    info = os.stat(path)
                except OSError:  # a dangling symlink
                    continue
                # a symlink out of the folder is never a candidate (nothing is read outside it);
                # a FIFO or a device named like an image is kept, to be reported by name
                if self.inside(path):
                    self._by_name.setdefault(filename, []).append(path)
                    self._by_stem.setdefault(path.stem, []).append(path)
                    if stat.S_ISREG(info.st_mode):
                        self._by_size.setdefault(info.st_size, []).append(path)

    def with_stem(self, stem: str) -> list[Path]:
        """Images anywhere in the folder whose name is ``stem`` + an image suffix."""
        if self._by_stem is None:
            self._index()
        return self._by_stem.get(stem, [])

    def inside(self, path: Path) -> bool:
        """True if ``path`` (after following symlinks and '..') lies in this folder."""
        if path.is_symlink():
            real = Path(os.path.realpath(path))
        else:  # resolve the folder once per folder, not once per image: 10,000 images share one
            real = self._real_dir(str(path.parent)) / path.name
        return real == self.root or self.root in real.parents

    def _real_dir(self, directory: str) -> Path:
        if directory not in self._real_dirs:
            self._real_dirs[directory] = Path(os.path.realpath(directory))
        return self._real_dirs[directory]

    def find(self, file_name: str, size_bytes: int | None,
             claimed: set[Path] = frozenset()) -> tuple[Path | None, str]:
        """The file for an annotation's name (and VIA byte size): (path, how it was found).
        A file in ``claimed`` (named by another entry) is never matched by size."""
        direct = self.root / file_name.replace("\\", "/")
        problem = not_regular_problem(direct)
        if problem is None or os.path.lexists(direct) and "not a regular file" in problem:
            # found by its name: a FIFO or a device is returned too, for the reader to refuse
            return (direct, "name") if self.inside(direct) else (None, "outside the image folder")
        if "NUL" in problem or "too long" in problem:  # no file can have this name
            return None, f"no file can be named so ({problem})"
        if self._by_name is None:
            self._index()
        base = Path(file_name.replace("\\", "/")).name
        same_name = self._by_name.get(base, [])
        if len(same_name) == 1:
            return same_name[0], "base name"
        by_size = [p for p in self._by_size.get(size_bytes, []) if p not in claimed] if size_bytes else []
        if len(by_size) == 1 and not same_name:
            return by_size[0], "byte size"
        if len(same_name) > 1:
            return None, f"{len(same_name)} files are called {base}"
        return None, "not found"


def files_inside(folder: Path, paths) -> list[Path]:
    """``paths`` (from a listing of ``folder``) without the symlinks that lead out of it."""
    root = ImageFolder(Path(folder))
    return [p for p in paths if root.inside(p)]


def resolve_images(dataset: Dataset, images_dir: Path, ledger: Ledger,
                   check_sizes: bool = True, recursive: bool = True) -> None:
    """Set ``path`` (and, from headers, ``width``/``height``) of every image in ``dataset``.

    Names are matched first; only then are files no entry names matched by VIA byte size.
    Missing or unreadable images (a FIFO or a device named like one is unreadable, never
    opened) stay with ``path=None``; each is a ledger entry (action "missing": the writer decides
    whether to skip them). ``recursive=False``: names are looked up in ``images_dir`` itself only. Sizes written in the annotation
    file that differ from the file's are corrected with a "changed" entry.
    """
    folder = ImageFolder(images_dir, recursive)
    found = [folder.find(image.file_name, None) for image in dataset.images]
    claimed = {path for path, _ in found if path is not None}
    for image, (path, how) in zip(dataset.images, found):
        if path is None and image.size_bytes:
            path, how = folder.find(image.file_name, image.size_bytes, claimed)
            claimed.add(path)
        if path is None:
            ledger.add("missing", f"image file {how}: looked in {images_dir}", image.file_name)
            continue
        if how == "byte size":
            ledger.add("matched", f"found by byte size (name not on disk): {path.name}", image.file_name)
        try:
            width, height = read_image_size(path)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            ledger.add("missing", f"unreadable image: {path.name}: {exc}", image.file_name)
            continue
        image.path = path
        _set_size(image, width, height, ledger, check_sizes)


def _set_size(image: ImageRecord, width: int, height: int, ledger: Ledger, check: bool) -> None:
    if check and image.width is not None and (image.width, image.height) != (width, height):
        ledger.add("changed", f"size differs from the file: annotation says {image.width}x{image.height}, file is "
                   f"{width}x{height}: using the file's size", image.file_name)
    image.width, image.height = width, height
