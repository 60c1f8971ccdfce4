"""`gankit train`: build the run's config (or take a run's own, with --resume) and train."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..core.errors import GankitError, Interrupted
from .common import add_data_flags, overrides


def cmd_train(args: argparse.Namespace) -> int:
    from ..config.layering import resolve, resume_config
    from ..tasks import task_of
    from ..training.loop import train
    from ..training.rundir import load_run_config

    if (
        args.nproc is not None
        and int(os.environ.get("WORLD_SIZE", "1")) == 1
        and "TORCHELASTIC_RUN_ID" not in os.environ
    ):
        return launch(args)
    flags = {**overrides(args), **init_overrides(args)}
    if args.resume:
        if args.config:
            raise GankitError("pass either CONFIG.yaml or --resume RUN_DIR, not both (a run keeps its own config)")
        if args.out:
            raise GankitError("--out and --resume both name the run folder; drop --out")
        if any(k in flags for k in ("train.init_from", "train.init_parts", "train.freeze_d")):
            raise GankitError(
                "--init-from/--init-parts/--freeze-d start a new run; a resumed run continues from its "
                "own checkpoint (its config keeps where it started)"
            )
        cfg = resume_config(load_run_config(Path(args.resume)).to_dict(), flags, args.resume)
    else:
        cfg = resolve(file=args.config, overrides=flags)
    rank = int(os.environ.get("RANK", "0"))
    try:
        run = train(cfg, out=args.out, resume=args.resume)
    except Interrupted as e:
        if rank != 0:  # "checkpoint saved" once, from the process that saved it
            return e.exit_code
        raise
    if rank != 0:  # one report per run, from the process that wrote it
        return 0
    print(f"done: {run.step} steps ({run.epoch:.2f} epochs, stopped by {run.stopped_by}). Results in {run.dir}/")
    print(f"  samples: {run.dir}/samples/   progress: {run.dir}/progress.gif   losses: {run.dir}/losses.png")
    for line in task_of(cfg).next_steps(run.dir):
        print(f"  {line}")
    return 0


def init_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The train.init_* keys of --init-from (resolved to the checkpoint folder it names, so the run's config.yaml
    starts from the same weights when re-run), --init-parts and --freeze-d."""
    from ..training.finetune import resolve_source

    out: dict[str, object] = {}
    if args.init_from:
        out["train.init_from"] = str(resolve_source(args.init_from))
    if args.init_parts:
        out["train.init_parts"] = [p.strip() for p in args.init_parts.split(",") if p.strip()]
    if args.freeze_d is not None:
        out["train.freeze_d"] = args.freeze_d
    return out


# launcher flag -> how many values it takes (1, or 0 for a switch), dropped from what the workers get
LAUNCH_FLAGS = {"--nproc": 1, "--nnodes": 1, "--node-rank": 1, "--rdzv-endpoint": 1, "--max-restarts": 1}


def worker_args(argv: list[str]) -> list[str]:
    """The `gankit train` arguments without the launcher's own flags (``--nproc 2`` and ``--nproc=2`` forms)."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        name = a.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = 0 if "=" in a else LAUNCH_FLAGS[name]
            continue
        out.append(a)
    return out


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """``python -m torch.distributed.run ... -m gankit train ...`` for the launcher flags.

    One machine: a standalone rendezvous on a free port. Several machines: with --node-rank, a static rendezvous at
    --rdzv-endpoint HOST:PORT (machine 0 hosts it and its first process is rank 0, the one that writes); without
    it, torch's c10d rendezvous at that endpoint assigns the ranks."""
    if args.nproc < 1:
        raise GankitError(f"--nproc {args.nproc}: give the number of processes per machine (1 or more)")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(args.nproc),
        "--max-restarts",
        str(args.max_restarts),
    ]
    nnodes = args.nnodes or 1
    if nnodes == 1 and not args.rdzv_endpoint:
        cmd.append("--standalone")
    else:
        if not args.rdzv_endpoint or ":" not in args.rdzv_endpoint:
            raise GankitError(
                f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (an address of machine 0 that every "
                f"machine can reach, and a free port there)"
            )
        host, port = args.rdzv_endpoint.rsplit(":", 1)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise GankitError(f"--rdzv-endpoint {args.rdzv_endpoint}: the port must be a number in 1..65535")
        cmd += ["--nnodes", str(nnodes)]
        if args.node_rank is not None and not 0 <= args.node_rank < nnodes:
            raise GankitError(f"--node-rank {args.node_rank} is not in [0, {nnodes}) for --nnodes {nnodes}")
        if nnodes == 1 or args.node_rank == 0:  # this machine hosts the rendezvous: its port must be free here
            check_port_free(host.strip("[]"), int(port), args.rdzv_endpoint)
        if args.node_rank is not None:
            cmd += ["--node-rank", str(args.node_rank), "--master-addr", host, "--master-port", port]
        else:
            cmd += ["--rdzv-backend", "c10d", "--rdzv-endpoint", args.rdzv_endpoint, "--rdzv-id", "gankit"]
    rest = worker_args(args.argv)
    return [*cmd, "-m", "gankit", *rest]  # rest starts with "train"


def check_port_free(host: str, port: int, endpoint: str) -> None:
    """GankitError when another program listens on ``port`` here: torchrun would wait on it (c10d) or fail with a
    traceback (static). Probed by binding it, on every interface (where torch's store listens) and on ``host``; a
    host that is not an address of this machine is left for torchrun to report."""
    import errno
    import socket

    for family, addr in ((socket.AF_INET, ""), (socket.AF_INET6, "::"), (socket.AF_UNSPEC, host)):
        try:
            infos = socket.getaddrinfo(addr or None, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        except (socket.gaierror, OSError):
            continue
        for fam, kind, proto, _, sockaddr in infos[:1]:
            try:
                with socket.socket(fam, kind, proto) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to torch
                    if fam == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind(sockaddr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise GankitError(
                        f"--rdzv-endpoint {endpoint}: port {port} is in use by another program on this "
                        f"machine; choose a free port (or stop that program)"
                    ) from None
                # EADDRNOTAVAIL and the like: not an address of this machine, or no IPv6 here


def launch(args: argparse.Namespace) -> int:
    """Run torchrun for the user. Its own session, so a Ctrl-C reaches the workers once (forwarded here, then by
    torchrun), not twice (a second SIGINT means "stop now, do not save"). Exit: the workers' code, 128 + signal
    after a signal (130/143: rank 0 saved). torchrun's stderr passes through :class:`LauncherErr`, which drops
    torchrun's own traceback and shutdown notes after a signal this launcher forwarded (the workers' lines stay)."""
    torchrun_command(args)  # every launcher flag checked (and the port probed) before a run folder is named
    made: Path | None = None
    if not args.out and not args.resume:  # a restart must find the same folder: name it once, here
        from ..config.layering import resolve
        from ..training.rundir import default_run_dir

        cfg = resolve(file=args.config, overrides=overrides(args))
        made = default_run_dir(cfg.model.name, cfg.data.name)
        args.argv = [*args.argv, "--out", str(made)]
    cmd = torchrun_command(args)
    ours = getattr(sys.stderr, "buffer", None)  # (a caller that replaced sys.stderr gets torchrun's output as is)
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE if ours is not None else None)
    got: list[int] = []
    pump = threading.Thread(target=LauncherErr(ours, lambda: bool(got)).pump, args=(proc.stderr,), daemon=True)
    if ours is not None:
        pump.start()

    def forward(signum: int, frame: object) -> None:
        got.append(signum)
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = proc.wait()
        if pump.is_alive():
            pump.join()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if made is not None:
        with contextlib.suppress(OSError):
            made.rmdir()  # only if the workers left it empty (they failed before writing)
    if got:
        return 128 + got[0]
    return rc


class LauncherErr:
    """torchrun's stderr on the way to ours, as it comes (progress bars redraw live). Once ``signalled()``, lines are
    held whole and two kinds dropped: torchrun's agent notes ("Received 15 death signal", "Sending process N closing
    signal") and the traceback of its SignalException: the user sent the signal, and the workers say what it did."""

    AGENT_NOTE = re.compile(rb"^[IWEDC]\d{4} [\d:.]+ +\d+ \S*torch/distributed/elastic/")

    def __init__(self, out: BinaryIO, signalled: Callable[[], bool]) -> None:
        self.out, self.signalled = out, signalled
        self.pending = b""  # a line not complete yet (line mode)
        self.block: list[bytes] | None = None  # a traceback being held until its last line says what it is

    def pump(self, stream: BinaryIO) -> None:
        while chunk := os.read(stream.fileno(), 65536):
            self.feed(chunk)
        self.close()

    def feed(self, data: bytes) -> None:
        if not self.signalled() and not self.pending and self.block is None:
            self._write(data)
            return
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self._line(line + b"\n")

    def close(self) -> None:
        if self.pending:
            self._line(self.pending)
            self.pending = b""
        if self.block is not None:
            self._write(b"".join(self.block))
            self.block = None

    def _line(self, line: bytes) -> None:
        if self.block is not None:
            self.block.append(line)
            if line[:1] not in (b" ", b"\t", b"\n", b"\r"):  # the exception's own line ends a traceback
                block, self.block = self.block, None
                if b"SignalException" not in line:
                    self._write(b"".join(block))
            return
        if line.startswith(b"Traceback (most recent call last):"):
            self.block = [line]
        elif not self.AGENT_NOTE.match(line):
            self._write(line)

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):  # our stderr closed: nothing to tell
            self.out.write(data)
            self.out.flush()


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a model (defaults: DCGAN on the embedded digits data set)")
    t.add_argument("config", nargs="?", help="YAML config; flags below override it")
    add_data_flags(t)
    t.add_argument("--model", help="model (default dcgan; `gankit list` names them)")
    t.add_argument("--seed", type=int)
    t.add_argument("--eval-every", type=int, help="steps between FD evaluations (0 = off)")
    t.add_argument("--on-nan", choices=["stop", "rollback"])
    t.add_argument("--out", help="run folder to create (default runs/<time>-<model>-<data>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly where it stopped")
    f = t.add_argument_group("fine-tuning (a new run that starts from another run's weights)")
    f.add_argument(
        "--init-from",
        metavar="RUN",
        help="a run folder (its final, else newest checkpoint) or a "
        "checkpoint folder; weights only: optimizer and step start fresh",
    )
    f.add_argument("--init-parts", metavar="g,d,ema", help="which weights to take (default g,d,ema)")
    f.add_argument("--freeze-d", type=int, metavar="N", help="keep D's first N weight layers fixed (default 0)")
    d = t.add_argument_group("several processes (runs torchrun; `torchrun ... -m gankit train` works too)")
    d.add_argument(
        "--nproc",
        type=int,
        help="processes on this machine (one per GPU on CUDA); train.batch_size is "
        "the global batch, split between all processes",
    )
    d.add_argument("--nnodes", type=int, help="machines taking part (default 1)")
    d.add_argument("--node-rank", type=int, help="this machine's index, 0 .. nnodes-1 (machine 0 writes the run)")
    d.add_argument(
        "--rdzv-endpoint", metavar="HOST:PORT", help="where the machines meet: machine 0's address and a free port"
    )
    d.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        help="restarts of the whole group after a process fails; each resumes from the newest checkpoint",
    )
    t.set_defaults(func=cmd_train)
