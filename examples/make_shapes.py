"""Regenerate the example datasets in examples/shapes (train: seed 0, val: seed 1).

    python examples/make_shapes.py            # 40 train + 20 val images, JPEG, VIA 2 project
    python examples/make_shapes.py --train 400 --val 60 --out /tmp/shapes_big --png
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
    args = parser.parse_args()
    fmt = "png" if args.png else "jpg"
    for split, count, seed in (("train", args.train, args.seed), ("val", args.val, args.seed + 1)):
        path = generate_shapes_dataset(args.out / split, count, seed, image_format=fmt)
        print(f"{split}: {count} images -> {path}")


if __name__ == "__main__":
    main()
