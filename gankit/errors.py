"""The one user-error type. The CLI turns it into a one-line message and exit code 2."""

from __future__ import annotations


class GankitError(Exception):
    """Bad input from the user: a file, field or value, and what would fix it.

    Raised for anything the user can correct; never for bugs. The message must fit on one line and name the
    offending thing.
    """

    exit_code = 2


class DivergedError(GankitError):
    """Training produced NaN or Inf; the last good checkpoint is kept untouched."""

    exit_code = 3
