"""``segcli predict``: run a checkpoint over a folder of images, one result per image.

A generator (memory stays flat on big folders): images are listed, decoded by DataLoader workers
(cv2: EXIF orientation applied, grey, 16-bit and RGBA made 8-bit RGB; unreadable or truncated
files are reported and skipped, never modified), resized to the model's scale before the model
so huge images cost what small ones do, and run in batches with the score threshold and detection
cap inside the model. Masks are scaled back to each image's own size when encoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from segcli.errors import SegcliError
from segcli.formats import geometry
from segcli.formats.images import IMAGE_SUFFIXES
from segcli.models.checkpoint import load_checkpoint
from segcli.models.device import inference_context, select_device
from segcli.models.instance import configure_inference

PREDICT_SUFFIXES = IMAGE_SUFFIXES - {".gif"}


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
        seconds: model time for this image's share of its batch.
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


@dataclass
class SkippedImage:
    file_name: str
    reason: str


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted; hidden files and macOS ``._`` debris left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SegcliError("image folder not found", folder)
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in PREDICT_SUFFIXES
                  and not p.name.startswith((".", "._")))


def decode_image(path: Path) -> np.ndarray | None:
    """H x W x 3 uint8 RGB with EXIF orientation applied, or None if unreadable."""
    data = np.fromfile(str(path), dtype=np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if pixels is None else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


class FolderImages(Dataset):
    """Decoded, model-scale images: (float tensor [3, h, w], index, original (H, W)) or an error."""

    def __init__(self, paths: list[Path], longest_side: int):
        self.paths, self.longest_side = paths, longest_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            pixels = decode_image(self.paths[index])
        except OSError as exc:
            return None, index, f"cannot read: {exc}"
        if pixels is None:
            return None, index, "not a readable image (corrupt, truncated or unsupported)"
        height, width = pixels.shape[:2]
        scale = self.longest_side / max(height, width)
        if scale < 1:  # bring huge images to the model's scale here, not inside the model
            pixels = cv2.resize(pixels, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255, index, (height, width)


class Predictor:
    """A loaded checkpoint ready to label folders.

    Args:
        weights: checkpoint file.
        conf: score threshold (instance) pushed into the RoI heads.
        max_det: detections per image at most.
        device: auto, cpu, cuda, cuda:N.
        imgsz: short side the model sees (default: the checkpoint's).
    """

    def __init__(self, weights: Path, conf: float = 0.5, max_det: int = 100, device: str = "auto",
                 imgsz: int | None = None, iou: float | None = None):
        self.device = select_device(device)
        self.model, self.record = load_checkpoint(weights, self.device)
        self.task = self.record["task"]
        self.categories = self.record["categories"]
        self.mask_thresh = float(self.record["thresholds"].get("mask", 0.5))
        args = self.record["model"]["args"]
        if self.task == "instance":
            configure_inference(self.model, score_thresh=conf, detections_per_img=max_det)
            if iou is not None:
                self.model.roi_heads.nms_thresh = float(iou)
            if imgsz:
                self.model.transform.min_size = (int(imgsz),)
                self.model.transform.max_size = int(imgsz * args["max_size"] / args["min_size"])
            self.longest_side = self.model.transform.max_size
            self.mean = self.std = None
        else:
            self.input_size = int(imgsz or args["input_size"])
            self.longest_side = int(self.input_size * 4)
            norm = self.record["normalization"]
            self.mean = torch.tensor(norm["mean"]).view(3, 1, 1)
            self.std = torch.tensor(norm["std"]).view(3, 1, 1)

    def predict(self, paths: list[Path], root: Path, batch: int = 4, workers: int = 2) -> Iterator[ImagePrediction | SkippedImage]:
        """Yield one result per path, in order."""
        loader = DataLoader(FolderImages(paths, self.longest_side), batch_size=batch, num_workers=workers,
                            collate_fn=list)
        with inference_context(self.device):
            for items in loader:
                good = [item for item in items if item[0] is not None]
                for item in items:
                    if item[0] is None:
                        yield SkippedImage(relative_name(paths[item[1]], root), item[2])
                outputs = self._forward([item[0] for item in good]) if good else []
                for (tensor, index, size), output in zip(good, outputs):
                    yield self._result(paths[index], root, tensor, size, output)

    def _forward(self, images: list[torch.Tensor]) -> list:
        if self.task == "instance":
            return self.model([image.to(self.device) for image in images])
        results = []
        for image in images:  # images differ in size; one at a time keeps it simple and exact
            h, w = image.shape[1:]
            scale = self.input_size / min(h, w)
            x = F.interpolate(image[None], size=(round(h * scale), round(w * scale)), mode="bilinear",
                              align_corners=False)
            x = ((x[0] - self.mean) / self.std)[None].to(self.device)
            results.append(self.model(x)["out"].float().cpu())
        return results

    def _result(self, path: Path, root: Path, tensor: torch.Tensor, size: tuple[int, int], output) -> ImagePrediction:
        height, width = size
        result = ImagePrediction(relative_name(path, root), path, width, height)
        if self.task == "semantic":
            logits = F.interpolate(output, size=(height, width), mode="bilinear", align_corners=False)
            dtype = np.uint8 if len(self.categories) < 255 else np.uint16
            result.label_map = logits.argmax(1)[0].numpy().astype(dtype)
            return result
        sy, sx = height / tensor.shape[1], width / tensor.shape[2]
        boxes = output["boxes"].float().cpu().numpy() * np.array([sx, sy, sx, sy], dtype=np.float32)
        soft = output["masks"][:, 0].float().cpu()
        result.rles = []
        for mask in soft:
            if mask.shape != (height, width):
                mask = F.interpolate(mask[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
            result.rles.append(geometry.mask_to_rle((mask > self.mask_thresh).numpy()))
        result.boxes_xyxy = boxes
        result.labels = output["labels"].cpu().numpy()
        result.scores = output["scores"].float().cpu().numpy()
        return result


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (the name used in every output)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name
