"""Generate synthetic shapes datasets (circles, squares, triangles), deterministically from a seed.

    python examples/make_shapes.py                      # examples/shapes: 40 train (seed 0) + 20 val (seed 1), JPEG
    python examples/make_shapes.py --train 600 --val 60 --seed 100 --out data/shapes600 --png
    python examples/make_shapes.py --train 0 --val 80 --seed 201 --out data/shapes_test --png --coco
    python examples/make_shapes.py --sizes 320x240,640x480,256x256 --coco --out data/mixed
    python examples/make_shapes.py --varied --train 1200 --val 100 --seed 300 --png --out data/varied

Each split folder gets images/ and via_project.json (VIA 2; and coco.json with --coco), so it
is a DATA folder for `segcli train` and a split for `segcli eval`. --varied draws harder images:
flat, gradient and textured backgrounds, 0 to 8 objects from 10 px, heavy occlusion, low-contrast
and partly transparent objects, blur and noise (segcli.data.synthetic.VARIED). See
weights/README.md for the data the shipped weights were trained on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from segcli.data.synthetic import generate_shapes_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "shapes")
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--val", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="train seed; val uses seed + 1")
    parser.add_argument("--png", action="store_true", help="lossless PNG images (larger)")
    parser.add_argument("--coco", action="store_true", help="also write coco.json in each split")
    parser.add_argument("--varied", action="store_true", help="harder, more varied images (see above)")
    parser.add_argument("--sizes", default="320x240", help="image sizes WxH, comma-separated (each image picks one)")
    args = parser.parse_args()
    fmt = "png" if args.png else "jpg"
    sizes = tuple(tuple(int(v) for v in size.lower().split("x")) for size in args.sizes.split(","))
    for split, count, seed in (("train", args.train, args.seed), ("val", args.val, args.seed + 1)):
        if count:
            path = generate_shapes_dataset(args.out / split, count, seed, sizes=sizes, coco=args.coco,
                                           image_format=fmt, varied=args.varied)
            print(f"{split}: {count} images -> {path}")


if __name__ == "__main__":
    main()
