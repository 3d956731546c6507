"""``segcli split``: options and printing; the work is in ``segcli.engine.split``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from segcli.cli.common import (
    CategoryOption,
    ImagesOption,
    LabelAttrOption,
    check_option,
    console,
    user_errors,
)

MAX_TABLE_CATEGORIES = 1000
"""Categories printed in the table (split.json lists all), as in ``segcli stats``."""


def split(
    annotations: Annotated[Path, typer.Argument(metavar="ANNOTATIONS", help="VIA 1/2/3 JSON or CSV, COCO JSON, or a folder of label PNGs.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New or empty folder for the parts (DIR/train/, DIR/val/, DIR/split.json).")],
    val: Annotated[float, typer.Option("--val", help="Fraction of the images for validation, between 0 and 1.")] = 0.2,
    test: Annotated[float | None, typer.Option("--test", help="Fraction of the images for a test part (default: none).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the shuffle: the same seed and images give the same split.")] = 0,
    images: ImagesOption = None,
    label_attr: LabelAttrOption = None,
    category: CategoryOption = "object",
) -> None:
    """Split one annotation set into train and val (and test) parts, by image, stratified by class.

    All objects of an image go to the same part; each class gets an image in val when it has 2
    or more (in test from 3). The parts are written in the input's format with the same
    categories, into DIR/train/ and DIR/val/, the layout `segcli train DIR` reads; images are
    not copied: DIR/split.json records their folder and each part's images (DIR/train.txt lists
    their paths).

    Examples:
      segcli split via_region_data.json --val 0.2 --out balloon_split && segcli train balloon_split
      segcli split coco.json --images images/ --val 0.15 --test 0.15 --seed 1 --out parts
    """
    from segcli.engine.split import split_dataset

    with user_errors():
        check_option("--seed", seed, 0, 2**32 - 1)
        result = split_dataset(annotations, out, val, test, seed, images, label_attr, category)
    console.print(f"[bold]{escape(str(annotations))}[/] ({result.input_format}) -> [bold]{escape(str(result.out))}[/]",
                  highlight=False)
    console.print(_table(result))
    _print_notes(result)


def _table(result) -> Table:
    parts = list(result.parts)
    table = Table(title="Images / objects per class and part", title_justify="left")
    table.add_column("class")
    for part in parts:
        table.add_column(f"{part} ({result.record['fractions'][part]:g})", justify="right")
    for row in result.classes[:MAX_TABLE_CATEGORIES]:
        table.add_row(escape(row["name"]), *(f"{row['images'][p]} / {row['objects'][p]}" for p in parts))
    if len(result.classes) > MAX_TABLE_CATEGORIES:
        table.add_row(f"... {len(result.classes) - MAX_TABLE_CATEGORIES} more (split.json)", *("" for _ in parts))
    table.add_section()
    table.add_row("images without objects", *(str(result.parts[p]["empty_images"]) for p in parts))
    table.add_row("[bold]all images / objects[/]",
                  *(f"[bold]{result.parts[p]['images']} / {result.parts[p]['objects']}[/]" for p in parts))
    return table


def _print_notes(result) -> None:
    record = result.record
    if record["classes_with_one_image"]:
        console.print("note: in train only (one image each): " + escape(", ".join(record["classes_with_one_image"])),
                      highlight=False)
    if record["classes_missing_from_val"]:
        console.print("[yellow]warning:[/] not in val (a rarer class needed each of their images in another "
                      "part): " + escape(", ".join(record["classes_missing_from_val"])), highlight=False)
    if result.images_folder is None:
        where = "the images were not looked for (label masks without --images)"
    else:
        where = f"{result.images_found} of {result.images_total} images found in {result.images_folder}"
        if result.images_found < result.images_total:
            where += " (pass --images DIR if that is the wrong folder)"
    console.print(escape(f"{where}; images are not copied, split.json records their folder"), highlight=False)
    files = ", ".join(p["annotations"] for p in result.parts.values())
    console.print(f"wrote {escape(files)}, split.json and {escape(', '.join(f'{p}.txt' for p in result.parts))} "
                  f"in [bold]{escape(str(result.out))}[/]", highlight=False)
    if result.input_format != "masks":
        console.print(f"train on it: segcli train {escape(str(result.out))}", highlight=False)
