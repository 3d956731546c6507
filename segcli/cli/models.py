"""``segcli models``: the architectures segcli can train, with their defaults."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from segcli.cli.common import console


def models(
    show_args: Annotated[bool, typer.Option("--args", help="Also show every default argument.")] = False,
) -> None:
    """List the model architectures (use the name with `segcli train --model`).

    Examples:
      segcli models
      segcli models --args
    """
    from segcli.models.registry import DEFAULT_MODELS, MODEL_NAMES, model_args, task_of
    from segcli.models.pretrained import COCO_MODELS

    table = Table(title="segcli models", title_justify="left")
    table.add_column("name", no_wrap=True)
    for column in ("task", "input size", "coco init", "default"):
        table.add_column(column)
    if show_args:
        table.add_column("arguments", overflow="fold")
    for name in MODEL_NAMES:
        args = model_args(name, 2)
        size = f"{args['min_size']} / {args['max_size']}" if "min_size" in args else f"{args['input_size']}"
        default = next((task for task, model in DEFAULT_MODELS.items() if model == name), "")
        row = [name, task_of(name), size, "yes" if name in COCO_MODELS else "", default]
        if show_args:
            row.append(", ".join(f"{k}={v}" for k, v in args.items() if k != "num_classes"))
        table.add_row(*row)
    console.print(table)
