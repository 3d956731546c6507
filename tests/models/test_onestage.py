"""The one-stage yolact_* models (issue 16): Fast NMS against standard NMS, task-aligned
assignment, prototype masks cut to their boxes, and a tiny model that learns two objects."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms

from segcli.models.instance import configure_inference
from segcli.models.onestage import ONESTAGE_MODELS, assign, fast_nms
from segcli.models.registry import build_model, model_args


@pytest.mark.parametrize("name", ONESTAGE_MODELS)
def test_every_backbone_gives_the_maps_the_heads_read_at_strides_4_to_32(name):
    model = build_model(name, model_args(name, 3, min_size=128, max_size=192)).eval()
    with torch.no_grad():
        features = model.backbone(torch.rand(1, 3, 128, 192))
    assert list(features) == ["0", "1", "2", "pool"]
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(128 // s, 192 // s) for s in (4, 8, 16, 32)]
    assert {f.shape[1] for f in features.values()} == {model.backbone.out_channels}


def _random_boxes(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(count, 2, generator=generator) * 200
    wh = 10 + torch.rand(count, 2, generator=generator) * 60
    scores = torch.rand(count, generator=generator)
    labels = torch.randint(0, 3, (count,), generator=generator)
    return torch.cat((xy, xy + wh), 1), scores, labels


def test_fast_nms_keeps_a_subset_of_standard_nms_and_equals_it_without_chains():
    for seed in range(5):
        boxes, scores, labels = _random_boxes(300, seed)
        fast = set(fast_nms(boxes, scores, labels, 0.5).tolist())
        standard = set(batched_nms(boxes, scores, labels, 0.5).tolist())
        assert fast <= standard  # a box standard NMS removes, Fast NMS removes too
        assert len(fast) >= 0.8 * len(standard)  # and it removes only a little more
    # well separated clusters of near-duplicates (no box suppressed by a suppressed one): the same
    centres = torch.tensor([[20.0, 20], [120, 40], [60, 150]])
    boxes = torch.cat([torch.cat((c - 10 + d, c + 10 + d)) [None] for c in centres for d in (0.0, 1.0, 2.0)])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95, 0.5, 0.3, 0.2, 0.85])
    labels = torch.zeros(9, dtype=torch.long)
    assert fast_nms(boxes, scores, labels, 0.5).tolist() == batched_nms(boxes, scores, labels, 0.5).tolist()
    # another class is never suppressed
    assert len(fast_nms(boxes[:2], scores[:2], torch.tensor([0, 1]), 0.5)) == 2


def test_assignment_gives_each_object_its_best_aligned_points_inside_its_box():
    points = torch.cartesian_prod(torch.arange(4, 100, 8.0), torch.arange(4, 100, 8.0))[:, [1, 0]]
    gt_boxes = torch.tensor([[10.0, 10, 50, 50], [60, 60, 62, 62]])  # the second holds no cell centre
    gt_labels = torch.tensor([0, 1])
    boxes = torch.cat((points - 20, points + 20), 1)  # every point predicts a 40 px box around itself
    scores = torch.full((len(points), 2), 0.5)
    foreground, gt_index, soft = assign(points, scores, boxes, gt_boxes, gt_labels)
    first = foreground & (gt_index == 0)
    assert first.sum() == 10  # top-k
    inside = ((points > 10) & (points < 50)).all(1)
    assert inside[first].all()
    centre_point = ((points - 30).abs().sum(1)).argmin()
    assert first[centre_point] and soft[centre_point, 0] == soft[:, 0].max()  # the best aligned: the best IoU
    assert (soft[first, 1] == 0).all()
    tiny = foreground & (gt_index == 1)
    assert tiny.sum() == 1 and ((points[tiny] - 61).abs() <= 4).all()  # the cell nearest its centre
    empty = assign(points, scores, boxes, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert not empty[0].any() and not empty[2].any()


def test_a_tiny_one_stage_model_learns_two_objects_and_cuts_masks_to_boxes():
    torch.manual_seed(0)
    name = "yolact_resnet18_fpn"
    model = build_model(name, model_args(name, 3, min_size=96, max_size=128))
    image = torch.rand(3, 96, 128) * 0.2
    masks = torch.zeros(2, 96, 128, dtype=torch.uint8)
    masks[0, 10:50, 10:60] = 1
    masks[1, 50:90, 70:120] = 1
    image[:, masks[0].bool()] += 0.7
    image[1, masks[1].bool()] += 0.7
    target = {"boxes": torch.tensor([[10.0, 10, 60, 50], [70, 50, 120, 90]]), "labels": torch.tensor([1, 2]),
              "masks": masks}
    optimizer = torch.optim.AdamW(model.parameters(), 2e-3)
    model.train()
    first = None
    for _ in range(60):
        losses = model([image], [target])
        loss = sum(losses.values())
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask"}
    assert loss.item() < 0.3 * first
    model.eval()
    with torch.no_grad():
        output = model([image])[0]
    assert output["masks"].shape[1:] == (1, 96, 128)
    for label, truth in ((1, masks[0]), (2, masks[1])):
        k = torch.nonzero(output["labels"] == label).squeeze(1)
        assert len(k) >= 1
        mask = output["masks"][k[0], 0]
        predicted = mask > 0.5
        iou = (predicted & truth.bool()).sum() / (predicted | truth.bool()).sum()
        assert iou > 0.7, (label, iou)
        x1, y1, x2, y2 = output["boxes"][k[0]].tolist()
        ys, xs = torch.meshgrid(torch.arange(96) + 0.5, torch.arange(128) + 0.5, indexing="ij")
        outside = (xs < x1) | (xs > x2) | (ys < y1) | (ys > y2)
        assert outside.any() and (mask[outside] == 0).all()  # a pixel whose centre is off the box
    configure_inference(model, detections_per_img=1)
    with torch.no_grad():
        assert len(model([image])[0]["scores"]) == 1
        configure_inference(model, score_thresh=1.0)
        assert len(model([image])[0]["scores"]) == 0
