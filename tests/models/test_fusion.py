"""BatchNorm folding for inference (models/fusion.py): the folded model computes what the
original does, and no BatchNorm of a one-stage model is left behind."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from segcli.models.fusion import fuse_conv_bn
from segcli.models.registry import build_model, model_args


def _random_statistics(model: nn.Module) -> None:
    """BatchNorms with statistics far from the identity, so folding them is a real change."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            size = module.running_mean.shape
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(size, generator=generator) * 2 + 0.3)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(size, generator=generator) * 0.3)


def _outputs(model: nn.Module, names: list[str], run) -> dict[str, object]:
    """What the named submodules return while ``run(model)`` runs."""
    seen, hooks = {}, []
    for name in names:
        hooks.append(model.get_submodule(name).register_forward_hook(
            lambda module, args, output, name=name: seen.__setitem__(name, output)))
    with torch.no_grad():
        seen["model"] = run(model)
    for hook in hooks:
        hook.remove()
    return seen


def _flat(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flat(v)]
    return [t for v in value for t in _flat(v)]


@pytest.mark.parametrize("name,watched", [
    ("yolact_resnet18_fpn", ["backbone", "heads.0", "heads.1", "heads.2", "protonet"]),
    ("maskrcnn_resnet18_fpn", ["backbone"]),
    ("maskrcnn_mobilenet_v3_large_fpn", ["backbone"]),
    ("yolact_mobilenet_v3_large_fpn", ["backbone", "protonet"]),
    ("pspnet_resnet18", []),
])
def test_folded_model_computes_the_same(name, watched):
    torch.manual_seed(0)
    size = {"input_size": 96} if name.startswith("pspnet") else {"min_size": 96, "max_size": 128}
    model = build_model(name, model_args(name, 4, **size)).eval()
    _random_statistics(model)
    folded = copy.deepcopy(model)
    count = fuse_conv_bn(folded)
    assert count >= 10
    image = torch.rand(3, 96, 128)
    if name.startswith("pspnet"):
        run = lambda m: m(image[None])["out"]  # noqa: E731
    else:
        run = lambda m: m([image])  # noqa: E731
    before, after = _outputs(model, watched, run), _outputs(folded, watched, run)
    for key in (watched or ["model"]):
        for a, b in zip(_flat(before[key]), _flat(after[key]), strict=True):
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * max(1.0, float(a.abs().max()))), key
    if name.startswith("yolact"):
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_a_training_model_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        fuse_conv_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))


def test_only_a_convolution_directly_before_its_norm_is_folded():
    """A BatchNorm that does not follow a Conv2d in order (here after a ReLU) stays as it is."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    assert fuse_conv_bn(model) == 0 and isinstance(model[2], nn.BatchNorm2d)


def test_folding_leaves_the_global_random_stream_alone():
    """Validation during training folds a copy of the model: it must not draw random numbers, or
    a run resumed after a stop in validation would continue on another random stream."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, bias=False),
                          nn.BatchNorm2d(8)).eval()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert fuse_conv_bn(model) == 2
    assert torch.equal(torch.rand(3), expected)
