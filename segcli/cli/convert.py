"""``segcli convert``: options and printing; the work is in ``segcli.engine.convert``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from segcli.cli.common import CategoryOption, ImagesOption, LabelAttrOption, console, ledger_table, user_errors


class OutputFormat(str, Enum):
    coco = "coco"
    via = "via"
    masks = "masks"


def convert(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="VIA 1/2/3 JSON or CSV, COCO JSON, or a folder of label PNGs.")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="Output JSON file, or a folder for --to masks.")],
    to: Annotated[OutputFormat | None, typer.Option("--to", help="Output format (default: COCO for VIA input, VIA for COCO, masks when OUTPUT is not .json).")] = None,
    images: ImagesOption = None,
    label_attr: LabelAttrOption = None,
    category: CategoryOption = "object",
    strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 1, nothing written) if any object would be lost or changed.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT and OUTPUT.report.json if they exist (a mask folder only if segcli wrote it).")] = False,
) -> None:
    """Convert annotations between VIA, COCO and label masks, reporting every change.

    The input format is detected from the content. Every repaired, clipped, skipped or dropped
    object is listed in a summary and in OUTPUT.report.json.

    Examples:
      segcli convert via_project.json coco.json --images images/
      segcli convert coco.json via_project.json
      segcli convert via_project.json label_maps/ --to masks
    """
    from segcli.engine.convert import convert as run_convert

    with user_errors():
        result = run_convert(input_path, output, to.value if to else None, images, label_attr,
                             category, strict, overwrite)
    console.print(f"[bold]{escape(str(result.dataset.source_path))}[/] ({result.dataset.source_format}) -> "
                  f"[bold]{escape(str(result.output))}[/] ({result.to})", highlight=False)
    summary = Table()
    summary.add_column("")
    summary.add_column("read", justify="right")
    summary.add_column("written", justify="right")
    summary.add_row("images", str(len(result.dataset.images)), str(result.images_written))
    summary.add_row("objects", str(result.dataset.num_annotations), str(result.objects_written))
    summary.add_row("categories", str(len(result.dataset.categories)), str(len(result.dataset.categories)))
    console.print(summary)
    if result.dataset.label_attr:
        console.print(f"categories from region attribute [bold]{escape(result.dataset.label_attr)}[/]: "
                      + escape(", ".join(c.name for c in result.dataset.categories)), highlight=False)
    table = ledger_table(result.ledger)
    if table is not None:
        console.print(table)
    else:
        console.print("nothing was changed or dropped")
    console.print(f"wrote [bold]{escape(str(result.output))}[/] and {escape(str(result.report))}", highlight=False)
