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
    instances: Annotated[bool, typer.Option("--instances", help="With --to masks: instance-id PNGs (16-bit, 0 background, object k = k) and instances.json (id -> class), which keep every object; without it, class-value palette PNGs, which merge touching objects of a class.")] = False,
) -> None:
    """Convert annotations between VIA, COCO and label masks, reporting every change.

    The input format is detected from the content. Every repaired, clipped, skipped or dropped
    object is listed in a summary and in OUTPUT.report.json.

    Examples:
      segcli convert via_project.json coco.json --images images/
      segcli convert coco.json via_project.json
      segcli convert via_project.json label_maps/ --to masks
      segcli convert via_project.json instance_maps/ --to masks --instances
    """
    from segcli.engine.convert import convert as run_convert

    with user_errors():
        result = run_convert(input_path, output, to.value if to else None, images, label_attr,
                             category, strict, overwrite, instances)
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
    if result.label_maps is not None:
        _print_label_map_losses(result.label_maps, result.instances)
    if result.dataset.label_attr:
        console.print(f"categories from region attribute [bold]{escape(result.dataset.label_attr)}[/]: "
                      + escape(", ".join(c.name for c in result.dataset.categories)), highlight=False)
    table = ledger_table(result.ledger)
    if table is not None:
        console.print(table)
    else:
        console.print("nothing was changed or dropped")
    console.print(f"wrote [bold]{escape(str(result.output))}[/] and {escape(str(result.report))}", highlight=False)


def _print_label_map_losses(counts: dict, instances: bool) -> None:
    """What a read-back of the mask folder will give: the 'written' objects are those."""
    kind = "instance-id maps" if instances else "class-value label maps"
    lost = [f"{counts[key]} {what}" for key, what in (("merged", "merged with a touching object of their class"),
                                                      ("split", "split in parts"), ("hidden", "wholly hidden"),
                                                      ("partly_hidden", "partly hidden")) if counts[key]]
    line = f"{kind}: {counts['objects']} objects painted, {counts['objects_read_back']} read back"
    console.print(line + (f" ({', '.join(lost)}; each in the report)" if lost else " as they were"), highlight=False)
    if not instances and (counts["merged"] or counts["split"]):
        console.print("--instances writes instance-id maps instead, which keep touching objects apart", highlight=False)
