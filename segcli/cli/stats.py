"""``segcli stats``: options and printing; the work is in ``segcli.engine.stats``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from segcli.cli.common import CategoryOption, ImagesOption, LabelAttrOption, console, grouped_table, user_errors

MAX_TABLE_CATEGORIES = 1000
"""Categories printed in the table (--json lists all): rich takes ~0.3 ms a row, so 200,000
categories took a minute to print and no one reads them there."""


def stats(
    annotations: Annotated[Path, typer.Argument(metavar="ANNOTATIONS", help="VIA, COCO or label-mask folder.")],
    images: ImagesOption = None,
    label_attr: LabelAttrOption = None,
    category: CategoryOption = "object",
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON instead of tables.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when any problem is found.")] = False,
) -> None:
    """Show what an annotation set holds and what is wrong with it, changing nothing.

    Images, objects per category, object sizes, empty images, and problems: invalid entries,
    duplicate or unknown ids, missing or unreadable images, size mismatches, shapes outside the
    image or degenerate.

    Examples:
      segcli stats via_project.json
      segcli stats coco.json --images images/ --json > stats.json
    """
    from segcli.engine.stats import dataset_stats

    with user_errors():
        result = dataset_stats(annotations, images, label_attr, category)
    if as_json:
        typer.echo(json.dumps(result, indent=1, ensure_ascii=False))
    else:
        _print_stats(result)
    if check and result["problems"]:
        raise typer.Exit(1)


def _print_stats(result: dict) -> None:
    console.print(f"[bold]{escape(result['file'])}[/] ({result['format']})", highlight=False)
    overview = Table(show_header=False)
    overview.add_column("")
    overview.add_column("", justify="right")
    sizes = result["sizes"]
    rows = [("images", result["images"]), ("images found on disk", result["images_found"]),
            ("images without objects", result["empty_images"]), ("objects", result["objects"]),
            ("polylines/points (no area)", result["non_area_regions"]),
            ("small / medium / large objects", f"{sizes['small']} / {sizes['medium']} / {sizes['large']}"),
            ("object area min / median / max (px)",
             "-" if sizes["min_area"] is None else f"{sizes['min_area']:.0f} / {sizes['median_area']:.0f} / {sizes['max_area']:.0f}"),
            ("shapes", ", ".join(f"{k} {v}" for k, v in sorted(result["shapes"].items())) or "-")]
    for name, value in rows:
        overview.add_row(name, escape(str(value)))
    console.print(overview)
    if result.get("images_hint"):
        console.print(f"[yellow]{escape(result['images_hint'])}[/]", highlight=False)
    categories = Table(title="Categories" + (f" (from attribute '{escape(result['label_attr'])}')" if result["label_attr"] else ""),
                       title_justify="left")
    for column in ("id", "name", "objects", "images"):
        categories.add_column(column, justify="right" if column != "name" else "left")
    shown = result["categories"][:MAX_TABLE_CATEGORIES]
    for c in shown:
        categories.add_row(str(c["id"]), escape(c["name"]), str(c["objects"]), str(c["images"]))
    console.print(categories)
    if len(result["categories"]) > len(shown):
        console.print(f"... and {len(result['categories']) - len(shown)} more categories (--json lists each)")
    for note in result["notes"]:
        console.print(f"note: {escape(note['reason'])}", highlight=False)
    problems = result["problems"]
    if not problems:
        console.print("[green]no problems found[/]")
        return
    console.print(grouped_table(problems, f"Problems ({len(problems)}; --json lists each)"))
