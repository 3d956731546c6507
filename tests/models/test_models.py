"""Every architecture builds, trains (losses) and predicts with the right shapes; tiny models
overfit a couple of generated images; thresholds reach the RoI heads; devices resolve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcli.errors import SegcliError
from segcli.models.device import inference_context, select_device
from segcli.models.instance import INSTANCE_MODELS, configure_inference, instance_loss
from segcli.models.registry import IMAGENET_MEAN, IMAGENET_STD, MODEL_NAMES, build_model, model_args, task_of
from segcli.models.semantic import SEMANTIC_MODELS, semantic_loss

SMALL = {"instance": {"min_size": 64, "max_size": 96}, "semantic": {"aux": True}}


def _instance_batch():
    images = [torch.rand(3, 64, 80), torch.rand(3, 72, 64)]
    targets = []
    for image in images:
        masks = torch.zeros(2, *image.shape[1:], dtype=torch.uint8)
        masks[0, 5:30, 5:40] = 1
        masks[1, 30:60, 20:50] = 1
        targets.append({"boxes": torch.tensor([[5.0, 5, 40, 30], [20, 30, 50, 60]]),
                        "labels": torch.tensor([1, 2]), "masks": masks})
    return images, targets


@pytest.mark.parametrize("name", INSTANCE_MODELS)
def test_instance_model_losses_and_outputs(name):
    torch.manual_seed(0)
    model = build_model(name, model_args(name, 3, **SMALL["instance"]))
    images, targets = _instance_batch()
    model.train()
    losses = model(images, targets)
    one_stage = {"loss_classifier", "loss_box_reg", "loss_mask"}  # no proposals: no RPN losses
    assert set(losses) == (one_stage if name.startswith("yolact") else {*one_stage, "loss_objectness", "loss_rpn_box_reg"})
    total = instance_loss(losses)
    assert torch.isfinite(total) and total.item() > 0
    total.backward()
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    for image, out in zip(images, outputs):
        k = len(out["scores"])
        assert out["boxes"].shape == (k, 4) and out["labels"].shape == (k,)
        assert out["masks"].shape == (k, 1, *image.shape[1:])
        assert ((out["labels"] >= 1) & (out["labels"] <= 2)).all()


@pytest.mark.parametrize("name", SEMANTIC_MODELS)
def test_semantic_model_loss_and_output(name):
    torch.manual_seed(0)
    model = build_model(name, model_args(name, 4, **SMALL["semantic"]))
    x = torch.randn(2, 3, 64, 80)
    target = torch.randint(0, 4, (2, 64, 80))
    target[:, :4] = 255  # ignored pixels
    model.train()
    outputs = model(x)
    assert outputs["out"].shape == (2, 4, 64, 80) and outputs["aux"].shape == (2, 4, 64, 80)
    loss = semantic_loss(outputs, target, class_weights=torch.tensor([0.5, 1.0, 1.0, 2.0]))
    assert torch.isfinite(loss)
    loss.backward()
    model.eval()
    with torch.no_grad():
        assert set(model(x)) <= {"out", "aux"} and model(x)["out"].shape == (2, 4, 64, 80)


def test_ignored_pixels_do_not_count():
    logits = {"out": torch.zeros(1, 3, 2, 2, requires_grad=True)}
    all_ignored = torch.full((1, 2, 2), 255)
    all_ignored[0, 0, 0] = 1
    assert semantic_loss(logits, all_ignored).item() == pytest.approx(np.log(3), rel=1e-5)


def test_names_and_tasks():
    assert len(MODEL_NAMES) == len(set(MODEL_NAMES)) == 15
    assert task_of("maskrcnn_resnet18_fpn") == "instance" and task_of("pspnet_resnet18") == "semantic"
    with pytest.raises(SegcliError, match="unknown model"):
        task_of("yolo")
    with pytest.raises(SegcliError, match="unknown arguments"):
        model_args("pspnet_resnet18", 3, min_size=5)
    with pytest.raises(SegcliError, match="at least one category"):
        model_args("pspnet_resnet18", 1)


def test_score_threshold_reaches_the_roi_heads():
    torch.manual_seed(0)
    name = "maskrcnn_resnet18_fpn"
    model = build_model(name, model_args(name, 3, min_size=64, max_size=96)).eval()
    images = [torch.rand(3, 64, 64)]
    with inference_context(torch.device("cpu")):
        loose = model(images)[0]
        configure_inference(model, score_thresh=1.01, detections_per_img=5)
        strict = model(images)[0]
    assert len(loose["scores"]) > 5  # an untrained model is unsure about many boxes
    assert len(strict["scores"]) == 0 and model.roi_heads.detections_per_img == 5


def _mask_iou_per_object(outputs, targets):
    ious = []
    for out, target in zip(outputs, targets):
        predicted = (out["masks"][:, 0] > 0.5) & (out["scores"][:, None, None] > 0.5)
        for mask, label in zip(target["masks"].bool(), target["labels"]):
            same = [k for k in range(len(predicted)) if out["labels"][k] == label]
            ious.append(max([((predicted[k] & mask).sum() / (predicted[k] | mask).sum()).item() for k in same] or [0.0]))
    return ious


def test_tiny_mask_rcnn_overfits_two_images(tiny_shapes):
    images, targets, _ = tiny_shapes
    torch.manual_seed(0)
    name = "maskrcnn_resnet18_fpn"
    model = build_model(name, model_args(name, 4, min_size=120, max_size=160))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    first = None
    for _ in range(60):
        model.train()
        loss = instance_loss(model(images, targets))
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
    assert loss.item() < first / 5
    model.eval()
    with torch.no_grad():
        ious = _mask_iou_per_object(model(images), targets)
    assert np.mean(ious) > 0.7, ious


def test_tiny_pspnet_overfits_two_images(tiny_shapes):
    images, _, label_maps = tiny_shapes
    torch.manual_seed(0)
    x = (torch.stack(images) - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    model = build_model("pspnet_resnet18", model_args("pspnet_resnet18", 4, aux=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(50):
        model.train()
        loss = semantic_loss(model(x), label_maps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(x)["out"].argmax(1)
    ious = [((predicted == c) & (label_maps == c)).sum().item() / ((predicted == c) | (label_maps == c)).sum().item()
            for c in range(4) if (label_maps == c).any()]
    assert min(ious) > 0.7, ious


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(SegcliError, match="unknown device"):
        select_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(SegcliError, match="no CUDA GPU"):
            select_device("cuda:0")
