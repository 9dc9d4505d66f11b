"""User-facing errors: one line saying what was wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
import errno
import os
import sys
import time
import traceback
from collections.abc import Iterable

import click

from prunequant.clock import process_age, stage_time_line


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


# Errors of the file system a user can fix (space, permissions), as opposed to bugs.
_WRITE_ERRORS = {
    errno.ENOSPC: "free some disk space (or move the checkout) and rerun",
    errno.EDQUOT: "free some space under your quota and rerun",
    errno.EFBIG: "the file system or `ulimit -f` refuses files this large; raise the limit and rerun",
    errno.EROFS: "the file system is read-only; run from a writable checkout",
    errno.EACCES: "make it writable (chmod/chown) or run from a writable checkout",
    errno.EPERM: "make it writable (chmod/chown) or run from a writable checkout",
}


class StageCommand(click.Command):
    """A stage's click command: a full disk or a read-only folder is a one-line error, not a traceback. When it
    succeeds it prints where its time went (:mod:`prunequant.clock`) on stderr."""

    def invoke(self, ctx):
        startup, start = process_age(), time.perf_counter()
        try:
            result = super().invoke(ctx)
            click.echo(stage_time_line(os.path.basename(sys.argv[0]), startup, time.perf_counter() - start), err=True)
            return result
        except OSError as exc:
            if exc.errno not in _WRITE_ERRORS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise PrunequantError(f"{where}{exc.strerror or exc}; {_WRITE_ERRORS[exc.errno]}") from exc
