"""Model outputs to COCO results and ground truth to COCO dicts, for scoring and writing.

Mask R-CNN returns soft masks pasted at the input size; a mask threshold (0.5 by default, kept
in the checkpoint) turns them into binary masks, encoded as compressed RLE. Labels map to COCO
category ids through the checkpoint's category list (label k = category k-1).
"""

from __future__ import annotations

import numpy as np
import torch

from segcli.formats import geometry


def detections_to_results(output: dict[str, torch.Tensor], image_id: int, category_ids: list[int],
                          mask_thresh: float = 0.5) -> list[dict]:
    """COCO results (segmentation RLE, bbox xywh, score) for one image's Mask R-CNN output."""
    masks = (output["masks"][:, 0] > mask_thresh).cpu().numpy()
    boxes = output["boxes"].cpu().numpy()
    results = []
    for mask, box, label, score in zip(masks, boxes, output["labels"].tolist(), output["scores"].tolist()):
        rle = geometry.mask_to_rle(mask)
        results.append({"image_id": image_id, "category_id": category_ids[label - 1],
                        "segmentation": geometry.rle_to_json(rle),
                        "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                        "score": float(score)})
    return results


def ground_truth_dict(records, objects, classes: dict[str, int], category_ids: list[int],
                      category_names: list[str]) -> dict:
    """COCO ground truth of a validation set: image ids are positions in ``records``; categories
    are the model's (by name), so scores compare like with like."""
    images, annotations = [], []
    for image_id, (record, items) in enumerate(zip(records, objects)):
        images.append({"id": image_id, "file_name": record.file_name, "width": record.width, "height": record.height})
        for obj in items:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category_ids[classes[obj.annotation.category] - 1],
                                "segmentation": geometry.rle_to_json(obj.rle), "area": float(obj.area),
                                "bbox": obj.bbox_xywh, "iscrowd": int(obj.annotation.iscrowd)})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n} for i, n in zip(category_ids, category_names)]}


def semantic_prediction(logits: torch.Tensor, height: int, width: int, dtype=np.int64,
                        band_rows: int = 256) -> np.ndarray:
    """H x W label map: the argmax over classes of ``[1, C, h, w]`` logits resized bilinearly to
    the original size (as ``F.interpolate(align_corners=False)`` then argmax), computed in bands of
    rows: the C float planes of a 10000x10000 image would take 1.6 GB for 4 classes, a band of 256
    rows takes 40 MB. The same weights, in the same order, as PyTorch's kernel."""
    logits = logits.float().reshape(-1, *logits.shape[-2:])
    h, w = logits.shape[-2:]
    if (h, w) == (height, width):
        return logits.argmax(0).numpy().astype(dtype)
    label_map = np.empty((height, width), dtype=dtype)
    left, right, w_left, w_right = _bilinear_taps(w, width, 0, width)
    for start in range(0, height, band_rows):
        stop = min(height, start + band_rows)
        top, bottom, w_top, w_bottom = _bilinear_taps(h, height, start, stop)
        upper, lower = logits[:, top], logits[:, bottom]
        values = (w_top[:, None] * (w_left * upper[..., left] + w_right * upper[..., right])
                  + w_bottom[:, None] * (w_left * lower[..., left] + w_right * lower[..., right]))
        label_map[start:stop] = values.argmax(0).numpy()
    return label_map


def _bilinear_taps(size_in: int, size_out: int, start: int, stop: int) -> tuple[torch.Tensor, ...]:
    """Source indices and weights of outputs start..stop-1 as PyTorch's bilinear kernel computes
    them (align_corners=False): (low index, high index, weight of low, weight of high)."""
    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    source = (scale * (torch.arange(start, stop, dtype=torch.float32) + 0.5) - 0.5).clamp(min=0)
    low = source.long()
    high = torch.where(low < size_in - 1, low + 1, low)
    weight_high = source - low
    return low, high, 1 - weight_high, weight_high
