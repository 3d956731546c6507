"""The ``segcli`` command line: one Typer app, one module per command.

The CLI parses options, calls the engine and prints with rich; it holds no logic of its own.
``main`` is the console-script entry point.
"""

from __future__ import annotations

import typer

from segcli import __version__
from segcli.cli import convert as convert_cmd
from segcli.cli import eval as eval_cmd
from segcli.cli import models as models_cmd
from segcli.cli import predict as predict_cmd
from segcli.cli import split as split_cmd
from segcli.cli import stats as stats_cmd
from segcli.cli import train as train_cmd

app = typer.Typer(
    name="segcli",
    help="Convert, train, predict and evaluate image segmentation datasets (VIA, COCO, label masks).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"segcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """segcli: segmentation datasets from the command line.

    Examples:
      segcli convert via_project.json coco.json
      segcli stats coco.json --images images/
    """


app.command("convert", no_args_is_help=True)(convert_cmd.convert)
app.command("stats", no_args_is_help=True)(stats_cmd.stats)
app.command("models")(models_cmd.models)
app.command("train", no_args_is_help=True)(train_cmd.train)
app.add_typer(predict_cmd.app, name="predict")
app.command("eval", no_args_is_help=True)(eval_cmd.evaluate)
app.command("split", no_args_is_help=True)(split_cmd.split)


def main() -> None:
    """Console-script entry point."""
    app()
