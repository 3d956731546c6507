"""A one-stage instance model of the YOLACT family: prototype masks and per-detection coefficients
on an anchor-free detector, as YOLACT (Bolya et al., 2019) and YOLOv8-seg build it.

Names: ``yolact_resnet18_fpn``, ``yolact_resnet34_fpn`` and ``yolact_mobilenet_v3_large_fpn``.
The backbone is the Mask R-CNN one (ResNet body and FPN, strides 4-16 plus a pooled 32, with 64
channels), so ``--init`` from a Mask R-CNN checkpoint copies its ResNet body; the MobileNetV3
variant reads the last block of each of the strides 4, 8 and 16 and drops the stride-32 stage
(on one thread, a 320x240 forward takes about 50 ms against 120 ms with ResNet-18).
A small head on each of the strides 8, 16 and 32 predicts, at every point of its grid,
class scores, the distances from the point to the four sides of its object's box, and
``prototypes`` mask coefficients; a prototype network on the stride-4 map predicts that many
masks for the whole image. An object's mask is the sigmoid of its coefficients times the
prototypes, cut to its box. There are no proposals, no RoI sampling and no per-RoI mask head:
the cost of an image barely grows with its objects, which is what makes the model fast on a CPU.

Training assigns points to objects by task alignment (TOOD, as YOLOv8 does: a point's class score
times its box IoU to the power 6, the 10 best points inside each box), with binary cross-entropy
on soft class targets, a complete-IoU box loss and a per-pixel mask loss inside each box.
Inference keeps the best-scoring (point, class) pairs and removes duplicates with Fast NMS
(``fast_nms``). Inputs, targets and outputs are Mask R-CNN's (``segcli.models.instance``), so
every command treats both alike; the model's ``transform`` resizes and normalises as torchvision's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import box_iou, complete_box_iou_loss, roi_align

ONESTAGE_MODELS = ("yolact_resnet18_fpn", "yolact_resnet34_fpn", "yolact_mobilenet_v3_large_fpn")
ONESTAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "yolact_resnet18_fpn": {"min_size": 320, "max_size": 512, "fpn_layers": 3},
    "yolact_resnet34_fpn": {"min_size": 320, "max_size": 512, "fpn_layers": 3},
    "yolact_mobilenet_v3_large_fpn": {"min_size": 320, "max_size": 512},  # its strides are fixed
}
ONESTAGE_ARGS = {"fpn_channels": 64, "head_channels": 64, "prototypes": 32, "pre_nms_top_n": 1000,
                 "nms_thresh": 0.5}
HEAD_LEVELS = ("1", "2", "pool")  # FPN maps at strides 8, 16, 32
PROTO_LEVEL = "0"  # the stride-4 map
STRIDES = (8, 16, 32)
PROTO_STRIDE = 4
TOPK, ALPHA, BETA = 10, 1.0, 6.0  # task-aligned assignment (TOOD / YOLOv8 defaults)
GAINS = {"loss_classifier": 0.5, "loss_box_reg": 7.5, "loss_mask": 7.5}  # YOLOv8's loss gains
MASKS_PER_IMAGE = 64  # positive points whose mask loss is computed (a random subset beyond it)


class HeadBatchNorm(nn.BatchNorm2d):
    """BatchNorm that, in training, normalises a single value per channel (one image whose
    stride-32 map is 1x1: a batch of one below 64 px) with its running statistics instead of
    failing as ``nn.BatchNorm2d`` does; otherwise the same (same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _conv(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), HeadBatchNorm(cout),
                         nn.SiLU(inplace=True))


class LevelHead(nn.Module):
    """One pyramid level's predictions: class logits, box side distances (in strides) and mask
    coefficients, from three small branches (decoupled, as YOLOv8's head)."""

    def __init__(self, channels: int, width: int, num_classes: int, prototypes: int, stride: int):
        super().__init__()
        self.classes = nn.Sequential(_conv(channels, width), _conv(width, width), nn.Conv2d(width, num_classes, 1))
        self.box = nn.Sequential(_conv(channels, width), _conv(width, width), nn.Conv2d(width, 4, 1))
        self.coefficients = nn.Sequential(_conv(channels, width), nn.Conv2d(width, prototypes, 1))
        # about 5 objects in an image of 320 x 320 at the start (YOLOv8's prior), so the first
        # steps are not swamped by the loss of every point saying "object"
        nn.init.constant_(self.classes[-1].bias, math.log(5 / num_classes / (320 / stride) ** 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.classes(x), self.box(x), self.coefficients(x)


class PrototypeTransform(GeneralizedRCNNTransform):
    """torchvision's resize/normalise/batch, with a postprocess that turns prototype masks into
    masks of the original image size (Mask R-CNN's pastes 28 x 28 RoI masks instead)."""

    def postprocess(self, result, image_shapes, original_image_sizes):
        if self.training:
            return result
        for prediction, shape, original in zip(result, image_shapes, original_image_sizes):
            boxes = resize_boxes(prediction["boxes"], shape, original)
            logits = prediction.pop("mask_logits")  # [K, Hp, Wp] over the padded batch
            h, w = shape
            oh, ow = int(original[0]), int(original[1])
            if len(logits):
                # the prototypes' part under the image, resampled to the original size in one pass
                # (roi_align with one sample per output pixel is bilinear interpolation)
                region = torch.tensor([[0.0, 0.0, 0.0, w / PROTO_STRIDE, h / PROTO_STRIDE]], device=logits.device)
                masks = roi_align(logits[None], region, (oh, ow), 1.0, 1, aligned=True)[0].sigmoid_()
                masks = _crop(masks, boxes)
            else:
                masks = logits.new_zeros((0, oh, ow))
            prediction["boxes"], prediction["masks"] = boxes, masks[:, None]
        return result


class OneStageSegmenter(nn.Module):
    """Backbone + FPN, a head per level and a prototype network; Mask R-CNN's calling convention:
    ``model(images, targets)`` in training gives a dict of losses, ``model(images)`` in eval a list
    of {boxes, labels, scores, masks} per image."""

    def __init__(self, backbone: nn.Module, args: dict[str, Any]):
        super().__init__()
        from segcli.models.registry import IMAGENET_MEAN, IMAGENET_STD
        classes = args["num_classes"] - 1  # no background class: a point's scores are all low
        self.transform = PrototypeTransform(args["min_size"], args["max_size"], list(IMAGENET_MEAN),
                                            list(IMAGENET_STD))
        self.backbone = backbone
        channels, width, prototypes = args["fpn_channels"], args["head_channels"], args["prototypes"]
        self.heads = nn.ModuleList(LevelHead(channels, width, classes, prototypes, s) for s in STRIDES)
        self.protonet = nn.Sequential(_conv(channels, width, 1), _conv(width, width), nn.Conv2d(width, prototypes, 1))
        self.score_thresh, self.nms_thresh = float(args["score_thresh"]), float(args["nms_thresh"])
        self.detections_per_img, self.pre_nms_top_n = int(args["detections_per_img"]), int(args["pre_nms_top_n"])

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        batch, targets = self.transform(images, targets)
        features = self.backbone(batch.tensors)
        logits, sides, coefficients, points, strides = [], [], [], [], []
        for head, level, stride in zip(self.heads, HEAD_LEVELS, STRIDES):
            c, b, k = head(features[level])
            logits.append(c.flatten(2).transpose(1, 2))
            sides.append(b.flatten(2).transpose(1, 2))
            coefficients.append(k.flatten(2).transpose(1, 2))
            grid = _grid(*c.shape[-2:], stride, c.device)
            points.append(grid)
            strides.append(torch.full((len(grid),), float(stride), device=c.device))
        logits, sides, coefficients = torch.cat(logits, 1), torch.cat(sides, 1), torch.cat(coefficients, 1)
        points, strides = torch.cat(points), torch.cat(strides)
        boxes = _decode(points, sides.float(), strides)
        prototypes = self.protonet(features[PROTO_LEVEL])
        if self.training:
            return self._losses(logits, boxes, coefficients, prototypes, points, targets)
        detections = [self._detect(*item, size) for item, size in
                      zip(zip(logits, boxes, coefficients, prototypes), batch.image_sizes)]
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    # inference ----------------------------------------------------------------------------
    def _detect(self, logits, boxes, coefficients, prototypes, size) -> dict[str, torch.Tensor]:
        scores = logits.float().sigmoid().flatten()
        candidates = torch.nonzero(scores > self.score_thresh).squeeze(1)
        if len(candidates) > self.pre_nms_top_n:
            candidates = candidates[scores[candidates].topk(self.pre_nms_top_n).indices]
        classes = logits.shape[1]
        point, label = candidates // classes, candidates % classes
        box = boxes[point]
        box[:, 0::2] = box[:, 0::2].clamp(0, size[1])
        box[:, 1::2] = box[:, 1::2].clamp(0, size[0])
        keep = fast_nms(box, scores[candidates], label, self.nms_thresh)[:self.detections_per_img]
        point = point[keep]
        mask_logits = torch.einsum("nk,khw->nhw", coefficients[point].float(), prototypes.float())
        return {"boxes": box[keep], "scores": scores[candidates][keep], "labels": label[keep] + 1,
                "mask_logits": mask_logits}

    # training -----------------------------------------------------------------------------
    def _losses(self, logits, boxes, coefficients, prototypes, points, targets) -> dict[str, torch.Tensor]:
        cls_loss = logits.new_zeros(())
        box_loss, mask_loss, weight_sum, mask_images = logits.new_zeros(()), logits.new_zeros(()), 0.0, 0
        padded = prototypes.shape[-2] * PROTO_STRIDE, prototypes.shape[-1] * PROTO_STRIDE
        for b, target in enumerate(targets):
            gt_boxes, gt_labels = target["boxes"].float(), target["labels"] - 1
            foreground, gt_index, soft = assign(points, logits[b].detach().float().sigmoid(), boxes[b].detach(),
                                                gt_boxes, gt_labels)
            cls_loss = cls_loss + F.binary_cross_entropy_with_logits(logits[b].float(), soft, reduction="sum")
            weight_sum += float(soft.sum())
            if not foreground.any():
                continue
            weights = soft[foreground].sum(1)
            matched = gt_boxes[gt_index[foreground]]
            box_loss = box_loss + (complete_box_iou_loss(boxes[b][foreground], matched, reduction="none")
                                   * weights).sum()
            chosen = torch.nonzero(foreground).squeeze(1)
            if len(chosen) > MASKS_PER_IMAGE:
                chosen = chosen[torch.randperm(len(chosen), device=chosen.device)[:MASKS_PER_IMAGE]]
            mask_loss = mask_loss + _mask_loss(coefficients[b][chosen], prototypes[b], target["masks"],
                                               gt_boxes, gt_index[chosen], padded)
            mask_images += 1
        weight_sum = max(weight_sum, 1.0)
        losses = {"loss_classifier": cls_loss / weight_sum, "loss_box_reg": box_loss / weight_sum,
                  "loss_mask": mask_loss / max(mask_images, 1) + 0.0 * prototypes.sum() + 0.0 * coefficients.sum()}
        return {name: GAINS[name] * value for name, value in losses.items()}


def _grid(height: int, width: int, stride: int, device) -> torch.Tensor:
    """The centres of a level's cells, in input pixels, row by row [H * W, 2] (x, y)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return (torch.stack((xs, ys), -1).reshape(-1, 2).float() + 0.5) * stride


def _decode(points: torch.Tensor, sides: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """Boxes (x1, y1, x2, y2) from each point's distances to the four sides (softplus, in strides)."""
    distances = F.softplus(sides) * strides[:, None]
    return torch.cat((points - distances[..., :2], points + distances[..., 2:]), -1)


def _crop(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero each mask [K, H, W] outside its box, as YOLACT crops (a prototype mask may light up
    other objects of its kind; the box says which one it is)."""
    height, width = masks.shape[-2:]
    xs = torch.arange(width, device=masks.device, dtype=boxes.dtype)[None, None, :] + 0.5
    ys = torch.arange(height, device=masks.device, dtype=boxes.dtype)[None, :, None] + 0.5
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    return masks * ((xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2))


def _mask_loss(coefficients, prototypes, gt_masks, gt_boxes, gt_index, padded) -> torch.Tensor:
    """Mean over the chosen points of the per-pixel BCE inside the matched object's box, at the
    prototypes' resolution (the ground-truth masks averaged over each 4 x 4 cell)."""
    height, width = gt_masks.shape[-2:]
    used, inverse = torch.unique(gt_index, return_inverse=True)
    masks = F.pad(gt_masks[used].float(), (0, padded[1] - width, 0, padded[0] - height))
    masks = F.avg_pool2d(masks[:, None], PROTO_STRIDE)[:, 0][inverse]
    logits = torch.einsum("nk,khw->nhw", coefficients.float(), prototypes.float())
    inside = _crop(torch.ones_like(logits), gt_boxes[gt_index] / PROTO_STRIDE)
    bce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none") * inside
    return (bce.sum((1, 2)) / inside.sum((1, 2)).clamp(min=1)).mean()


def assign(points: torch.Tensor, scores: torch.Tensor, boxes: torch.Tensor, gt_boxes: torch.Tensor,
           gt_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Task-aligned assignment of points to objects (TOOD; YOLOv8's ``TaskAlignedAssigner``).

    Args:
        points: [P, 2] cell centres; scores: [P, C] predicted class probabilities; boxes: [P, 4]
            predicted boxes; gt_boxes: [G, 4]; gt_labels: [G] classes from 0.
    Returns:
        foreground [P] bool; gt_index [P] (the object of each foreground point); soft class
        targets [P, C]: an object's best-aligned point gets its best IoU, others in proportion.
    """
    count, classes = scores.shape
    foreground = torch.zeros(count, dtype=torch.bool, device=scores.device)
    gt_index = torch.zeros(count, dtype=torch.long, device=scores.device)
    soft = torch.zeros_like(scores)
    if len(gt_boxes) == 0:
        return foreground, gt_index, soft
    x, y = points[:, 0][None], points[:, 1][None]
    inside = (x > gt_boxes[:, 0:1]) & (x < gt_boxes[:, 2:3]) & (y > gt_boxes[:, 1:2]) & (y < gt_boxes[:, 3:4])
    # an object smaller than a cell holds no centre: it gets the point nearest its own centre
    empty = ~inside.any(1)
    if empty.any():
        centres = (gt_boxes[empty, :2] + gt_boxes[empty, 2:]) / 2
        inside[torch.nonzero(empty).squeeze(1), torch.cdist(centres, points).argmin(1)] = True
    iou = box_iou(gt_boxes, boxes).clamp(min=0) * inside
    alignment = scores[:, gt_labels].T.pow(ALPHA) * iou.pow(BETA)
    # inside points win ties (the first steps, when every alignment is about 0)
    ranked = (alignment + 1e-9 * inside).topk(min(TOPK, count), dim=1).indices
    chosen = torch.zeros_like(inside).scatter_(1, ranked, True) & inside
    # a point chosen by several objects belongs to the one its box overlaps most
    overlap = torch.where(chosen, iou, torch.full_like(iou, -1.0))
    best = overlap.argmax(0)
    foreground = chosen.any(0)
    owned = torch.zeros_like(chosen)
    owned[best[foreground], torch.nonzero(foreground).squeeze(1)] = True
    gt_index = torch.where(foreground, best, gt_index)
    alignment = alignment * owned
    norm = alignment.amax(1, keepdim=True).clamp(min=1e-9)
    best_iou = (iou * owned).amax(1, keepdim=True)
    strength = (alignment / norm * best_iou).amax(0)  # [P]: each point has at most one object
    soft[foreground, gt_labels[gt_index[foreground]]] = strength[foreground]
    return foreground, gt_index, soft


def fast_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Fast NMS (YOLACT, section 3.3), per class: the indices kept, best score first.

    Boxes sorted by score; the upper triangle of their IoU matrix holds each box's overlap with
    every better box; a box goes if any better box of its class overlaps it above the threshold,
    even one that itself went. One matrix product instead of standard NMS's sequential loop: it
    removes a little more (never less) than standard NMS, at a fraction of its time."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    boxes, labels = boxes[order].float(), labels[order]
    # boxes of different classes moved apart so they never overlap: one matrix for all classes
    shifted = boxes + (labels.to(boxes) * (boxes.max() + 1))[:, None]
    overlap = box_iou(shifted, shifted).triu_(diagonal=1)
    return order[overlap.amax(0) <= iou_threshold]


def onestage_args(name: str) -> dict[str, Any]:
    return {**ONESTAGE_ARGS, **ONESTAGE_DEFAULTS[name]}


def build_onestage_model(name: str, args: dict[str, Any], init: str, backbone_builder) -> OneStageSegmenter:
    """``backbone_builder(name, init, channels, layers)``: a backbone with FPN maps at strides 4, 8
    and 16 and a pooled 32 (keys "0", "1", "2", "pool")."""
    backbone = backbone_builder(name, init, args["fpn_channels"], args.get("fpn_layers", 3))
    return OneStageSegmenter(backbone, args)
