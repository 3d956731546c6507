"""Pretrained weights through torchvision's weights API, with a clear message when offline.

``--init imagenet`` loads an ImageNet backbone, ``--init coco`` a COCO-trained detector or
segmenter where torchvision has one; both download once into the torch cache
(``torch.hub.get_dir()/checkpoints``). Without internet, ``fetch_weights`` says which URL to
download and where to put the file instead of failing deep inside torch.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch
from torchvision.models import (MobileNet_V3_Large_Weights, ResNet18_Weights, ResNet34_Weights,
                                ResNet50_Weights, WeightsEnum)
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, MaskRCNN_ResNet50_FPN_Weights
from torchvision.models.segmentation import (DeepLabV3_MobileNet_V3_Large_Weights, DeepLabV3_ResNet50_Weights,
                                             FCN_ResNet50_Weights)

from segcli.errors import SegcliError

INITS = ("scratch", "imagenet", "coco")

IMAGENET_BACKBONES: dict[str, WeightsEnum] = {
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": ResNet50_Weights.IMAGENET1K_V1,
    "mobilenet_v3_large": MobileNet_V3_Large_Weights.IMAGENET1K_V1,
}

COCO_MODELS: dict[str, WeightsEnum] = {
    "maskrcnn_resnet50_fpn": MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
    "maskrcnn_resnet50_fpn_v2": MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    "fcn_resnet50": FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
    "deeplabv3_resnet50": DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
    "deeplabv3_mobilenet_v3_large": DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
}


def cache_path(weights: WeightsEnum) -> Path:
    """Where torch keeps (or would keep) the downloaded file of ``weights``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def fetch_weights(weights: WeightsEnum) -> WeightsEnum:
    """Make sure ``weights`` is in the torch cache (downloading it once); return it.

    Raises:
        SegcliError: the file is not cached and cannot be downloaded (offline, blocked).
    """
    path = cache_path(weights)
    if path.is_file():
        return weights
    try:
        torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise SegcliError(
            f"cannot download {weights} ({exc.__class__.__name__}: {getattr(exc, 'reason', exc)}). "
            f"On a machine with internet download {weights.url} and put it at {path}, "
            "or use --init scratch") from None
    return weights


def backbone_weights(backbone: str, init: str) -> WeightsEnum | None:
    """ImageNet weights for ``backbone`` when ``init`` is imagenet (fetched), else None."""
    check_init(init)
    if init != "imagenet":
        return None
    if backbone not in IMAGENET_BACKBONES:
        raise SegcliError(f"no ImageNet weights for backbone {backbone!r}")
    return fetch_weights(IMAGENET_BACKBONES[backbone])


def model_weights(name: str, init: str) -> WeightsEnum | None:
    """COCO weights of a whole model when ``init`` is coco (fetched), else None."""
    check_init(init)
    if init != "coco":
        return None
    if name not in COCO_MODELS:
        raise SegcliError(f"torchvision has no COCO weights for {name}; use --init imagenet or scratch "
                          f"(COCO weights exist for {', '.join(COCO_MODELS)})")
    return fetch_weights(COCO_MODELS[name])


def check_init(init: str) -> None:
    if init not in INITS:
        raise SegcliError(f"unknown --init {init!r} (choose from {', '.join(INITS)})")
