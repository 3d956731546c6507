"""Error types shown to users: one line naming the file, the item and the problem.

Every failure a user can cause (a bad file, a missing path, an output that exists) raises
``SegcliError``; the CLI prints it as one red line and exits with its ``exit_code`` (2 for bad
input, as argument-parsing errors do). Anything else that escapes is a bug in segcli.
"""

from __future__ import annotations

from pathlib import Path


def with_article(word: str) -> str:
    """``word`` after "a" or "an" by its first letter (quotes skipped): "an instance", "a semantic",
    "an int", "a 'categories'"."""
    first = word.lstrip("'\"`")[:1].lower()
    return f"{'an' if first and first in 'aeiou' else 'a'} {word}"


class SegcliError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    Args:
        message: what is wrong, e.g. "coordinate is NaN".
        path: the file concerned, if any.
        item: where in the file, e.g. "image 'a.jpg', region 3".
        exit_code: process exit code the CLI uses (2: bad input, 1: a check failed).
    """

    def __init__(self, message: str, path: str | Path | None = None, item: str | None = None,
                 exit_code: int = 2):
        self.message = message
        self.path = str(path) if path is not None else None
        self.item = item
        self.exit_code = exit_code
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.path, self.item) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message
