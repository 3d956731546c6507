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


def semantic_prediction(logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    """int64 H x W label map from ``[1, C, h, w]`` logits resized to the original size."""
    logits = torch.nn.functional.interpolate(logits.float(), size=(height, width), mode="bilinear",
                                             align_corners=False)
    return logits.argmax(1)[0].cpu().numpy()
