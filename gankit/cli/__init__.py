"""The `gankit` command: one module per command, each with ``register(sub)`` and a thin ``cmd_*`` that parses,
calls the library and reports. Heavy modules (torch) are imported inside the commands, so `--help` is instant.

Exit codes: 0 success, 2 bad input, 3 training diverged, 130/143 interrupted (a checkpoint was saved).
"""

from __future__ import annotations

import argparse
import errno
import sys

from ..core.errors import GankitError, Interrupted
from . import eval as eval_cmd
from . import listing, report, sample, sweep, train, translate, tune
from .common import Parser

COMMANDS = (train, sample, eval_cmd, translate, sweep, tune, report, listing)  # in the order `gankit --help` lists them


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="gankit", description="Train, sample and evaluate GANs.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in COMMANDS:
        mod.register(sub)
    return p


def _one_line(msg: object) -> str:
    # The contract is one line per error; a message that embeds another library's text may hold newlines.
    return " ".join(str(msg).split())


def main(argv: list[str] | None = None) -> int:
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
    except BrokenPipeError:  # `gankit list | head`: the reader left, nothing is wrong
        return 0
    except OSError as e:
        # Disk full, permission denied, read-only file system: the user's environment, not a gankit bug.
        what = f"{e.filename}: " if e.filename else ""
        hint = " (disk full: free space or choose another --out)" if e.errno == errno.ENOSPC else ""
        print(f"gankit: error: {_one_line(f'{what}{e.strerror or e}{hint}')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
