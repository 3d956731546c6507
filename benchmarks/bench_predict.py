"""``segcli predict folder`` throughput against a naive loop and against the model alone.

The shipped Mask R-CNN (weights/, or --weights; without either, one trained for a few steps here)
on N generated images, in the same run:
  naive:  what a user writes from torchvision's documentation, for each image: PIL load, model
          call, keep the detections scoring >= --conf, overlay drawn with segcli's drawing
          function and written, per-image JSON of the kept detections;
  segcli: predict_folder (decoding in DataLoader workers, resizing before the model, the score
          threshold inside the model, a writer thread, COCO/VIA files);
  model:  the model's own forward time on the same images, already decoded, threshold inside.
Prints images/s and the ratios segcli / naive speed (target >= 1.5x) and segcli time / model
time (target <= 1.15x).

    .venv/bin/python benchmarks/bench_predict.py [--images 96] [--size 320x240] [--batch 1] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from segcli.data.synthetic import generate_shapes_dataset  # noqa: E402
from segcli.engine.core.overlay import draw_instances  # noqa: E402
from segcli.engine.predict.run import PredictOptions, predict_folder  # noqa: E402
from segcli.engine.train.trainer import TrainConfig, train  # noqa: E402
from segcli.formats import geometry  # noqa: E402
from segcli.models.checkpoint import load_checkpoint  # noqa: E402
from segcli.models.defaults import DEFAULT_WEIGHTS, default_weights, weights_dir  # noqa: E402
from segcli.models.instance import configure_inference  # noqa: E402


def naive(weights: Path, images: list[Path], out: Path, conf: float) -> float:
    model, record = load_checkpoint(weights)
    names = [c["name"] for c in record["categories"]]
    out.mkdir()
    start = time.perf_counter()
    with torch.inference_mode():
        for path in images:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            output = model([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])[0]
            keep = output["scores"] >= conf
            output = {key: value[keep] for key, value in output.items()}
            rles = [geometry.mask_to_rle(m[0].numpy() > 0.5) for m in output["masks"]]
            picture = draw_instances(rgb, rles, output["boxes"].numpy(), output["labels"].numpy(),
                                     output["scores"].numpy(), names)
            Image.fromarray(picture).save(out / f"{path.stem}.jpg")
            ids = [c["id"] for c in record["categories"]]
            results = [{"image_id": 0, "category_id": ids[int(label) - 1], "segmentation": geometry.rle_to_json(rle),
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
                       for rle, (x1, y1, x2, y2), label, score in zip(rles, output["boxes"].tolist(),
                                                                       output["labels"], output["scores"])]
            (out / f"{path.stem}.json").write_text(json.dumps(results))
    return time.perf_counter() - start


def model_only(weights: Path, images: list[Path], conf: float, batch: int) -> float:
    model, _ = load_checkpoint(weights)
    configure_inference(model, score_thresh=conf)
    tensors = [torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255 for p in images]
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(tensors), batch):
            model(tensors[i:i + batch])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--size", default="320x240", help="generated image size WxH")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--procs", type=int, default=0, help="segcli prediction processes (0: auto, as the CLI)")
    parser.add_argument("--conf", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights, label = args.weights, str(args.weights)
        if weights is None and (weights_dir() / DEFAULT_WEIGHTS["instance"]).is_file():
            weights, label = default_weights("instance"), "shipped " + DEFAULT_WEIGHTS["instance"]
        if weights is None:
            for split in ("train", "val"):
                generate_shapes_dataset(root / "data" / split, 8, seed=7)
            train(TrainConfig(data=str(root / "data"), epochs=10, batch=4, imgsz=240, workers=0, out=str(root),
                              name="m"))
            weights, label = root / "m" / "weights" / "best.pt", "briefly trained maskrcnn_resnet18_fpn"
        width, height = (int(v) for v in args.size.split("x"))
        generate_shapes_dataset(root / "test", args.images, seed=21, sizes=((width, height),))
        images = sorted((root / "test" / "images").iterdir())
        model_only(weights, images[:4], args.conf, args.batch)  # warm-up
        t_naive = naive(weights, images, root / "naive", args.conf)
        start = time.perf_counter()
        summary = predict_folder(root / "test" / "images", PredictOptions(weights=weights, out=root / "ours", conf=args.conf,
                                                                          batch=args.batch, workers=args.workers,
                                                                          procs=args.procs))
        t_ours = time.perf_counter() - start
        t_model = model_only(weights, images, args.conf, args.batch)
    n = len(images)
    print(f"{n} images {args.size}, {label}, conf {args.conf}, batch {args.batch}, "
          f"{args.workers} worker(s), {summary['processes']} process(es), {torch.get_num_threads()} threads; "
          f"{sum(summary['instances_per_class'].values())} instances found")
    print(f"  naive loop   {t_naive:6.2f} s  {n / t_naive:5.2f} images/s")
    print(f"  segcli       {t_ours:6.2f} s  {n / t_ours:5.2f} images/s   ratio to naive {t_naive / t_ours:.2f}x")
    print(f"  model alone  {t_model:6.2f} s  {n / t_model:5.2f} images/s   segcli time / model time {t_ours / t_model:.2f}x")


if __name__ == "__main__":
    main()
