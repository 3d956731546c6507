"""FCN+PSPNet semantic segmentation, plus torchvision's FCN and DeepLabV3 as alternatives.

PSPNet (Zhao et al., 2017) with an FCN-style skip: a backbone (ResNet-18/34/50 or
MobileNetV3-Large) whose last stages are dilated so its deepest features sit at stride 8 or 16;
a pyramid pooling module (adaptive average pooling to 1x1, 2x2, 3x3 and 6x6, a 1x1 convolution
each, upsampled and concatenated with the features); fusion with the stride-4 feature map (as
FCN's skip connections); a 1x1 classifier upsampled to the input size. Class 0 is background;
the loss is cross-entropy over the per-pixel softmax with an ignore index (255) and optional
class weights, plus an optional auxiliary head on the stride-8/16 mid-level features.

Input: float ``[B, 3, H, W]`` normalised with ImageNet mean/std. Output: ``{"out": logits
[B, C, H, W]}`` (and ``"aux"`` in training when enabled), as torchvision's segmentation models.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet34, resnet50
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, deeplabv3_resnet50, fcn_resnet50

from segcli.models.pretrained import backbone_weights, model_weights

SEMANTIC_MODELS = ("pspnet_resnet18", "pspnet_resnet34", "pspnet_resnet50", "pspnet_mobilenet_v3_large",
                   "fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large")
IGNORE_INDEX = 255
RESNETS = {"resnet18": (resnet18, (64, 256, 512)), "resnet34": (resnet34, (64, 256, 512)),
           "resnet50": (resnet50, (256, 1024, 2048))}


def semantic_args(name: str, num_classes: int, **overrides: Any) -> dict[str, Any]:
    """The full, JSON-able argument set of a semantic model (defaults + overrides)."""
    args: dict[str, Any] = {"num_classes": num_classes, "aux": False, "input_size": 320}
    if name.startswith("pspnet"):
        args.update(output_stride=8 if "resnet" in name else 16, bins=[1, 2, 3, 6], ppm_channels=None)
    if name.startswith("pspnet_resnet"):
        # 3 stops the ResNet at layer3: at stride 8 layer4 costs two thirds of the compute and 8.4M
        # of ResNet-18's parameters (the shipped weights use it); it learnt slower in the tiny test
        args["backbone_layers"] = 4
    unknown = set(overrides) - set(args)
    if unknown:
        raise TypeError(f"unknown arguments for {name}: {', '.join(sorted(unknown))}")
    args.update({k: v for k, v in overrides.items() if v is not None})
    return args


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: pool to each bin size, 1x1 conv, upsample, concat with input."""

    def __init__(self, in_channels: int, bins: list[int], branch_channels: int):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_channels, branch_channels, 1, bias=False),
                          nn.BatchNorm2d(branch_channels), nn.ReLU(inplace=True)) for b in bins)
        self.out_channels = in_channels + branch_channels * len(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False)
                  for branch in self.branches]
        return torch.cat([x, *pooled], dim=1)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class PSPNet(nn.Module):
    """FCN+PSPNet; see the module docstring. ``backbone`` returns {"skip", "aux", "out"}."""

    def __init__(self, backbone: nn.Module, channels: tuple[int, int, int], num_classes: int,
                 bins: list[int], aux: bool, ppm_channels: int | None = None):
        super().__init__()
        skip_channels, aux_channels, out_channels = channels
        self.backbone = backbone
        self.ppm = PyramidPooling(out_channels, bins, ppm_channels or max(out_channels // len(bins), 32))
        self.bottleneck = conv_bn_relu(self.ppm.out_channels, 256)
        self.skip = conv_bn_relu(skip_channels, 48, kernel=1)
        self.fuse = nn.Sequential(conv_bn_relu(256 + 48, 256), nn.Dropout2d(0.1))
        self.classifier = nn.Conv2d(256, num_classes, 1)
        self.aux_head = nn.Sequential(conv_bn_relu(aux_channels, 128), nn.Dropout2d(0.1),
                                      nn.Conv2d(128, num_classes, 1)) if aux else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        deep = self.bottleneck(self.ppm(features["out"]))
        skip = self.skip(features["skip"])
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.fuse(torch.cat([deep, skip], dim=1)))
        result = {"out": F.interpolate(logits, size=size, mode="bilinear", align_corners=False)}
        if self.aux_head is not None and self.training:
            aux = self.aux_head(features["aux"])
            result["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return result


def dilate_resnet(body: nn.Module, output_stride: int) -> None:
    """Turn the stride-2 convolutions of layer4 (16) or layer3 and layer4 (8) into dilated ones,
    for BasicBlock and Bottleneck alike (torchvision only dilates Bottleneck ResNets)."""
    layers = {32: [], 16: ["layer4"], 8: ["layer3", "layer4"]}[output_stride]
    dilation = 1
    for name in layers:
        dilation *= 2
        for module in getattr(body, name).modules():
            if isinstance(module, nn.Conv2d):
                if module.stride == (2, 2):
                    module.stride = (1, 1)
                if module.kernel_size == (3, 3):
                    module.dilation, module.padding = (dilation, dilation), (dilation, dilation)


def _pspnet(name: str, args: dict[str, Any], init: str) -> PSPNet:
    backbone_name = name.removeprefix("pspnet_")
    if init == "coco":
        model_weights(name, init)  # raises: torchvision has none for PSPNet
    weights = backbone_weights(backbone_name, init)
    if backbone_name == "mobilenet_v3_large":
        # dilated=True keeps the last stage at stride 16 (as torchvision's DeepLabV3-MobileNet)
        features = mobilenet_v3_large(weights=weights, dilated=args["output_stride"] == 16).features
        stages = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
        body = IntermediateLayerGetter(features, {str(stages[1] - 1): "skip", str(stages[-1] - 1): "aux",
                                                  str(len(features) - 1): "out"})
        channels = (features[stages[1] - 1].out_channels, features[stages[-1] - 1].out_channels,
                    features[-1].out_channels)
    else:
        builder, channels = RESNETS[backbone_name]
        resnet = builder(weights=weights)
        dilate_resnet(resnet, args["output_stride"])
        if args.get("backbone_layers", 4) == 3:  # layer4 is cut off by IntermediateLayerGetter
            body = IntermediateLayerGetter(resnet, {"layer1": "skip", "layer2": "aux", "layer3": "out"})
            channels = (channels[0], channels[1] // 2, channels[1])
        else:
            body = IntermediateLayerGetter(resnet, {"layer1": "skip", "layer3": "aux", "layer4": "out"})
    return PSPNet(body, channels, args["num_classes"], list(args["bins"]), args["aux"], args["ppm_channels"])


def build_semantic_model(name: str, args: dict[str, Any], init: str = "scratch") -> nn.Module:
    """Build semantic model ``name`` with ``args`` (from ``semantic_args``)."""
    if name.startswith("pspnet_"):
        return _pspnet(name, args, init)
    builder = {"fcn_resnet50": fcn_resnet50, "deeplabv3_resnet50": deeplabv3_resnet50,
               "deeplabv3_mobilenet_v3_large": deeplabv3_mobilenet_v3_large}[name]
    coco = model_weights(name, init)
    if coco is not None:
        model = builder(weights=coco, aux_loss=args["aux"] or None)
        last = model.classifier[-1]
        model.classifier[-1] = nn.Conv2d(last.in_channels, args["num_classes"], 1)
        if model.aux_classifier is not None:
            aux_last = model.aux_classifier[-1]
            model.aux_classifier[-1] = nn.Conv2d(aux_last.in_channels, args["num_classes"], 1)
        return model
    backbone = "mobilenet_v3_large" if "mobilenet" in name else "resnet50"
    return builder(weights=None, weights_backbone=backbone_weights(backbone, init),
                   num_classes=args["num_classes"], aux_loss=args["aux"])


def semantic_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor,
                  class_weights: torch.Tensor | None = None, aux_weight: float = 0.4) -> torch.Tensor:
    """Cross-entropy over the per-pixel softmax, ignoring label 255; plus 0.4 x the aux loss.

    Args:
        outputs: model output with ``out`` logits ``[B, C, H, W]`` (and ``aux``).
        target: int64 ``[B, H, W]`` label map (0 background, 255 ignored).
        class_weights: optional float ``[C]`` per-class weights.
    """
    loss = F.cross_entropy(outputs["out"], target, weight=class_weights, ignore_index=IGNORE_INDEX)
    if outputs.get("aux") is not None:
        loss = loss + aux_weight * F.cross_entropy(outputs["aux"], target, weight=class_weights,
                                                   ignore_index=IGNORE_INDEX)
    return loss
