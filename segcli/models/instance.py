"""Instance models by name: Mask R-CNN builders (torchvision) by backbone, with heads sized for
the dataset, and the one-stage ``yolact_*`` models (``segcli.models.onestage``).

Names: ``maskrcnn_resnet50_fpn`` and ``maskrcnn_resnet50_fpn_v2`` (torchvision's own builders),
``maskrcnn_resnet18_fpn``, ``maskrcnn_resnet34_fpn`` and ``maskrcnn_mobilenet_v3_large_fpn``
(backbone + FPN built here, with lighter heads by default so they train on a CPU: FPN 128
channels, box head 256, mask head 2 x 128 convolutions, 64 sampled RoIs per image: on 2 CPU
cores an iteration of batch 4 took 1.8 s against 6 s with torchvision's default heads, whose mask
head, run on every positive RoI, dominates the cost). From scratch the backbone uses trainable BatchNorm; with
pretrained weights torchvision's FrozenBatchNorm2d.

Model input: a list of float tensors ``[3, H, W]`` in [0, 1]; the model resizes (``min_size``,
``max_size``) and normalises internally. Training targets per image: ``boxes`` float ``[N, 4]``
(x1, y1, x2, y2 pixels), ``labels`` int64 ``[N]`` (1..num_classes-1), ``masks`` uint8
``[N, H, W]``. Inference output per image: ``boxes``, ``labels``, ``scores`` ``[K]`` and
``masks`` float ``[K, 1, H, W]`` in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet34
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from segcli.models.onestage import ONESTAGE_MODELS, OneStageSegmenter, build_onestage_model, onestage_args
from segcli.models.pretrained import backbone_weights, model_weights

MASKRCNN_MODELS = ("maskrcnn_resnet18_fpn", "maskrcnn_resnet34_fpn", "maskrcnn_mobilenet_v3_large_fpn",
                   "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
INSTANCE_MODELS = MASKRCNN_MODELS + ONESTAGE_MODELS

DEFAULTS: dict[str, dict[str, Any]] = {
    # ResNet-18 stops at layer3 (FPN strides 4-16 plus a pooled 32): layer4 holds 8.4M of the
    # body's 11.2M parameters and adds little for objects under ~300 px; the checkpoint stays small
    "maskrcnn_resnet18_fpn": {"min_size": 320, "max_size": 512, "light_heads": True, "fpn_layers": 3},
    "maskrcnn_resnet34_fpn": {"min_size": 320, "max_size": 512, "light_heads": True, "fpn_layers": 4},
    "maskrcnn_mobilenet_v3_large_fpn": {"min_size": 320, "max_size": 512, "light_heads": True},
    "maskrcnn_resnet50_fpn": {"min_size": 800, "max_size": 1333, "light_heads": False},
    "maskrcnn_resnet50_fpn_v2": {"min_size": 800, "max_size": 1333, "light_heads": False},
}
LIGHT = {"fpn_channels": 128, "box_representation": 256, "mask_layers": (128, 128), "rois_per_image": 64}
FULL = {"fpn_channels": 256, "box_representation": 1024, "mask_layers": (256, 256, 256, 256), "rois_per_image": 512}


def instance_args(name: str, num_classes: int, **overrides: Any) -> dict[str, Any]:
    """The full, JSON-able argument set of an instance model (defaults + overrides)."""
    own = onestage_args(name) if name in ONESTAGE_MODELS else \
        {"anchor_sizes": None, "rpn_post_nms_top_n_test": 1000, **DEFAULTS[name]}
    args = {"num_classes": num_classes, "detections_per_img": 100, "score_thresh": 0.05, **own}
    unknown = set(overrides) - set(args)
    if unknown:
        raise TypeError(f"unknown arguments for {name}: {', '.join(sorted(unknown))}")
    args.update({k: v for k, v in overrides.items() if v is not None})
    return args


def build_instance_model(name: str, args: dict[str, Any], init: str = "scratch") -> MaskRCNN | OneStageSegmenter:
    """Build instance model ``name`` with ``args`` (from ``instance_args``)."""
    if name in ONESTAGE_MODELS:
        return build_onestage_model(name, args, init, _onestage_backbone)
    common = {"min_size": args["min_size"], "max_size": args["max_size"],
              "rpn_post_nms_top_n_test": args["rpn_post_nms_top_n_test"],
              "box_detections_per_img": args["detections_per_img"], "box_score_thresh": args["score_thresh"]}
    fpn_layers = args.get("fpn_layers", 4)
    if args["anchor_sizes"]:
        common["rpn_anchor_generator"] = _anchor_generator(args["anchor_sizes"], 4 if "resnet" in name else 2)
    elif fpn_layers == 3:
        common["rpn_anchor_generator"] = _anchor_generator((32, 64, 128, 256), 4)
    if name in ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"):
        return _torchvision_maskrcnn(name, args["num_classes"], init, common)
    heads = LIGHT if args["light_heads"] else FULL
    if name == "maskrcnn_mobilenet_v3_large_fpn":
        backbone = _mobilenet_fpn(init, heads["fpn_channels"])
        common.setdefault("rpn_anchor_generator", _anchor_generator(((32, 64, 128, 256, 512),), 2))
    else:
        backbone = _resnet_fpn(name.split("_")[1], init, heads["fpn_channels"], fpn_layers)
    channels, representation = heads["fpn_channels"], heads["box_representation"]
    return MaskRCNN(
        backbone, num_classes=None,
        box_head=TwoMLPHead(channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, args["num_classes"]),
        box_batch_size_per_image=heads["rois_per_image"],
        mask_head=MaskRCNNHeads(channels, list(heads["mask_layers"]), 1),
        mask_predictor=MaskRCNNPredictor(heads["mask_layers"][-1], heads["mask_layers"][-1], args["num_classes"]),
        **common)


def _anchor_generator(sizes: Any, num_maps: int) -> AnchorGenerator:
    """One anchor size tuple per feature map (repeated when a single tuple is given), ratios 0.5/1/2.

    The MobileNet FPN has 3 maps, each seeing all five sizes (as torchvision's
    fasterrcnn_mobilenet_v3_large_fpn does); ResNet FPNs have 5 maps, one size each.
    """
    sizes = tuple(tuple(s) if isinstance(s, (list, tuple)) else (s,) for s in sizes)
    if len(sizes) == 1 and num_maps == 2:
        sizes = sizes * 3
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def _torchvision_maskrcnn(name: str, num_classes: int, init: str, common: dict) -> MaskRCNN:
    builder = maskrcnn_resnet50_fpn if name == "maskrcnn_resnet50_fpn" else maskrcnn_resnet50_fpn_v2
    coco = model_weights(name, init)
    if coco is None:
        return builder(weights=None, weights_backbone=backbone_weights("resnet50", init),
                       num_classes=num_classes, **common)
    model = builder(weights=coco, **common)  # 91 COCO classes; swap the class-specific layers
    box_in = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_in, num_classes)
    mask_in = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_in, 256, num_classes)
    return model


def _norm_layer(weights) -> type[nn.Module]:
    # FrozenBatchNorm only makes sense with pretrained statistics; from scratch BN must train
    return FrozenBatchNorm2d if weights is not None else nn.BatchNorm2d


def _resnet_fpn(depth: str, init: str, channels: int, layers: int = 4) -> BackboneWithFPN:
    """ResNet-18/34 body with an FPN over layer1..layer``layers`` (strides 4..) plus a max-pool
    level; layers after the last returned one are cut off (IntermediateLayerGetter drops them)."""
    if init == "coco":
        model_weights(f"maskrcnn_{depth}_fpn", init)  # raises: no COCO weights for this backbone
    weights = backbone_weights(depth, init)
    body = {"resnet18": resnet18, "resnet34": resnet34}[depth](weights=weights, norm_layer=_norm_layer(weights))
    if weights is not None:  # as torchvision: keep the stem and layer1 fixed when pretrained
        for name, parameter in body.named_parameters():
            if not name.startswith(("layer2", "layer3", "layer4")):
                parameter.requires_grad_(False)
    if layers not in (3, 4):
        raise TypeError(f"fpn_layers must be 3 or 4, got {layers}")
    return_layers = {f"layer{i}": str(i - 1) for i in range(1, layers + 1)}
    return BackboneWithFPN(body, return_layers, [64, 128, 256, 512][:layers], channels,
                           extra_blocks=LastLevelMaxPool())


def _onestage_backbone(name: str, init: str, channels: int, layers: int) -> BackboneWithFPN:
    """The one-stage models' backbone: FPN maps at strides 4, 8, 16 plus a pooled 32."""
    body = name.split("_", 1)[1].removesuffix("_fpn")
    if body == "mobilenet_v3_large":
        return _mobilenet_fpn(init, channels, strides=(4, 8, 16))
    return _resnet_fpn(body, init, channels, layers)


def _mobilenet_fpn(init: str, channels: int, strides: tuple[int, ...] | None = None) -> BackboneWithFPN:
    """MobileNetV3-Large features with an FPN plus a max-pool level; the FPN reads the last two
    stages (strides 16, 32, as torchvision's Mask R-CNN does) or, given ``strides``, the last block
    at each of those strides (the features after the last one are cut off)."""
    if init == "coco":
        model_weights("maskrcnn_mobilenet_v3_large_fpn", init)
    weights = backbone_weights("mobilenet_v3_large", init)
    features = mobilenet_v3_large(weights=weights, norm_layer=_norm_layer(weights)).features
    stages = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]
    if strides is None:
        returned = stages[-2:]
    else:  # stages[k] (k >= 1) starts stride 2^(k+1): the block before it ends stride 2^k
        returned = [stages[int(math.log2(s))] - 1 for s in strides]
    return_layers = {str(index): str(k) for k, index in enumerate(returned)}
    in_channels = [features[index].out_channels for index in returned]
    return BackboneWithFPN(features, return_layers, in_channels, channels, extra_blocks=LastLevelMaxPool())


def configure_inference(model: MaskRCNN | OneStageSegmenter, score_thresh: float | None = None,
                        detections_per_img: int | None = None, nms_thresh: float | None = None,
                        min_size: int | None = None, max_size: int | None = None) -> MaskRCNN | OneStageSegmenter:
    """Set an instance model's inference settings, the one place they are set (predict, eval and
    training validation all come here); None leaves a setting as it is.

    In Mask R-CNN the score threshold and detection cap go into the RoI heads, so boxes the user
    would discard never reach the mask head (most of the CPU cost of an unsure model);
    ``nms_thresh`` is the class-wise NMS IoU; ``min_size``/``max_size`` are the short-side target
    and the long-side cap of the model's own resize."""
    heads, transform = inference_settings(model), model.transform
    if score_thresh is not None:
        heads.score_thresh = float(score_thresh)
    if detections_per_img is not None:
        heads.detections_per_img = int(detections_per_img)
    if nms_thresh is not None:
        heads.nms_thresh = float(nms_thresh)
    if min_size is not None:
        transform.min_size = (int(min_size),)
    if max_size is not None:
        transform.max_size = int(max_size)
    return model


def inference_settings(model: MaskRCNN | OneStageSegmenter) -> Any:
    """Where an instance model keeps score_thresh, nms_thresh and detections_per_img."""
    return model.roi_heads if isinstance(model, MaskRCNN) else model


def instance_loss(loss_dict: dict[str, torch.Tensor]) -> torch.Tensor:
    """Total Mask R-CNN training loss: the sum of its five terms."""
    return sum(loss_dict.values())
