"""The `gankit` command: one module per command, each with ``register(sub)`` and a thin ``cmd_*`` that parses,
calls the library and reports. Heavy modules (torch) are imported inside the commands, so `--help` is instant.

Exit codes: 0 success, 2 bad input, 3 training diverged, 130/143 interrupted (in training: a checkpoint was saved).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys

from ..core.errors import GankitError, Interrupted, Terminated
from . import eval as eval_cmd
from . import listing, report, reproduce, sample, sweep, train, translate, tune
from .common import Parser

# in the order `gankit --help` lists them
COMMANDS = (train, sample, eval_cmd, translate, sweep, tune, reproduce, report, listing)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="gankit", description="Train, sample and evaluate GANs.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in COMMANDS:
        mod.register(sub)
    return p


def _one_line(msg: object) -> str:
    # The contract is one line per error; a message that embeds another library's text may hold newlines.
    return " ".join(str(msg).split())


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so temp files are removed on the way out (the training loop and the launcher put
    # their own handlers in place while they run). Not in a torchrun worker: there SIGTERM is how torchrun takes the
    # group down after a failure, and a Python handler would wait for a blocked collective. Only the main thread may
    # set handlers.
    old_term = None
    if "TORCHELASTIC_RUN_ID" not in os.environ and os.environ.get("WORLD_SIZE", "1") in ("", "1"):
        try:
            old_term = signal.signal(signal.SIGTERM, _terminate)
        except ValueError:
            pass
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --nproc` hands them on to torchrun
        return int(args.func(args) or 0)
    except GankitError as e:
        print(f"gankit: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        print(f"gankit: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("gankit: interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        print("gankit: terminated by SIGTERM", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `gankit list | head`: the reader left, nothing is wrong
        return 0
    except OSError as e:
        # Disk full, permission denied, read-only file system: the user's environment, not a gankit bug.
        what = f"{e.filename}: " if e.filename else ""
        hint = " (disk full: free space or choose another --out)" if e.errno == errno.ENOSPC else ""
        print(f"gankit: error: {_one_line(f'{what}{e.strerror or e}{hint}')}", file=sys.stderr)
        return 2
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def run(argv: list[str] | None = None) -> None:
    """``python -m gankit``: :func:`main`, then exit with its code.

    A torchrun worker (WORLD_SIZE > 1; the process group is already destroyed when ``main`` returns) leaves with
    ``os._exit``, as multiprocessing's child processes do, instead of running the interpreter's teardown: there gloo's
    C++ threads could still release objects that need the interpreter, and a thread that asks for it while it shuts
    down is stopped with std::terminate -- "terminate called without an active exception", SIGABRT, seen after a
    consistency-check error had already been reported (exit 2 became -6)."""
    code = main(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
