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


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived during training; a checkpoint was written. ``exit_code`` is 130 or 143."""

    def __init__(self, signum: int, run_dir: object, step: int) -> None:
        import signal

        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}: checkpoint saved; continue with `gankit train --resume {run_dir}`")


class Terminated(BaseException):
    """SIGTERM outside a training loop (which saves and raises :class:`Interrupted` instead). The CLI's handler
    raises it so that ``finally`` blocks run: a half-written temp file is removed, not left behind. Exit code 143.
    A BaseException, like KeyboardInterrupt, so that ``except Exception`` clean-ups do not swallow it."""

    exit_code = 143


class StopTraining(Exception):
    """Raised by a caller's ``on_scores`` callback (gankit.training.loop.train) to end a run early but cleanly: the
    loop checkpoints, writes its summary with ``stopped_by=reason`` and ``stop_note`` (e.g. Optuna pruning a trial)."""

    def __init__(self, reason: str, note: str) -> None:
        super().__init__(note)
        self.reason = reason
        self.note = note
