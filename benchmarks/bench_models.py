"""Forward time per image of every architecture at its default size, on the CPU threads given.

Each model is built from scratch (untrained) in eval mode and run on a 640x480 image: Mask R-CNN
models resize it themselves (their ``min_size``/``max_size``); semantic models get it resized so
its short side is their ``input_size``. Times are the median of N runs after one warm-up, printed
with the ratio to torchvision's stock Mask R-CNN ResNet-50-FPN measured in the same run.
A second table shows what pushing the score threshold into the RoI heads saves on an untrained
(unsure) light model: score 0.05 (torchvision's default) against 0.5.

    .venv/bin/python benchmarks/bench_models.py [--threads 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from segcli.models.instance import configure_inference  # noqa: E402
from segcli.models.registry import MODEL_NAMES, build_model, model_args, task_of  # noqa: E402

BASELINE = "maskrcnn_resnet50_fpn"


def time_forward(name: str, runs: int, score_thresh: float | None = None) -> tuple[float, str]:
    torch.manual_seed(0)
    args = model_args(name, 4)
    model = build_model(name, args).eval()
    image = torch.rand(3, 480, 640)
    if task_of(name) == "instance":
        if score_thresh is not None:
            configure_inference(model, score_thresh=score_thresh)
        run = lambda: model([image])  # noqa: E731
        size = f"min {args['min_size']} / max {args['max_size']}"
    else:
        short = args["input_size"]
        x = F.interpolate(image[None], size=(short, round(640 * short / 480)), mode="bilinear")
        run = lambda: model(x)  # noqa: E731
        size = f"{short}x{round(640 * short / 480)}"
    times = []
    with torch.inference_mode():
        run()
        for _ in range(runs):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {name: time_forward(name, args.runs) for name in MODEL_NAMES}
    base = results[BASELINE][0]
    print(f"forward time per 640x480 image, {args.threads} CPU threads, median of {args.runs}, untrained weights")
    print(f"| model | input | seconds | ratio to {BASELINE} |")
    print("|---|---|---|---|")
    for name, (seconds, size) in results.items():
        print(f"| {name} | {size} | {seconds:.3f} | {seconds / base:.2f}x |")
    light = "maskrcnn_resnet18_fpn"
    loose, _ = time_forward(light, args.runs, 0.05)
    strict, _ = time_forward(light, args.runs, 0.5)
    print(f"\n{light} untrained: score_thresh 0.05 {loose:.3f} s, 0.5 {strict:.3f} s "
          f"(ratio {strict / loose:.2f}x)")


if __name__ == "__main__":
    main()
