"""Shared CLI pieces: consoles, option types, and the mapping of SegcliError to exit codes."""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segcli.engine.core.interrupt import Interrupted
from segcli.errors import SegcliError
from segcli.ledger import Ledger

console = Console()
err_console = Console(stderr=True)

ImagesOption = Annotated[Path | None, typer.Option(
    "--images", "-i", help="Image folder (default: the annotation file's folder, or VIA's default path).",
    file_okay=False)]
LabelAttrOption = Annotated[str | None, typer.Option(
    "--label-attr", help="VIA region attribute holding the class (default: detected).")]
CategoryOption = Annotated[str, typer.Option(
    "--category", help="Category for regions with no class attribute.")]


class Task(str, Enum):
    instance = "instance"
    semantic = "semantic"


ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG}


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn SegcliError into one red line on stderr and its exit code (SEGCLI_DEBUG=1: traceback);
    an interruption into its message and 128 + the signal number (130 Ctrl-C, 143 SIGTERM)."""
    try:
        yield
    except SegcliError as exc:
        if os.environ.get("SEGCLI_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except Interrupted as exc:  # a job stopped by SIGINT/SIGTERM with its files complete
        if exc.message:
            err_console.print(f"[bold yellow]interrupted:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None
    except OSError as exc:
        # a full or read-only disk, a quota or a permission met while writing outputs in the
        # middle of a job (a writer thread, a forked process): the user's environment, not a bug
        if exc.errno not in ENVIRONMENT_ERRNOS or os.environ.get("SEGCLI_DEBUG"):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(where)}cannot write: {escape(exc.strerror or str(exc))}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def check_option(option: str, value: float | None, low: float | None = None, high: float | None = None) -> None:
    """Refuse an option value outside [low, high], or NaN/inf, with a one-line SegcliError (call
    inside ``user_errors``): a negative size or an absurd one must fail before any work, not as a
    traceback or a 160 GB allocation deep in the engine. None (option not given) passes."""
    if value is None:
        return
    if math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high):
        return
    if low is not None and high is not None:
        expected = f"between {low:g} and {high:g}"
    elif low is not None:
        expected = f"at least {low:g}"
    elif high is not None:
        expected = f"at most {high:g}"
    else:
        expected = "a finite number"
    raise SegcliError(f"{option} {value:g}: expected {expected}")


STYLES = {"error": "red", "missing": "red", "dropped": "yellow", "skipped": "yellow",
          "clipped": "yellow", "repaired": "yellow", "changed": "yellow"}


def grouped_table(rows: list[dict], title: str) -> Table | None:
    """Rows with action/image/item/reason grouped by action and the reason's general part
    (before its first colon), with a count and the first place each was seen."""
    if not rows:
        return None
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["action"], row["reason"].split(":", 1)[0]), []).append(row)
    table = Table(title=title, title_justify="left")
    table.add_column("action")
    table.add_column("what", overflow="fold")
    table.add_column("count", justify="right")
    table.add_column("first seen", overflow="fold")
    for (action, head), members in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        first = members[0]
        where = " ".join(p for p in (first["image"], first["item"]) if p)
        style = STYLES.get(action)
        table.add_row(f"[{style}]{action}[/]" if style else action, escape(head), str(len(members)), escape(where))
    return table


def ledger_table(ledger: Ledger, title: str = "What changed") -> Table | None:
    """The ledger as a grouped table, or None when it is empty."""
    return grouped_table([{"action": e.action, "image": e.image, "item": e.item, "reason": e.reason}
                          for e in ledger.entries], title)


class EventPrinter:
    """Draws a job's progress events (``segcli.engine.core.events``): ``on_KIND(**data)`` for
    each kind it shows; a declared kind it has no method for is not shown, an undeclared one is a
    bug (ValueError). Subclasses set ``kinds``."""

    kinds: tuple[str, ...] = ()

    def __call__(self, kind: str, **data) -> None:
        if kind not in self.kinds:
            raise ValueError(f"{type(self).__name__}: unknown event {kind!r}")
        handler = getattr(self, f"on_{kind}", None)
        if handler is not None:
            handler(**data)

