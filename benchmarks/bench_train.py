"""Training throughput of ``segcli train`` against a plain loop, measured in the same run.

Both train the same model (maskrcnn_resnet18_fpn, light heads, from scratch) on the same
generated images with the same batch size, DataLoader workers and CPU threads:
  plain:  the same batches from segcli's DataLoader (same images, same augmentations: an untrained
          Mask R-CNN's cost per step depends on what it sees and how far it has learnt, through
          the RoIs that reach the mask head, so different data would not compare), then forward,
          backward, SGD step at the same learning rate per step: no scale jitter, no clipping, no
          progress events, no loss bookkeeping;
  segcli: Trainer's training epoch (augmentations, grouped batches, warm-up/cosine LR, gradient
          clipping, progress events), validation left out of the timing.
Prints images/s of each (after a warm-up of 2 steps) and the ratio segcli / plain.

    .venv/bin/python benchmarks/bench_train.py [--images 48] [--batch 4] [--workers 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from segcli.data.synthetic import generate_shapes_dataset  # noqa: E402
from segcli.engine.train.trainer import TrainConfig, Trainer, learning_rate  # noqa: E402
from segcli.models.registry import build_model  # noqa: E402


def plain_loop(trainer: Trainer, batch: int, workers: int) -> float:
    torch.manual_seed(0)
    model = build_model(trainer.config.model, trainer.model_args).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    trainer.train_loader.batch_sampler.set_epoch(0)
    trainer.train_data.seed, trainer.train_data.epoch = trainer.config.seed, 0
    total = trainer.config.epochs * len(trainer.train_loader)
    seen, start = 0, None
    for step, (images, targets, _, _) in enumerate(trainer.train_loader):
        if step == 2:
            seen, start = 0, time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(trainer.config, step, total)
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(images)
    return seen / (time.perf_counter() - start)


def segcli_loop(trainer: Trainer) -> float:
    torch.manual_seed(0)
    trainer.model.load_state_dict(build_model(trainer.config.model, trainer.model_args).state_dict())
    trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    trainer.state.iteration = 0
    times = []

    def on_event(kind, **data):
        if kind == "step":
            times.append((time.perf_counter(), data["step"]))

    trainer.on_event = on_event
    trainer._train_epoch(0)
    (t0, s0), (t1, s1) = times[1], times[-1]  # from the end of step 2, as the plain loop
    return (s1 - s0) * trainer.config.batch / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--imgsz", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("train", "val"):
            generate_shapes_dataset(Path(tmp) / "data" / split, args.images if split == "train" else 2, seed=5)
        config = TrainConfig(data=str(Path(tmp) / "data"), epochs=1, batch=args.batch, imgsz=args.imgsz,
                             workers=args.workers, out=str(Path(tmp) / "runs"))
        trainer = Trainer.new(config)
        plain, ours = [], []
        for repeat in range(args.repeats):
            # ABBA order: whichever loop runs second in a pair was measured faster (warm allocator
            # and caches: plain first gave 0.89x, segcli first 1.10x for identical loops)
            if repeat % 2 == 0:
                plain.append(plain_loop(trainer, args.batch, args.workers))
                ours.append(segcli_loop(trainer))
            else:
                ours.append(segcli_loop(trainer))
                plain.append(plain_loop(trainer, args.batch, args.workers))
    base, mine = statistics.median(plain), statistics.median(ours)
    print(f"maskrcnn_resnet18_fpn, {args.images} images 320x240, short side {args.imgsz}, batch {args.batch}, "
          f"{args.workers} worker(s), {torch.get_num_threads()} threads, {args.repeats} runs each in ABBA order")
    print(f"  plain loop  {base:.2f} images/s (runs: {', '.join(f'{v:.2f}' for v in plain)})")
    print(f"  segcli      {mine:.2f} images/s (runs: {', '.join(f'{v:.2f}' for v in ours)})")
    print(f"  ratio segcli / plain: {mine / base:.2f}x")


if __name__ == "__main__":
    main()
