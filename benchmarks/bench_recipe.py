"""The training-recipe ablation: each addition's effect on held-out mask AP at a fixed budget.

Data as the shipped weights' recipe: ``make_shapes.py --train 600 --val 60 --seed 100 --png``,
test set ``--train 0 --val 80 --seed 201`` (80 images that no variant sees). Every variant trains
``maskrcnn_resnet18_fpn`` from scratch with the same command (``--epochs 7 --batch 4 --imgsz 240
--workers 1``, one compute thread, so two variants share a 2-core machine fairly) plus its
options; best.pt is then scored on the test set with ``segcli eval``. The budget is the same
epochs and images for every variant (their wall time is printed too: EMA and mosaic cost little
per step). A variant's figures do not depend on the machine's load: training is deterministic
for a seed.

    .venv/bin/python benchmarks/bench_recipe.py [--out /tmp/recipe] [--parallel 2] [--only base,ema]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "base": [],
    "ema": ["--ema"],
    "ema_auto": ["--ema", "--optimizer", "auto"],
    "ema_auto_mosaic": ["--ema", "--optimizer", "auto", "--mosaic"],
}
COMMON = ["--epochs", "7", "--batch", "4", "--imgsz", "240", "--workers", "1"]


def segcli(*args: str) -> list[str]:
    return [sys.executable, "-m", "segcli", *args]


def make_data(out: Path) -> tuple[Path, Path]:
    train, test = out / "shapes600", out / "test"
    make = [sys.executable, str(ROOT / "examples" / "make_shapes.py")]
    if not train.exists():
        subprocess.run([*make, "--train", "600", "--val", "60", "--seed", "100", "--png", "--out", str(train)],
                       check=True)
    if not test.exists():
        subprocess.run([*make, "--train", "0", "--val", "80", "--seed", "201", "--png", "--coco", "--out", str(test)],
                       check=True)
    return train, test / "val" / "coco.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/recipe"))
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--only", default=",".join(VARIANTS))
    args = parser.parse_args()
    train, test = make_data(args.out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    names = [name for name in args.only.split(",") if name]
    running, started, results = {}, {}, {}
    while names or running:
        while names and len(running) < args.parallel:
            name = names.pop(0)
            if not (args.out / "runs" / name / "weights" / "best.pt").exists():
                log = open(args.out / f"{name}.log", "w")
                running[name] = subprocess.Popen(
                    segcli("train", str(train), *COMMON, *VARIANTS[name], "--out", str(args.out / "runs"),
                           "--name", name), env=env, stdout=log, stderr=subprocess.STDOUT)
            else:
                running[name] = None
            started[name] = time.monotonic()
        for name, process in list(running.items()):
            if process is None or process.poll() is not None:
                if process is not None and process.returncode != 0:
                    raise SystemExit(f"{name} failed: see {args.out / (name + '.log')}")
                # a run already in --out is scored again, not timed
                results[name] = {"minutes": None if process is None else (time.monotonic() - started[name]) / 60}
                del running[name]
        time.sleep(2)
    print("| variant | test mask AP | AP50 | AP75 | box AP | minutes |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        report = args.out / f"{name}.eval.json"
        subprocess.run(segcli("eval", "--gt", str(test), "--weights", str(args.out / "runs" / name / "weights" / "best.pt"),
                              "--workers", "0", "--out", str(args.out / "eval" / name), "--json", str(report)),
                       check=True, stdout=subprocess.DEVNULL)
        scores = json.loads(report.read_text())
        segm, bbox = scores["segm"], scores["bbox"]
        print(f"| {name} | {segm['AP']:.3f} | {segm['AP50']:.3f} | {segm['AP75']:.3f} | {bbox['AP']:.3f} | "
              f"{'-' if result['minutes'] is None else format(result['minutes'], '.1f')} |")


if __name__ == "__main__":
    main()
