"""Inference: run a model over image files, one result per image (predict, eval, validation).

A generator (memory stays flat on big folders): images are listed, decoded by DataLoader workers
(cv2: EXIF orientation applied, grey, 16-bit and RGBA made 8-bit RGB; unreadable or truncated
files are reported and skipped, never modified), resized to the model's scale before the model
so huge images cost what small ones do, and run in batches with the score threshold and detection
cap inside the model. An image is refused before decoding when its header (or its file size) is
over the pixel limit, and thin ones (1xN) keep at least one pixel per side at the model's scale;
anything else that fails for one image skips that image, while a decoding worker that dies or a
model that fails ends the run with a SegcliError (and the workers are always shut down, so the
process exits). Masks are scaled back to each image's own size when encoded. With
``tile``, an instance model instead sees overlapping tiles of the full-resolution image (for
small objects in huge images); a detection cut by an inner tile edge is dropped where a whole
one of its class from a neighbouring tile covers it, and duplicates from overlaps are merged by NMS.

An image's result does not depend on the images around it, nor on the number of threads or
processes (so ``--batch``, ``--procs`` and ``--resume`` change no bit of it): a forward pass holds
only images the model pads to the same size (torchvision pads a batch to its largest image, and
features near the border see the padding), and on the CPU the numerical paths that vary with the
batch or thread count are pinned (see ``reproducible_on_cpu``). Each result carries the seconds
its image spent decoding and in the model, for ``segcli predict``'s per-stage summary.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision.ops import batched_nms

from segcli.engine.core.interrupt import ignore_signals
from segcli.engine.core.results import semantic_prediction
from segcli.errors import SegcliError
from segcli.formats import geometry
from segcli.formats.images import (IMAGE_SUFFIXES, decode_image, files_inside, max_image_pixels, pixel_limit_problem,
                                   read_image_size)
from segcli.models.checkpoint import load_checkpoint
from segcli.models.defaults import PREDICT_CONF
from segcli.models.device import inference_context, select_device
from segcli.models.fusion import fuse_conv_bn
from segcli.models.instance import configure_inference, inference_settings

# MKL's GEMM (the box head's big matrix product) otherwise splits its work by the thread count,
# which changed the last bits of the results between --procs 1 (N threads) and --procs N (one
# thread each). Strict conditional numerical reproducibility makes it the same on any thread
# count; MKL reads this once, at its first call, so it is set on import (a user's setting wins).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

PREDICT_SUFFIXES = IMAGE_SUFFIXES - {".gif"}
MAX_BYTES_PER_PIXEL = 8  # 16-bit RGBA, uncompressed: no image within the pixel limit is a bigger file
FILE_SLACK_BYTES = 64 * 2**20  # headers, metadata, thumbnails


@dataclass
class ImagePrediction:
    """What the model found in one image (sizes as a user sees the image).

    Attributes:
        file_name: path relative to the input folder (POSIX separators).
        path: the image file.
        width, height: pixel size after EXIF rotation.
        rles: K compressed RLE masks at the image's size (instance task), else None; encoded
            one at a time so a huge image never holds K full-size masks.
        boxes_xyxy: float [K, 4]; labels: int [K] (1..C); scores: float [K].
        label_map: uint8/uint16 [H, W] class per pixel (semantic task), else None.
        pixels: the decoded RGB image when the model saw it at full size (reused for the
            overlay instead of decoding the file again), else None.
        seconds: time spent on this image per stage: "decode" (in its DataLoader worker) and
            "model" (its share of the forward pass, plus scaling and encoding its masks).
    """

    file_name: str
    path: Path
    width: int
    height: int
    rles: list[dict] | None = None
    boxes_xyxy: np.ndarray | None = None
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    label_map: np.ndarray | None = None
    pixels: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class SkippedImage:
    file_name: str
    reason: str
    seconds: dict[str, float] = field(default_factory=dict)


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted; hidden files, macOS ``._`` debris and symlinks leading
    out of the folder left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SegcliError("image folder not found", folder)
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(files_inside(folder, (p for p in pattern if p.is_file() and p.suffix.lower() in PREDICT_SUFFIXES
                                        and not p.name.startswith((".", "._")))))


def undecodable_reason(path: Path) -> str | None:
    """Why ``path`` is not decoded at all, from its file size and header only, or None.

    A 400-megapixel PNG can be a 50 KB file that decodes to gigabytes, and a sparse 40 GB file
    named .jpg made np.fromfile run out of memory: both are refused here, before a byte of
    pixels is read. A header Pillow cannot read is left to OpenCV."""
    size = path.stat().st_size
    if size > max_image_pixels() * MAX_BYTES_PER_PIXEL + FILE_SLACK_BYTES:
        return (f"file of {size / 2**30:.1f} GB is larger than any image within the "
                f"{max_image_pixels() / 1e6:g} megapixel limit (raise it with SEGCLI_MAX_MEGAPIXELS)")
    try:
        read_image_size(path)
    except ValueError as exc:  # over the limit, or a 0-pixel side
        return str(exc)
    except Image.DecompressionBombError:  # Pillow's own check (synced to the limit) came first
        with _header_only(path) as image:
            return pixel_limit_problem(*image.size) or "image is over the pixel limit"
    except (OSError, UnidentifiedImageError, SyntaxError):
        return None
    return None


def _header_only(path: Path):
    """The image opened without Pillow's decompression-bomb check, to read its size for the
    message (the check is a global switch; no other thread of predict opens images with Pillow)."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        return Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def model_scale_size(width: int, height: int, longest_side: int | None) -> tuple[int, int] | None:
    """(width, height) to resize an image to so its longest side is at most ``longest_side``
    (None: no resize needed), never below one pixel a side: a 1x2000 image at 0.25 kept a
    0-pixel side and made cv2.resize assert."""
    scale = longest_side / max(height, width) if longest_side else 1.0
    if scale >= 1:
        return None
    return max(1, round(width * scale)), max(1, round(height * scale))


def first_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line (DataLoader's messages hold a traceback)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class FolderImages(Dataset):
    """Decoded, model-scale images: (uint8 tensor [3, h, w], index, original (H, W), seconds) or
    (None, index, reason, seconds), ``seconds`` the time this worker spent on the image.

    uint8 crosses the worker boundary at a quarter of float's size; ``longest_side`` None keeps
    the full resolution (tiling)."""

    def __init__(self, paths: list[Path], longest_side: int | None):
        self.paths, self.longest_side = paths, longest_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        start = time.perf_counter()
        return (*self._load_or_reason(index), time.perf_counter() - start)

    def _load_or_reason(self, index: int):
        # whatever goes wrong with one image skips that image: an exception escaping a worker
        # would end the whole run
        try:
            return self._load(index)
        except MemoryError:
            return None, index, "not enough memory to decode it"
        except OSError as exc:
            return None, index, f"cannot read: {exc.strerror or exc}"
        except Exception as exc:
            return None, index, f"cannot decode: {first_line(exc)}"

    def _load(self, index: int):
        path = self.paths[index]
        if (reason := undecodable_reason(path)) is not None:
            return None, index, reason
        pixels = decode_image(path)
        if pixels is None:
            return None, index, "not a readable image (corrupt, truncated or unsupported)"
        height, width = pixels.shape[:2]
        if (reason := pixel_limit_problem(width, height)) is not None:  # a header Pillow could not read
            return None, index, reason
        if (size := model_scale_size(width, height, self.longest_side)) is not None:
            # bring huge images to the model's scale here, not inside the model
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1), index, (height, width)


class Predictor:
    """A model ready to label images: the one inference path of ``segcli predict``, ``segcli
    eval`` with a model and validation during training (``load`` a checkpoint, or wrap a model
    being trained with its record).

    Args:
        model: the model, on ``device``, in eval mode; its BatchNorms are folded into their
            convolutions (``fuse_conv_bn``), CPU kernels pinned on it (``reproducible_on_cpu``)
            and its inference settings set (``configure_inference``): it is changed in place.
        record: its checkpoint record (task, categories, model args, normalisation, thresholds).
        device: where it runs.
        conf: score threshold (instance) pushed into the RoI heads (None: ``default_conf``).
        max_det: detections per image at most.
        imgsz: short side the model sees (default: the checkpoint's).
        iou: NMS IoU threshold (instance; default the checkpoint's).
        tile: instance only: tile side in pixels at full resolution (None: resize the whole image).
        source: what to name in errors (the checkpoint file).
        default_conf: the threshold when ``conf`` is None (predict's, or eval's low one).
    """

    def __init__(self, model: torch.nn.Module, record: dict, device: torch.device, conf: float | None = None,
                 max_det: int = 100, imgsz: int | None = None, iou: float | None = None, tile: int | None = None,
                 source: Path | str | None = None, default_conf: float = PREDICT_CONF):
        self.device, self.model, self.record = device, model, record
        self.task = self.record["task"]
        self.categories = self.record["categories"]
        self.mask_thresh = float(self.record["thresholds"].get("mask", 0.5))
        args = self.record["model"]["args"]
        self.tile = tile
        # what a semantic model has no use for: it gives every pixel its most likely class
        self.unused_options = [name for name, value in (("--conf", conf), ("--iou", iou)) if value is not None] \
            if self.task == "semantic" else []
        if tile is not None and (self.task != "instance" or tile < 64):
            raise SegcliError("--tile needs an instance model and a tile of at least 64 pixels", source)
        if self.task == "instance":
            min_size = int(imgsz) if imgsz else args["min_size"]
            max_size = int(imgsz * args["max_size"] / args["min_size"]) if imgsz else args["max_size"]
            self.longest_side = max_size
            if tile:  # tiles are seen at full resolution: the model's resize becomes a no-op
                min_size, max_size, self.longest_side = int(tile), int(tile), None
            self.conf = default_conf if conf is None else conf
            configure_inference(self.model, score_thresh=self.conf,
                                detections_per_img=max_det, nms_thresh=iou,
                                min_size=min_size, max_size=max_size)
            self.max_det = max_det
            self.mean = self.std = None
        else:
            self.conf = None
            self.input_size = int(imgsz or args["input_size"])
            self.longest_side = int(self.input_size * 4)
            norm = self.record["normalization"]
            self.mean = torch.tensor(norm["mean"]).view(3, 1, 1)
            self.std = torch.tensor(norm["std"]).view(3, 1, 1)
        fuse_conv_bn(self.model)  # before the convolutions are pinned: the folded ones are new modules
        if self.device.type == "cpu":
            reproducible_on_cpu(self.model)

    @classmethod
    def load(cls, weights: Path, conf: float | None = None, max_det: int = 100, device: str = "auto",
             imgsz: int | None = None, iou: float | None = None, tile: int | None = None,
             default_conf: float = PREDICT_CONF) -> Predictor:
        """The Predictor of a checkpoint file (``device``: auto, cpu, cuda, cuda:N)."""
        where = select_device(device)
        model, record = load_checkpoint(weights, where)
        return cls(model, record, where, conf, max_det, imgsz, iou, tile, source=weights, default_conf=default_conf)

    def predict(self, paths: list[Path], root: Path, batch: int = 4, workers: int = 2) -> Iterator[ImagePrediction | SkippedImage]:
        """Yield one result per path, in order.

        Raises:
            SegcliError: a decoding worker died or the model failed (images skip only for
                reasons of their own, see ``FolderImages``).
        """
        # a generator of its own: the loader's seed would otherwise be drawn from torch's global
        # RNG, and a validation during training would change the rest of the run (and its resume)
        loader = DataLoader(FolderImages(paths, self.longest_side), batch_size=batch, num_workers=workers,
                            collate_fn=list, worker_init_fn=ignore_signals if workers else None,
                            generator=torch.Generator())
        batches = iter(loader)
        try:
            with inference_context(self.device):
                while (items := _next_batch(batches, paths)) is not None:
                    good = [item for item in items if item[0] is not None]
                    for pixels, index, reason, seconds in items:
                        if pixels is None:
                            yield SkippedImage(relative_name(paths[index], root), reason, {"decode": seconds})
                    yield from self._predict_batch(good, paths, root)
        finally:
            _shut_down(batches)

    def _predict_batch(self, good: list, paths: list[Path], root: Path) -> Iterator[ImagePrediction]:
        """Results of a batch of decoded images, in their order; a failure of the model is a
        SegcliError naming them. Each forward pass holds only images of one padded size."""
        def failed(exc: Exception, indices: list[int]) -> SegcliError:
            names = ", ".join(relative_name(paths[i], root) for i in indices)
            return SegcliError(f"prediction failed on {names}: {first_line(exc)}")

        if self.tile:
            for tensor, index, size, decoded in good:
                start = time.perf_counter()
                try:
                    result = self._tiled_result(paths[index], root, tensor, size)
                except (Exception, MemoryError) as exc:
                    raise failed(exc, [index]) from exc
                result.seconds = {"decode": decoded, "model": time.perf_counter() - start}
                yield result
            return
        outputs: dict[int, tuple] = {}  # position in good -> (model output, its share of the forward's time)
        for group in self._same_input_size(good):
            start = time.perf_counter()
            try:
                group_outputs = self._forward([good[k][0] for k in group])
            except (Exception, MemoryError) as exc:
                raise failed(exc, [good[k][1] for k in group]) from exc
            share = (time.perf_counter() - start) / len(group)
            outputs.update((k, (output, share)) for k, output in zip(group, group_outputs))
        for k, (tensor, index, size, decoded) in enumerate(good):
            output, share = outputs[k]
            start = time.perf_counter()
            try:
                result = self._result(paths[index], root, tensor, size, output)
            except (Exception, MemoryError) as exc:
                raise failed(exc, [index]) from exc
            result.seconds = {"decode": decoded, "model": share + time.perf_counter() - start}
            yield result

    def _same_input_size(self, good: list) -> list[list[int]]:
        """Positions in ``good`` grouped by the padded size the instance model gives each image
        alone (first-seen order), so padding to a batch's largest image changes no image's
        input. A semantic model sees one image at a time anyway: one group."""
        if self.task != "instance":
            return [list(range(len(good)))] if good else []
        transform = self.model.transform
        groups: dict = {}
        for k, (tensor, *_) in enumerate(good):
            key = transform.fixed_size or model_input_size(*tensor.shape[1:], transform.min_size[-1],
                                                           transform.max_size, transform.size_divisible)
            groups.setdefault(key, []).append(k)
        return list(groups.values())

    def _forward(self, images: list[torch.Tensor]) -> list:
        images = [image.float().div_(255) for image in images]
        if self.task == "instance":
            return self.model([image.to(self.device) for image in images])
        results = []
        for image in images:  # images differ in size; one at a time keeps it simple and exact
            h, w = image.shape[1:]
            # short side to input_size, unless that makes the long side over longest_side: a
            # 1x300 image would have been seen at 240x72000
            scale = min(self.input_size / min(h, w), self.longest_side / max(h, w))
            with one_thread():
                x = F.interpolate(image[None], size=(max(1, round(h * scale)), max(1, round(w * scale))),
                                  mode="bilinear", align_corners=False)
                x = ((x[0] - self.mean) / self.std)[None].to(self.device)
            results.append(self.model(x)["out"].float().cpu())
        return results

    def _result(self, path: Path, root: Path, tensor: torch.Tensor, size: tuple[int, int], output) -> ImagePrediction:
        height, width = size
        result = ImagePrediction(relative_name(path, root), path, width, height)
        if tensor.shape[1:] == (height, width):
            result.pixels = tensor.permute(1, 2, 0).numpy()
        if self.task == "semantic":
            dtype = np.uint8 if len(self.categories) < 255 else np.uint16
            with one_thread():  # its upsampling, like any, rounds differently on N threads
                result.label_map = semantic_prediction(output, height, width, dtype)
            return result
        sy, sx = height / tensor.shape[1], width / tensor.shape[2]
        boxes = output["boxes"].float().cpu().numpy() * np.array([sx, sy, sx, sy], dtype=np.float32)
        soft = output["masks"][:, 0].float().cpu()
        result.rles = []
        for mask in soft:
            if mask.shape != (height, width):
                with one_thread():
                    mask = F.interpolate(mask[None, None], size=(height, width), mode="bilinear",
                                         align_corners=False)[0, 0]
            result.rles.append(geometry.mask_to_rle((mask > self.mask_thresh).numpy()))
        result.boxes_xyxy = boxes
        result.labels = output["labels"].cpu().numpy()
        result.scores = output["scores"].float().cpu().numpy()
        return result

    def _tiled_result(self, path: Path, root: Path, image: torch.Tensor, size: tuple[int, int]) -> ImagePrediction:
        """Detections over overlapping tiles of the full-resolution ``image`` (uint8 [3, H, W])."""
        height, width = size
        origins = [(x, y) for y in tile_starts(height, self.tile) for x in tile_starts(width, self.tile)]
        boxes, scores, labels, cut, masks = [], [], [], [], []  # masks: (binary tile-local mask, x0, y0)
        for first in range(0, len(origins), 4):
            chunk = origins[first:first + 4]
            tiles = [image[:, y:y + self.tile, x:x + self.tile] for x, y in chunk]
            for (x, y), tile, output in zip(chunk, tiles, self._forward(tiles)):
                th, tw = tile.shape[1:]
                for box, score, label, mask in zip(output["boxes"].cpu(), output["scores"].cpu(),
                                                   output["labels"].cpu(), output["masks"][:, 0].cpu()):
                    x1, y1, x2, y2 = box.tolist()
                    cut.append((x1 <= 1 and x > 0) or (y1 <= 1 and y > 0) or (x2 >= tw - 1 and x + tw < width)
                               or (y2 >= th - 1 and y + th < height))
                    boxes.append(box + torch.tensor([x, y, x, y], dtype=box.dtype))
                    scores.append(score)
                    labels.append(label)
                    masks.append(((mask > self.mask_thresh).numpy(), x, y))
        result = ImagePrediction(relative_name(path, root), path, width, height, rles=[],
                                 pixels=image.permute(1, 2, 0).numpy())
        keep = merge_tile_detections(torch.stack(boxes).float(), torch.stack(scores).float(), torch.stack(labels),
                                     torch.tensor(cut), float(inference_settings(self.model).nms_thresh)) if boxes else []
        keep = keep[:self.max_det]
        canvas = np.zeros((height, width), dtype=np.uint8)
        for k in keep:  # one full-size mask at a time: a huge image never holds K of them
            mask, x, y = masks[k]
            canvas[:] = 0
            canvas[y:y + mask.shape[0], x:x + mask.shape[1]] = mask
            result.rles.append(geometry.mask_to_rle(canvas))
        result.boxes_xyxy = np.array([boxes[k].tolist() for k in keep], dtype=np.float32).reshape(-1, 4)
        result.labels = np.array([int(labels[k]) for k in keep], dtype=np.int64)
        result.scores = np.array([float(scores[k]) for k in keep], dtype=np.float32)
        return result


def unused_options_warning(predictor: Predictor) -> str:
    """The warning for options a semantic model ignores (they are not refused: a script may pass
    the same options to every model)."""
    options = " and ".join(predictor.unused_options)
    return (f"{options} ignored: a semantic model has no scores to threshold or boxes to suppress "
            "(it gives every pixel its most likely class)")


def model_input_size(height: int, width: int, min_size: int, max_size: int, divisible: int) -> tuple[int, int]:
    """(height, width) of the padded tensor torchvision's GeneralizedRCNNTransform makes of an
    image alone: scaled so its short side is ``min_size`` unless its long side would exceed
    ``max_size`` (sizes floored, as ``F.interpolate`` does), then padded up to multiples of
    ``divisible``. Images with the same value are batched with no change to their input."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    resized = math.floor(height * scale), math.floor(width * scale)
    return tuple(math.ceil(side / divisible) * divisible for side in resized)


def reproducible_on_cpu(model: torch.nn.Module) -> None:
    """Make ``model``'s CPU results independent of the batch size and the thread count.

    PyTorch picks a convolution's kernel (oneDNN or its own im2col+GEMM) by batch size, input
    size and thread count, and the two round differently: the same image came out of the RPN
    with other proposals in a batch of two, or on one thread (--procs). Every ``Conv2d`` is
    pinned to oneDNN, which gives each image the same bits in any batch and on any thread
    count; the model's resizing and normalisation (and mask pasting), whose rounding varies
    with the threads, run on one thread (they are a small part of the time)."""
    if torch.backends.mkldnn.is_available():
        for module in model.modules():
            if type(module) is torch.nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str):
                module.forward = functools.partial(_onednn_conv2d, module)
    transform = getattr(model, "transform", None)
    if transform is not None:
        transform.forward = _on_one_thread(transform.forward)
        transform.postprocess = _on_one_thread(transform.postprocess)


def _onednn_conv2d(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if x.device.type != "cpu" or x.dtype != torch.float32 or conv.weight.dtype != torch.float32:
        return torch.nn.Conv2d.forward(conv, x)
    return torch.ops.aten.mkldnn_convolution(x.contiguous(), conv.weight, conv.bias, list(conv.padding),
                                             list(conv.stride), list(conv.dilation), conv.groups)


@contextlib.contextmanager
def one_thread():
    """Run the block on one intra-op CPU thread, for ops whose rounding depends on how the work
    is split among threads."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _on_one_thread(function):
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        with one_thread():
            return function(*args, **kwargs)
    return wrapped


def _next_batch(batches, paths: list[Path]) -> list | None:
    """The next batch from a DataLoader iterator (None at the end); a worker that died (killed,
    a crash in a decoder) is a one-line SegcliError, not a traceback."""
    try:
        return next(batches)
    except StopIteration:
        return None
    except SegcliError:
        raise
    except (Exception, MemoryError) as exc:
        raise SegcliError(f"an image decoding worker failed: {first_line(exc)}", paths[0].parent if paths else None) \
            from exc


def _shut_down(batches) -> None:
    """Stop the DataLoader's workers now. They ignore SIGTERM (``ignore_signals``), and after an
    error the traceback keeps the iterator alive: left to the garbage collector, the workers were
    still running at exit, where multiprocessing waits for them forever."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def merge_tile_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, cut: torch.Tensor,
                          iou: float) -> list[int]:
    """Indices to keep (best first) of detections gathered over overlapping tiles.

    A detection touching an inner tile edge (``cut``) is a piece of an object that the overlap
    usually holds whole in a neighbouring tile: it is dropped when half or more of its box lies
    inside a whole detection of the same class. What remains goes through class-wise NMS.
    """
    kept = torch.ones(len(boxes), dtype=torch.bool)
    if cut.any() and (~cut).any():
        pieces, whole = boxes[cut], boxes[~cut]
        left_top = torch.maximum(pieces[:, None, :2], whole[None, :, :2])
        right_bottom = torch.minimum(pieces[:, None, 2:], whole[None, :, 2:])
        inter = (right_bottom - left_top).clamp(min=0).prod(-1)
        area = (pieces[:, 2:] - pieces[:, :2]).clamp(min=1e-6).prod(-1)
        covered = ((inter / area[:, None] >= 0.5) & (labels[cut][:, None] == labels[~cut][None, :])).any(1)
        kept[cut] = ~covered
    candidates = torch.nonzero(kept)[:, 0]
    keep = batched_nms(boxes[candidates], scores[candidates], labels[candidates], iou)
    return candidates[keep].tolist()


def tile_starts(length: int, tile: int) -> list[int]:
    """Tile origins along one side: tiles of ``tile`` pixels overlapping by at least a quarter,
    the last one flush with the end (one tile when the side is shorter than a tile)."""
    if length <= tile:
        return [0]
    count = 1 + int(np.ceil((length - tile) / (tile * 3 // 4)))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (the name used in every output)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name
