"""`gankit train --nproc`: what the launcher checks before it starts torchrun, and what it lets through of torchrun's
output. In-process and without torchrun (tests/test_distributed.py starts real processes)."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from gankit.cli import main
from gankit.cli.train import LauncherErr

TINY = [
    "--steps",
    "1",
    "--set",
    "data.image_size=16",
    "--set",
    "model.g_channels=8",
    "--set",
    "model.d_channels=8",
    "--no-progress",
]


@pytest.fixture
def taken_port():
    """A port another program listens on (this test's socket)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    "nodes",
    [[], ["--nnodes", "1", "--node-rank", "0"], ["--nnodes", "2", "--node-rank", "0"]],
    ids=["c10d", "static-one-node", "static-machine-0"],
)
def test_a_rendezvous_port_in_use_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], taken_port: int, nodes: list[str]
) -> None:
    rc = main(
        [
            "train",
            "--nproc",
            "2",
            "--rdzv-endpoint",
            f"127.0.0.1:{taken_port}",
            *nodes,
            "--out",
            str(tmp_path / "r"),
            *TINY,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines() == [
        f"gankit: error: --rdzv-endpoint 127.0.0.1:{taken_port}: port {taken_port} is in use by another program on "
        f"this machine; choose a free port (or stop that program)"
    ], err
    assert not (tmp_path / "r").exists()


def test_a_default_run_folder_is_not_made_when_the_launch_is_refused(
    tmp_path: Path, taken_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--nproc", "2", "--rdzv-endpoint", f"127.0.0.1:{taken_port}", *TINY]) == 2
    assert "is in use" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_a_bad_rendezvous_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--nproc", "2", "--rdzv-endpoint", "127.0.0.1:http", *TINY]) == 2
    assert "the port must be a number in 1..65535" in capsys.readouterr().err


TORCHRUN_ON_SIGTERM = b"""\
W1204 16:25:03.796000 9302 torch/distributed/elastic/agent/server/api.py:753] Received 15 death signal, shutting down workers
W1204 16:25:03.796000 9302 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 9307 closing signal SIGTERM
gankit: SIGTERM at step 193: checkpoint saved; continue with `gankit train --resume dd`
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/torch/distributed/elastic/multiprocessing/api.py", line 86, in _terminate_process_handler
    raise SignalException(f"Process {os.getpid()} got signal: {sigval}", sigval=sigval)
torch.distributed.elastic.multiprocessing.api.SignalException: Process 9302 got signal: 15
"""


def test_after_a_signal_torchruns_own_traceback_and_notes_are_dropped() -> None:
    out, signalled = io.BytesIO(), [False]
    err = LauncherErr(out, lambda: signalled[0])
    err.feed(b"step 1\rstep 2")  # before a signal: through as it comes, half lines too (progress bars)
    assert out.getvalue() == b"step 1\rstep 2"
    signalled[0] = True
    err.feed(b"\n")
    for i in range(0, len(TORCHRUN_ON_SIGTERM), 7):  # in pieces, as a pipe delivers it
        err.feed(TORCHRUN_ON_SIGTERM[i : i + 7])
    err.close()
    assert out.getvalue() == (
        b"step 1\rstep 2\ngankit: SIGTERM at step 193: checkpoint saved; continue with `gankit train --resume dd`\n"
    )


def test_a_workers_own_traceback_is_kept_after_a_signal() -> None:
    """Only torchrun's SignalException is its own doing; any other traceback (a bug) must reach the user."""
    out = io.BytesIO()
    err = LauncherErr(out, lambda: True)
    text = (
        b'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nZeroDivisionError: division by zero\n'
    )
    err.feed(text + b'Traceback (most recent call last):\n  File "y.py"')  # the second one cut off by the exit
    err.close()
    assert out.getvalue() == text + b'Traceback (most recent call last):\n  File "y.py"'
