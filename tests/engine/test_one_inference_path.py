"""Training validation, ``segcli eval --weights`` and ``segcli predict`` run one inference path
(issue 15, "One inference path"): the AP that training reports for its best epoch is the AP of
``eval --weights best.pt`` on the validation split, and of ``eval --pred`` on ``predict``'s
predictions.json of that split, to the last bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.eval.run import EvalOptions, run_eval
from segcli.engine.predict.run import PredictOptions, predict_folder
from segcli.engine.train.trainer import TrainConfig, train
from segcli.models.checkpoint import read_checkpoint
from tests.helpers import MASK_RCNN_RECIPE

SHIPPED = Path(__file__).resolve().parents[2] / "weights" / "maskrcnn_resnet18_shapes.pt"
SIZES, IMGSZ = ((320, 240), (240, 320)), 96  # over the model's max_size (153): predict pre-shrinks them


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs from the shipped shapes weights (which detect from the start) on shapes images;
    its validation split scored by eval --weights and by eval --pred on predict's files."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("one_path")
        generate_shapes_dataset(root / "train", 4, seed=11, coco=True, sizes=SIZES)
        generate_shapes_dataset(root / "val", 4, seed=12, coco=True, sizes=SIZES)
        summary = train(TrainConfig(train=str(root / "train" / "coco.json"), val=str(root / "val" / "coco.json"),
                                    epochs=2, batch=2, imgsz=IMGSZ, workers=0, lr=1e-3, warmup_iters=0,
                                    init=str(SHIPPED), out=str(root / "runs"), name="run", **MASK_RCNN_RECIPE))
        best = Path(summary["run_dir"]) / "weights" / "best.pt"
        reported = read_checkpoint(best)["record"]["metrics"]  # the best epoch's validation row
        with_model = run_eval(EvalOptions(gt=root / "val" / "coco.json", weights=best, out=root / "eval", workers=0))
        predict_folder(root / "val" / "images", PredictOptions(weights=best, out=root / "predict", conf=0.05,
                                                               workers=0, formats={"coco"}, overlays=False))
        from_files = run_eval(EvalOptions(gt=root / "val" / "coco.json", pred=root / "predict" / "predictions.json",
                                          out=root / "eval_files"))
    finally:
        torch.set_num_threads(threads)
    return reported, with_model, from_files


def _figures(report: dict) -> dict:
    return {"segm_AP": report["segm"]["AP"], "segm_AP50": report["segm"]["AP50"],
            "segm_AP75": report["segm"]["AP75"], "bbox_AP": report["bbox"]["AP"],
            "bbox_AP50": report["bbox"]["AP50"]}


def test_validation_ap_of_the_best_epoch_is_eval_weights_ap(trained):
    reported, with_model, _ = trained
    assert with_model["predictions"] > 0 and with_model["segm"]["AP"] > 0.1  # the test can fail
    assert {k: float(reported[k]) for k in _figures(with_model)} == _figures(with_model)


def test_eval_of_predicts_files_gives_the_same_figures(trained):
    reported, with_model, from_files = trained
    assert from_files["predictions"] == with_model["predictions"]
    assert _figures(from_files) == _figures(with_model) == {k: float(reported[k]) for k in _figures(with_model)}


SEMANTIC = SHIPPED.with_name("pspnet_resnet18_shapes.pt")


def test_semantic_validation_miou_of_the_best_epoch_is_eval_weights_miou(tmp_path):
    """The same for FCN+PSPNet: validation's mIoU, pixel accuracy and mean accuracy are those of
    ``eval --weights best.pt``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generate_shapes_dataset(tmp_path / "train", 8, seed=21, coco=True, sizes=SIZES)
        generate_shapes_dataset(tmp_path / "val", 3, seed=22, coco=True, sizes=SIZES)
        summary = train(TrainConfig(train=str(tmp_path / "train" / "coco.json"), val=str(tmp_path / "val" / "coco.json"),
                                    task="semantic", model="pspnet_resnet18", epochs=1, batch=4, imgsz=160, workers=0,
                                    warmup_iters=0, lr=1e-4, init=str(SEMANTIC), out=str(tmp_path / "runs"),
                                    name="run"))
        best = Path(summary["run_dir"]) / "weights" / "best.pt"
        reported = read_checkpoint(best)["record"]["metrics"]
        scored = run_eval(EvalOptions(gt=tmp_path / "val" / "coco.json", weights=best, out=tmp_path / "eval",
                                      workers=0))
    finally:
        torch.set_num_threads(threads)
    assert scored["mIoU"] > 0.3  # a model that segments: the test can fail
    figures = ("mIoU", "pixel_accuracy", "mean_accuracy")
    assert {k: float(reported[k]) for k in figures} == {k: scored[k] for k in figures}
