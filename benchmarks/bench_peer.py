"""segcli against Ultralytics YOLOv8n-seg, both trained from scratch: test mask AP and predict speed.

Issue 16's side-by-side comparison, rerun by one script. Data as the recipe's (bench_recipe.py):
``make_shapes.py --train 600 --val 60 --seed 100 --png`` to train on, ``--train 0 --val 80
--seed 201 --png --coco`` to test on (80 images neither model sees). The training splits are also
written in Ultralytics' YOLO segmentation layout (OUT/yolo: images symlinked, one label line
``class x1 y1 x2 y2 ...`` of normalised polygon coordinates per polygon part, data.yaml). The two
trainings start at the same time, each with one compute thread (OMP_NUM_THREADS=1) and the same
wall-time budget (--hours, default 0.575 = 34.5 min):

    segcli: python -m segcli train OUT/shapes600 --model yolact_resnet18_fpn --time HOURS --batch 4
            --imgsz 240 --workers 1 --ema --optimizer auto --mosaic --copy-paste --out OUT/runs --name segcli
    peer:   yolo segment train model=yolov8n-seg.yaml data=OUT/yolo/data.yaml time=HOURS imgsz=320
            device=cpu pretrained=False amp=False workers=1 batch=8 project=OUT/runs name=yolo
            exist_ok=True

Both best.pt are then scored by ONE scorer, ``segcli eval --gt OUT/test/val/coco.json --pred
PRED.json``: segcli's predictions from ``segcli predict folder --conf 0.001``, the peer's from
ultralytics.YOLO(best.pt).predict(conf=0.001, retina_masks=True) written as COCO results (RLE of
the full-size masks) by a snippet run in the peer's venv. Last, predict speed CLI against CLI on
the test images, overlays saved by both, two threads (OMP_NUM_THREADS=2), each run --repeats
times in alternating order:

    segcli: python -m segcli predict folder IMAGES --weights best.pt --out TMP
    peer:   yolo segment predict model=best.pt source=IMAGES imgsz=320 device=cpu save=True
            project=TMP exist_ok=True

Ultralytics is AGPL and never a dependency of segcli: it lives in a virtual environment of its own
(--venv, default /tmp/peer-venv), made here when missing with ``python -m venv`` and ``pip install
torch==2.14.1 torchvision==0.29.1 ultralytics==8.4.190 pycocotools`` (unpinned ultralytics if
that release cannot be had; torch as segcli's venv has it). This script imports neither segcli nor
ultralytics: it runs both through subprocesses. The peer runs with YOLO_OFFLINE=1 (no font, model
or settings download; nothing here needs the network) and its settings in OUT/yolo-config.

Threads: on CPU Ultralytics sets torch's threads to min(8, cores - 1) whatever OMP_NUM_THREADS
says (1 on a 2-core machine), so the peer's ``yolo`` is run here as the same entrypoint
(ultralytics.cfg.entrypoint, what the ``yolo`` script calls) with that number set to
OMP_NUM_THREADS first: both sides then use the thread count of the step. --peer-own-threads runs
the plain ``VENV/bin/yolo`` instead.

    .venv/bin/python benchmarks/bench_peer.py [--out /tmp/peer] [--hours 0.575] [--venv /tmp/peer-venv]
        [--skip-train] [--only-speed] [--repeats 3] [--segcli-model NAME] [--segcli-extra="--no-ema ..."]
    .venv/bin/python benchmarks/bench_peer.py --out /tmp/peer-smoke --hours 0.01 --train-images 20 \\
        --val-images 5 --test-images 10 --repeats 1          # a smoke run: every step, figures meaningless
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
ULTRALYTICS = "ultralytics==8.4.190"
SEGCLI_COMMON = ["--batch", "4", "--imgsz", "240", "--workers", "1", "--ema", "--optimizer", "auto", "--mosaic",
                 "--copy-paste"]
PEER_IMGSZ = 320
PEER_COMMON = ["model=yolov8n-seg.yaml", f"imgsz={PEER_IMGSZ}", "device=cpu", "pretrained=False", "amp=False",
               "workers=1", "batch=8"]
# the `yolo` console script's entrypoint, with Ultralytics' CPU thread count (min(8, cores - 1)) set
# to OMP_NUM_THREADS before it picks the device
PEER_LAUNCH = ("import os, sys\n"
               "import ultralytics.utils.torch_utils as torch_utils\n"
               "torch_utils.NUM_THREADS = int(os.environ['OMP_NUM_THREADS'])\n"
               "from ultralytics.cfg import entrypoint\n"
               "sys.argv[0] = 'yolo'\n"
               "sys.exit(entrypoint())\n")
# run in the peer's venv: best.pt's predictions on the test images as COCO results, ids of the test set
PEER_PREDICT = '''
import json, sys
from pathlib import Path
import numpy as np
from pycocotools import mask as mask_utils
from ultralytics import YOLO

weights, gt, images, out, imgsz = sys.argv[1:6]  # images: the split folder, file names relative to it
coco = json.loads(Path(gt).read_text())
categories = {c["name"]: c["id"] for c in coco["categories"]}
model = YOLO(weights)
results, unknown = [], {}
for image in coco["images"]:
    path = Path(images) / image["file_name"]
    if not path.is_file():
        path = Path(images) / "images" / Path(image["file_name"]).name
    r = model.predict(str(path), conf=0.001, retina_masks=True, imgsz=int(imgsz),
                      device="cpu", max_det=100, verbose=False)[0]
    if r.masks is None:
        continue
    masks = r.masks.data.cpu().numpy() > 0.5
    if masks.shape[1:] != (image["height"], image["width"]):
        raise SystemExit(f"{image['file_name']}: masks {masks.shape[1:]}, image {image['height']}x{image['width']}")
    for mask, box, label, score in zip(masks, r.boxes.xyxy.tolist(), r.boxes.cls.tolist(), r.boxes.conf.tolist()):
        name = r.names[int(label)]
        if name not in categories:
            unknown[name] = unknown.get(name, 0) + 1
            continue
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x1, y1, x2, y2 = box
        results.append({"image_id": image["id"], "category_id": categories[name], "segmentation": rle,
                        "score": float(score), "bbox": [x1, y1, x2 - x1, y2 - y1]})
Path(out).write_text(json.dumps(results))
print(f"{len(results)} predictions on {len(coco['images'])} images" +
      (f"; classes absent from the test set, left out: {unknown}" if unknown else ""))
'''


def segcli(*args: str) -> list[str]:
    return [sys.executable, "-m", "segcli", *args]


def peer(venv: Path, own_threads: bool, *args: str) -> list[str]:
    if own_threads:
        return [str(venv / "bin" / "yolo"), *args]
    return [str(venv / "bin" / "python"), "-c", PEER_LAUNCH, *args]


def peer_env(out: Path, threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "YOLO_OFFLINE": "1",
            "YOLO_CONFIG_DIR": str(out / "yolo-config")}


def make_venv(venv: Path, env: dict[str, str]) -> None:
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import ultralytics, pycocotools"],
                                          capture_output=True, env=env).returncode == 0:
        return
    start = time.monotonic()
    print(f"making {venv} (Ultralytics, AGPL, is kept out of segcli's environment)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    if subprocess.run([*pip, *TORCH, ULTRALYTICS, "pycocotools"]).returncode != 0:
        print(f"{ULTRALYTICS} could not be installed: trying the newest ultralytics", flush=True)
        subprocess.run([*pip, *TORCH, "ultralytics", "pycocotools"], check=True)
    version = subprocess.run([str(python), "-c", "import ultralytics; print(ultralytics.__version__)"],
                             capture_output=True, text=True, check=True, env=env).stdout.strip()
    print(f"ultralytics {version} installed in {time.monotonic() - start:.0f} s", flush=True)


def make_data(out: Path, train_images: int, val_images: int, test_images: int) -> tuple[Path, Path]:
    train = out / f"shapes{train_images}" if val_images == 60 else out / f"shapes{train_images}_{val_images}"
    test = out / "test" if test_images == 80 else out / f"test{test_images}"
    make = [sys.executable, str(ROOT / "examples" / "make_shapes.py")]
    if not train.exists():
        subprocess.run([*make, "--train", str(train_images), "--val", str(val_images), "--seed", "100", "--png",
                        "--out", str(train)], check=True)
    if not test.exists():
        subprocess.run([*make, "--train", "0", "--val", str(test_images), "--seed", "201", "--png", "--coco",
                        "--out", str(test)], check=True)
    return train, test / "val"


def image_path(folder: Path, file_name: str) -> Path:
    """A COCO file_name of a split folder: relative to it (images/NAME) or to its images/."""
    for path in (folder / file_name, folder / "images" / file_name, folder / "images" / Path(file_name).name):
        if path.is_file():
            return path
    raise SystemExit(f"{file_name}: not in {folder} nor {folder / 'images'}")


def to_yolo(data: Path, out: Path) -> Path:
    """data's train/ and val/ in Ultralytics' layout in out: images/SPLIT (links), labels/SPLIT/*.txt, data.yaml."""
    if (out / "data.yaml").exists():
        return out / "data.yaml"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names: list[str] | None = None
    for split in ("train", "val"):
        folder = data / split
        coco_path = folder / "coco.json"
        if not coco_path.exists():  # make_shapes writes VIA only without --coco
            coco_path = out / f"{split}.coco.json"
            subprocess.run(segcli("convert", str(folder / "via_project.json"), str(coco_path),
                                  "--images", str(folder / "images")), check=True, stdout=subprocess.DEVNULL)
        coco = json.loads(coco_path.read_text())
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        if names is None:
            names = [c["name"] for c in categories]
        elif names != [c["name"] for c in categories]:
            raise SystemExit(f"{split}: categories {[c['name'] for c in categories]}, train has {names}")
        index = {c["id"]: names.index(c["name"]) for c in categories}
        lines: dict[int, list[str]] = {img["id"]: [] for img in coco["images"]}
        sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
        skipped = parts = 0
        for ann in coco["annotations"]:
            segmentation = ann.get("segmentation")
            if ann.get("iscrowd") or not isinstance(segmentation, list):
                skipped += 1  # RLE: not a polygon
                continue
            width, height = sizes[ann["image_id"]]
            for polygon in segmentation:
                if len(polygon) < 6:
                    continue
                xy = [min(max(v / (width if k % 2 == 0 else height), 0.0), 1.0) for k, v in enumerate(polygon)]
                lines[ann["image_id"]].append(" ".join([str(index[ann["category_id"]]), *(f"{v:.6f}" for v in xy)]))
                parts += 1
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        for img in coco["images"]:
            source = image_path(folder, img["file_name"]).resolve()
            (out / "images" / split / source.name).symlink_to(source)
            label = "".join(f"{line}\n" for line in lines[img["id"]])
            (out / "labels" / split / f"{source.stem}.txt").write_text(label)
        print(f"yolo {split}: {len(coco['images'])} images, {parts} polygon parts"
              + (f", {skipped} RLE/crowd object(s) skipped" if skipped else ""), flush=True)
    classes = ", ".join(f"{k}: {json.dumps(name)}" for k, name in enumerate(names or []))
    (out / "data.yaml").write_text(f"path: {json.dumps(str(out.resolve()))}\ntrain: images/train\nval: images/val\n"
                                   f"names: {{{classes}}}\n")
    return out / "data.yaml"


def train_both(args: argparse.Namespace, data: Path, data_yaml: Path) -> dict[str, float]:
    runs = args.out / "runs"
    commands = {
        "segcli": (segcli("train", str(data), "--model", args.segcli_model, "--time", str(args.hours), *SEGCLI_COMMON,
                          *shlex.split(args.segcli_extra), "--out", str(runs), "--name", "segcli"),
                   {**os.environ, "OMP_NUM_THREADS": "1"}),
        "peer": (peer(args.venv, args.peer_own_threads, "segment", "train", f"data={data_yaml}", f"time={args.hours}",
                      *PEER_COMMON, f"project={runs}", "name=yolo", "exist_ok=True"),
                 peer_env(args.out, 1)),
    }
    for name in ("segcli", "yolo"):
        if (runs / name).exists():
            shutil.rmtree(runs / name)
    runs.mkdir(parents=True, exist_ok=True)
    running, started, minutes = {}, time.monotonic(), {}
    for name, (command, env) in commands.items():
        shown = command if name == "segcli" or args.peer_own_threads else ["yolo", *command[3:]]
        print(f"train {name}: {shlex.join(shown)}", flush=True)
        log = open(args.out / f"{name}.train.log", "w")
        running[name] = subprocess.Popen(command, env=env, cwd=args.out, stdout=log, stderr=subprocess.STDOUT)
    while running:
        for name, process in list(running.items()):
            if process.poll() is not None:
                if process.returncode != 0:
                    for other in running.values():
                        if other.poll() is None:
                            other.terminate()
                    raise SystemExit(f"{name} training failed: see {args.out / (name + '.train.log')}")
                minutes[name] = (time.monotonic() - started) / 60
                print(f"{name} trained in {minutes[name]:.1f} min", flush=True)
                del running[name]
        time.sleep(2)
    return minutes


def score_both(args: argparse.Namespace, test: Path, weights: dict[str, Path]) -> dict[str, dict]:
    gt = test / "coco.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    preds = {}
    folder = args.out / "pred" / "segcli"
    if folder.exists():
        shutil.rmtree(folder)
    subprocess.run(segcli("predict", "folder", str(test / "images"), "--weights", str(weights["segcli"]),
                          "--conf", "0.001", "--no-overlays", "--out", str(folder)),
                   check=True, env=env, stdout=subprocess.DEVNULL)
    preds["segcli"] = folder / "predictions.json"
    preds["peer"] = args.out / "pred" / "peer.json"
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as snippet:
        snippet.write(PEER_PREDICT)
    try:
        subprocess.run([str(args.venv / "bin" / "python"), snippet.name, str(weights["peer"]), str(gt),
                        str(test), str(preds["peer"]), str(PEER_IMGSZ)],
                       check=True, env=peer_env(args.out, 1), cwd=args.out)
    finally:
        os.unlink(snippet.name)
    scores = {}
    for name, pred in preds.items():
        report = args.out / f"{name}.eval.json"
        subprocess.run(segcli("eval", "--gt", str(gt), "--pred", str(pred), "--out", str(args.out / "eval" / name),
                              "--json", str(report)), check=True, env=env, stdout=subprocess.DEVNULL)
        result = json.loads(report.read_text())
        scores[name] = {"mask_AP": result["segm"]["AP"], "mask_AP50": result["segm"]["AP50"],
                        "mask_AP75": result["segm"]["AP75"], "box_AP": result["bbox"]["AP"]}
    return scores


def speed(args: argparse.Namespace, test: Path, weights: dict[str, Path]) -> dict[str, dict]:
    images = test / "images"
    count = sum(1 for p in images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    commands = {
        "segcli": lambda tmp: (segcli("predict", "folder", str(images), "--weights", str(weights["segcli"]),
                                      "--out", str(tmp / "segcli")),
                               {**os.environ, "OMP_NUM_THREADS": str(args.speed_threads)}),
        "peer": lambda tmp: (peer(args.venv, args.peer_own_threads, "segment", "predict", f"model={weights['peer']}",
                                  f"source={images}", f"imgsz={PEER_IMGSZ}", "device=cpu", "save=True",
                                  f"project={tmp / 'peer'}", "exist_ok=True"),
                             peer_env(args.out, args.speed_threads)),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for k in range(args.repeats):
        for name in (commands if k % 2 == 0 else reversed(list(commands))):
            with tempfile.TemporaryDirectory(prefix=f"peer-speed-{name}-") as tmp:
                command, env = commands[name](Path(tmp))
                start = time.perf_counter()
                subprocess.run(command, check=True, env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - start)
    result = {name: {"min_s": min(t), "spread_s": max(t) - min(t), "images_per_s": count / min(t), "runs_s": t}
              for name, t in times.items()}
    print(f"\npredict speed, CLI against CLI: {count} images, overlays saved, OMP_NUM_THREADS={args.speed_threads}, "
          f"{args.repeats} run(s) each, alternating")
    print("| model | min s | spread s | images/s |")
    print("|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['min_s']:.2f} | {r['spread_s']:.2f} | {r['images_per_s']:.1f} |")
    print(f"segcli / peer speed: {result['segcli']['images_per_s'] / result['peer']['images_per_s']:.2f}x")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/peer"))
    parser.add_argument("--hours", type=float, default=0.575, help="training budget of each, hours")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/peer-venv"), help="Ultralytics' own venv")
    parser.add_argument("--skip-train", action="store_true", help="reuse OUT/runs/segcli and OUT/runs/yolo")
    parser.add_argument("--only-speed", action="store_true", help="only the predict speed (needs the runs)")
    parser.add_argument("--repeats", type=int, default=3, help="predict speed runs of each")
    parser.add_argument("--speed-threads", type=int, default=2)
    parser.add_argument("--segcli-model", default="yolact_resnet18_fpn")
    parser.add_argument("--segcli-extra", default="", help="more segcli train options, one string (give it as --segcli-extra=\"--opt ...\")")
    parser.add_argument("--train-images", type=int, default=600)
    parser.add_argument("--val-images", type=int, default=60)
    parser.add_argument("--test-images", type=int, default=80)
    parser.add_argument("--peer-own-threads", action="store_true",
                        help="run the plain VENV/bin/yolo (torch threads: min(8, cores - 1), not OMP_NUM_THREADS)")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.venv = args.venv.absolute()
    args.out.mkdir(parents=True, exist_ok=True)
    make_venv(args.venv, peer_env(args.out, 1))
    data, test = make_data(args.out, args.train_images, args.val_images, args.test_images)
    weights = {"segcli": args.out / "runs" / "segcli" / "weights" / "best.pt",
               "peer": args.out / "runs" / "yolo" / "weights" / "best.pt"}
    report_path = args.out / "peer.json"
    keep = report_path.exists() and (args.skip_train or args.only_speed)
    report = json.loads(report_path.read_text()) if keep else {}
    report.update({"hours": args.hours, "segcli_model": args.segcli_model, "segcli_extra": args.segcli_extra,
                   "train_images": args.train_images, "val_images": args.val_images,
                   "test_images": args.test_images, "peer_own_threads": args.peer_own_threads})
    if not args.only_speed:
        if not args.skip_train:
            data_yaml = to_yolo(data, args.out / "yolo")
            report["train_minutes"] = train_both(args, data, data_yaml)
        missing = [str(w) for w in weights.values() if not w.exists()]
        if missing:
            raise SystemExit(f"no weights: {', '.join(missing)}")
        report["scores"] = scores = score_both(args, test, weights)
        minutes = report.get("train_minutes", {})
        print(f"\ntest set: {args.test_images} images, one scorer (segcli eval --pred); budget {args.hours} h each, "
              "one thread")
        print("| model | test mask AP | AP50 | AP75 | box AP | train minutes |")
        print("|---|---|---|---|---|---|")
        for name, label in (("segcli", f"segcli {args.segcli_model}"), ("peer", "YOLOv8n-seg (scratch)")):
            s = scores[name]
            m = minutes.get(name)
            print(f"| {label} | {s['mask_AP']:.3f} | {s['mask_AP50']:.3f} | {s['mask_AP75']:.3f} | {s['box_AP']:.3f} | "
                  f"{'-' if m is None else format(m, '.1f')} |")
    missing = [str(w) for w in weights.values() if not w.exists()]
    if missing:
        raise SystemExit(f"no weights: {', '.join(missing)}")
    report["speed"] = speed(args, test, weights)
    report_path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {report_path}")


if __name__ == "__main__":
    main()
