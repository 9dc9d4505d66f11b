"""User-facing errors: one line saying what was wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
import os
import traceback
from collections.abc import Iterable

import click


class PrunequantError(click.ClickException):
    """An error caused by the user's input (params, files, environment), not by a bug.

    Click prints it as one line on stderr and exits with status 1; set ``PRUNEQUANT_DEBUG=1``
    to also see the traceback.
    """

    def show(self, file=None) -> None:
        if os.environ.get("PRUNEQUANT_DEBUG") == "1":
            traceback.print_exception(self)
        click.echo(f"error: {self.format_message()}", err=True)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
