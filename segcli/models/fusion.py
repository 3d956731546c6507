"""Fold each BatchNorm into the convolution before it, for inference: one pass over every
activation less, the same results up to float rounding. (Measured on this CPU: 2% of the
one-stage model's forward on real 320x240 images, 17% on random ones with 100 detections each.)

Only pairs whose composition is certain are folded: a ``Conv2d`` followed by a BatchNorm in an
``nn.Sequential`` or torchvision's ``IntermediateLayerGetter`` (both apply their children in
order), and the ``convN``/``bnN`` pairs of torchvision's ResNet blocks and stem, whose forward
is ``bnN(convN(x))``. The BatchNorm becomes ``nn.Identity``. Works for ``nn.BatchNorm2d`` (in eval
mode) and torchvision's ``FrozenBatchNorm2d``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops import FrozenBatchNorm2d

IN_ORDER = (nn.Sequential, IntermediateLayerGetter)
RESNET_PARTS = (BasicBlock, Bottleneck, ResNet)
RESNET_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold BatchNorms into their convolutions in place (``model`` in eval mode); returns how
    many were folded."""
    if model.training:
        raise ValueError("fuse_conv_bn needs a model in eval mode (BatchNorm's running statistics)")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, IN_ORDER):
            names = list(module._modules)
            pairs = list(zip(names, names[1:]))
        elif isinstance(module, RESNET_PARTS):
            pairs = [pair for pair in RESNET_PAIRS if all(name in module._modules for name in pair)]
        else:
            continue
        for conv_name, norm_name in pairs:
            conv, norm = module._modules[conv_name], module._modules[norm_name]
            if type(conv) is nn.Conv2d and isinstance(norm, (nn.BatchNorm2d, FrozenBatchNorm2d)) \
                    and norm.running_mean is not None:
                module._modules[conv_name] = _folded(conv, norm)
                module._modules[norm_name] = nn.Identity()
                folded += 1
    return folded


@torch.no_grad()
def _folded(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    # a copy, not a new Conv2d: building one would draw its random init from the global RNG,
    # and validation during training must leave the training's random stream as it found it
    fused = copy.deepcopy(conv)
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                        norm.eps, norm.weight, norm.bias)
    fused.weight, fused.bias = weight, bias
    return fused.eval()
