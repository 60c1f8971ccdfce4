"""Resume and checkpoint safety through the command line: exact resume, signals, kill -9, damaged or planted files,
and checkpoints that belong to another model or gankit version."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import gankit
from gankit.training import checkpoint
from gankit.cli import main
from gankit.config.layering import resolve

TINY = {
    "data.image_size": 16,
    "model.g_channels": 8,
    "model.d_channels": 8,
    "model.z_dim": 8,
    "train.batch_size": 16,
    "train.log_every": 2,
    "train.threads": 1,
}


def sets(overrides: dict) -> list[str]:
    """``--set key=value`` arguments; values as JSON, which the YAML reading of --set understands."""
    out: list[str] = []
    for k, v in overrides.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    return out


def cli(*args: str) -> int:
    """`gankit train ARGS --no-progress` in this process; the exit code."""
    return main(["train", *args, "--no-progress"])


def rows_after(run: Path, step: int) -> list[dict]:
    """metrics.jsonl rows past ``step``, without the wall-clock fields."""
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = {k: v for k, v in json.loads(line).items() if k not in ("time", "images_per_s")}
        if row["step"] > step:
            out.append(row)
    return out


def tensors_of(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.name: load_file(str(p)) for p in sorted(folder.glob("*.safetensors"))}


def assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = tensors_of(a), tensors_of(b)
    assert ta.keys() == tb.keys() and ta
    for f in ta:
        assert ta[f].keys() == tb[f].keys(), f
        for k in ta[f]:
            assert torch.equal(ta[f][k], tb[f][k]), (f, k)


def write_fake_mnist(folder: Path, n: int = 64) -> Path:
    """A tiny MNIST-shaped train split as raw IDX files (reads in milliseconds, no scikit-learn import)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def idx(arr: np.ndarray) -> bytes:
        return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(">u1").tobytes()

    (folder / "train-images-idx3-ubyte").write_bytes(idx(rng.integers(0, 256, (n, 28, 28))))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx(rng.integers(0, 10, (n,))))
    return folder


# ---------------------------------------------------------------------------------------------------------------------
# exact resume, through the CLI

PIX2PIX = {
    "model.name": "pix2pix",
    "data.image_size": 32,
    "data.limit": 12,
    "model.g_channels": 8,
    "model.d_channels": 8,
    "train.batch_size": 4,
    "train.log_every": 2,
    "train.threads": 1,
}
CASES = {
    "dcgan": {**TINY, "data.limit": 64},
    "wgan-gp-ncritic3": {
        **TINY,
        "data.limit": 64,
        "loss.name": "wgan-gp",
        "train.d_steps": 3,
        "model.d_batchnorm": False,
    },
    "pix2pix": PIX2PIX,
}


def test_pix2pix_case_trains_on_the_embedded_sketch_data() -> None:
    cfg = resolve(overrides=PIX2PIX)
    assert cfg.data.name == "sketch" and cfg.model.name == "pix2pix"


@pytest.mark.parametrize("case", list(CASES))
def test_cli_resume_is_bit_exact(tmp_path: Path, case: str) -> None:
    n = 4
    args = sets({**CASES[case], "train.sample_every": 2})
    assert cli("--steps", str(2 * n), "--out", str(tmp_path / "straight"), *args) == 0
    assert cli("--steps", str(n), "--out", str(tmp_path / "half"), *args) == 0
    assert cli("--resume", str(tmp_path / "half"), "--steps", str(2 * n)) == 0
    straight, resumed = tmp_path / "straight", tmp_path / "half"
    # Weights, EMA and optimizer moments (and the `best` checkpoint where the recipe keeps one)
    assert_same_tensors(straight / "checkpoints" / "final", resumed / "checkpoints" / "final")
    if case == "pix2pix":
        assert_same_tensors(straight / "checkpoints" / "best", resumed / "checkpoints" / "best")
    # Losses (and pix2pix's validation scores) logged after the resume point
    after = rows_after(straight, n)
    assert after and after == rows_after(resumed, n)
    # The sample grids drawn after the resume point, byte for byte
    late = [
        f"step-{s:07d}.png" for s in range(n + 1, 2 * n + 1) if (straight / "samples" / f"step-{s:07d}.png").exists()
    ]
    assert late
    for name in late:
        assert (straight / "samples" / name).read_bytes() == (resumed / "samples" / name).read_bytes(), name
    if case != "pix2pix":  # `gankit sample` is for noise-to-image models
        for run in (straight, resumed):
            assert main(["sample", str(run), "--n", "8", "--seed", "3", "--out", str(run / "s.npy")]) == 0
        assert (straight / "s.npy").read_bytes() == (resumed / "s.npy").read_bytes()


# ---------------------------------------------------------------------------------------------------------------------
# SIGINT / SIGTERM in a real `python -m gankit train` process


def metric_rows(run: Path) -> int:
    try:
        return len((run / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_a_checkpoint_and_resume_finishes(tmp_path: Path, sig: int, code: int) -> None:
    data, run = write_fake_mnist(tmp_path / "mnist"), tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "gankit",
        "train",
        "--data",
        "mnist",
        "--data-dir",
        str(data),
        "--out",
        str(run),
        "--steps",
        "100000",
        "--no-progress",
        *sets({**TINY, "train.log_every": 1}),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while metric_rows(run) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    m = re.fullmatch(
        rf"gankit: {signal.Signals(sig).name} at step (\d+): checkpoint saved; continue with "
        rf"`gankit train --resume .*`",
        lines[0],
    )
    assert m, lines[0]
    step = int(m[1])
    ck = checkpoint.load_latest(run / "checkpoints")
    last_logged = max(json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines())
    assert ck.step == step == last_logged
    # An interrupted run keeps its pictures up to the stop
    assert (run / "progress.gif").exists() and (run / "losses.png").exists()
    assert (run / "samples" / f"step-{step:07d}.png").exists()
    assert main(["train", "--resume", str(run), "--steps", str(step + 3)]) == 0
    assert json.loads((run / "summary.json").read_text())["step"] == step + 3


def test_a_signal_during_set_up_is_kept_and_the_run_stops_at_its_first_step(tmp_path: Path, monkeypatch) -> None:
    """train() catches stop signals from its first line, not only in the loop: a SIGTERM that lands during set-up
    (under torchrun: on one rank earlier than on the other) saves and stops, instead of killing the process."""
    import gankit.training.loop as loop
    from gankit.core.errors import Interrupted
    from gankit.training.parts import StopFlag

    real = loop.set_up

    def set_up_with_a_signal(*args, **kwargs):
        handler = signal.getsignal(signal.SIGTERM)
        # Checked before the signal is sent: without a StopFlag here the SIGTERM would end the test process itself.
        assert isinstance(getattr(handler, "__self__", None), StopFlag), handler
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the Python handler runs at the next bytecode boundary of the main thread
            if handler.__self__.signum is not None:
                break
            time.sleep(0.001)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "set_up", set_up_with_a_signal)
    before = signal.getsignal(signal.SIGTERM)
    from gankit.data.base import ImageData

    toy = ImageData(torch.randint(0, 256, (32, 1, 16, 16), dtype=torch.uint8), torch.full((32,), -1), "toy")
    with pytest.raises(Interrupted) as stopped:
        loop.train(
            resolve(overrides={**TINY, "train.steps": 50, "train.progress": False}), out=str(tmp_path / "run"), data=toy
        )
    assert stopped.value.exit_code == 143 and "at step 0" in str(stopped.value)
    assert checkpoint.load_latest(tmp_path / "run" / "checkpoints").step == 0
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back


# ---------------------------------------------------------------------------------------------------------------------
# kill -9 at random moments


def _cli_child(argv: list[str], stderr_path: str) -> None:
    """A training process for the kill loop: the CLI with its stderr in a file, exiting with the CLI's code."""
    import threading

    from tqdm import tqdm

    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 2)
    # tqdm's default lock is a named multiprocessing semaphore that a killed process can never release; a thread lock
    # keeps the 20 kills from leaving 20 of them behind.
    tqdm.set_lock(threading.RLock())
    sys.exit(main(argv))


def _wait(cond, proc, timeout: float = 30.0) -> bool:
    """Poll ``cond`` until it holds; False if the process ended first or time ran out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if not proc.is_alive():
            return False
        time.sleep(0.002)
    return False


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


KILLS = 20


@pytest.fixture
def forkserver() -> Iterator[multiprocessing.context.BaseContext]:
    """A multiprocessing context whose fork server has imported torch and gankit once, so each training process
    starts in a fraction of a second instead of the ~3 s a fresh interpreter needs for those imports."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["gankit.cli", "gankit.training.loop", "gankit.tasks", "torch._dynamo", __name__])
    yield ctx
    stop = getattr(multiprocessing.forkserver._forkserver, "_stop", None)  # the server this test started
    if stop is not None:
        stop()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_at_random_moments_then_resume(tmp_path: Path, forkserver: multiprocessing.context.BaseContext) -> None:
    """SIGKILL a training process 20 times (during start-up, steps and checkpoint writes); after each kill the newest
    checkpoint must verify and load, and the next `--resume` must train on. At the end the weights must equal an
    uninterrupted run's. The count goes to kill9.json in the test's tmp folder and to stdout (`pytest -s`)."""
    rng = random.Random(2024)
    data, run = write_fake_mnist(tmp_path / "mnist"), tmp_path / "run"
    ckdir, latest, errlog = run / "checkpoints", run / "checkpoints" / "latest", tmp_path / "stderr.txt"
    settings = {
        **TINY,
        "train.checkpoint_every": 1,
        "train.keep_last": 2,
        "train.log_every": 1,
        "train.sample_every": 4,
    }
    first = [
        "train",
        "--data",
        "mnist",
        "--data-dir",
        str(data),
        "--out",
        str(run),
        "--steps",
        "100000",
        "--no-progress",
        *sets(settings),
    ]
    report = {"kills": 0, "ok": 0, "during_checkpoint_write": 0, "failures": []}
    for i in range(KILLS):
        argv = first if i == 0 else ["train", "--resume", str(run), "--no-progress"]
        before = _mtime(latest)
        proc = forkserver.Process(target=_cli_child, args=(argv, str(errlog)))
        proc.start()
        mode = ["start-up", "checkpoint write", "anywhere", "anywhere"][i % 4]
        if mode == "start-up" and i > 0:  # during data loading, model building, resume verification
            ready = _wait(lambda: False, proc, rng.uniform(0.0, 0.4)) or proc.is_alive()
        elif mode == "checkpoint write":  # a temp folder exists only while save() writes
            ready = _wait(lambda: _mtime(latest) != before, proc) and _wait(
                lambda: any(p.name.startswith(".tmp-") for p in ckdir.iterdir()), proc
            )
            time.sleep(rng.uniform(0.0, 0.002))
        else:  # after this process has saved at least once
            ready = _wait(lambda: _mtime(latest) != before, proc)
            time.sleep(rng.uniform(0.0, 0.5))
        mid_write = False
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            mid_write = ckdir.is_dir() and any(p.name.startswith((".tmp-", ".old-")) for p in ckdir.iterdir())
        proc.join()
        report["kills"] += 1
        report["during_checkpoint_write"] += mid_write
        problem = None
        if not ready or proc.exitcode != -signal.SIGKILL:
            problem = f"kill {i} ({mode}): process ended by itself with {proc.exitcode}: {errlog.read_text()[-300:]}"
        else:
            warnings: list[str] = []
            try:
                ck = checkpoint.load_latest(ckdir, say=warnings.append)
                g = gankit.load(str(run))
                assert g.step == ck.step and g.sample(2, seed=0).isfinite().all()
                assert not warnings, warnings  # a kill must never leave a damaged checkpoint in `latest`'s place
            except Exception as e:  # noqa: BLE001 - recorded and asserted below
                problem = f"kill {i} ({mode}): {type(e).__name__}: {e}"
        if problem:
            report["failures"].append(problem)
        else:
            report["ok"] += 1
    # The last resume runs to a budget and finishes; its weights equal a run that was never interrupted.
    last = checkpoint.load_latest(ckdir).step
    assert main(["train", "--resume", str(run), "--steps", str(last + 2), "--no-progress"]) == 0
    assert (
        main(
            [
                "train",
                "--data",
                "mnist",
                "--data-dir",
                str(data),
                "--out",
                str(tmp_path / "straight"),
                "--steps",
                str(last + 2),
                "--no-progress",
                *sets(settings),
            ]
        )
        == 0
    )
    assert_same_tensors(ckdir / "final", tmp_path / "straight" / "checkpoints" / "final")
    assert not [p for p in ckdir.iterdir() if p.name.startswith(".")]  # killed saves were cleaned up
    report.update(final_step=last + 2, bit_exact_after_kills=True)
    (tmp_path / "kill9.json").write_text(json.dumps(report, indent=2))
    print(
        f"\nkill -9 loop: {report['ok']}/{report['kills']} kills recovered "
        f"({report['during_checkpoint_write']} during a checkpoint write); final step {last + 2}, bit-exact"
    )
    assert report["ok"] == KILLS, report["failures"]


# ---------------------------------------------------------------------------------------------------------------------
# damaged, planted and foreign checkpoints


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 6-step run with checkpoints step-0000002, -4, -6 and final (latest -> final)."""
    root = tmp_path_factory.mktemp("base")
    run = root / "run"
    assert (
        main(
            [
                "train",
                "--steps",
                "6",
                "--out",
                str(run),
                "--no-progress",
                *sets({**TINY, "data.limit": 64, "train.checkpoint_every": 2, "train.keep_last": 3}),
            ]
        )
        == 0
    )
    return run


@pytest.fixture
def run_copy(base_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(base_run, dst)
    return dst


def flip_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines and lines[-1].startswith("gankit: error: "), err
    return lines[-1]


@pytest.mark.parametrize("newest, previous", [("final", "step-0000006"), ("step-0000006", "step-0000004")])
def test_damaged_newest_checkpoint_falls_back(
    run_copy: Path, capsys: pytest.CaptureFixture[str], newest: str, previous: str
) -> None:
    ckdir = run_copy / "checkpoints"
    assert checkpoint.latest_name(ckdir) == "final"
    if newest != "final":  # as if killed before the end of the run: `latest` names the newest numbered checkpoint
        shutil.rmtree(ckdir / "final")
        (ckdir / "latest").write_text(newest + "\n")
    flip_byte(ckdir / newest / "g.safetensors")
    assert main(["train", "--resume", str(run_copy), "--steps", "8"]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"warning: checkpoint \S*{newest}: g\.safetensors is damaged", err), err
    assert f"from {previous} (step {previous[-1]}" in err
    assert json.loads((run_copy / "summary.json").read_text())["step"] == 8


def test_every_checkpoint_damaged_is_one_error(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_before = (run_copy / "config.yaml").read_bytes()
    for f in (run_copy / "checkpoints").glob("*/g.safetensors"):
        flip_byte(f)
    assert main(["train", "--resume", str(run_copy), "--steps", "8"]) == 2
    line = error_line(capsys.readouterr().err)
    assert "no readable checkpoint" in line and "g.safetensors is damaged" in line
    assert (run_copy / "config.yaml").read_bytes() == config_before
    assert main(["sample", str(run_copy), "--n", "4", "--out", str(run_copy / "x.png")]) == 2
    assert not (run_copy / "x.png").exists()


class _Payload:
    """Unpickling this creates ``marker``: proof that a loader ran code it was handed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_planted_pickles_are_refused_without_running(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()  # the payload is live: any pickle-based loader would create the marker
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"g": _Payload(marker)})
    # An attacker who also rewrites state.json, so the hashes match the planted file
    for folder in (run_copy / "checkpoints").iterdir():
        if folder.is_dir():
            (folder / "g.safetensors").write_bytes(payload)
            state = json.loads((folder / "state.json").read_text())
            state["files"]["g.safetensors"] = {
                "size": len(payload),
                "sha256": checkpoint.sha256_file(folder / "g.safetensors"),
            }
            (folder / "state.json").write_text(json.dumps(state))
    torch.save(_Payload(marker), run_copy / "model.pt")  # and a torch pickle where other tools look for weights
    (run_copy / "model.pth").write_bytes((run_copy / "model.pt").read_bytes())
    with pytest.raises(gankit.GankitError, match="cannot be read as safetensors"):
        checkpoint.read(run_copy / "checkpoints" / "final")
    assert main(["train", "--resume", str(run_copy), "--steps", "8"]) == 2
    assert "cannot be read as safetensors" in error_line(capsys.readouterr().err)
    assert main(["sample", str(run_copy), "--n", "4", "--out", str(tmp_path / "x.png")]) == 2
    capsys.readouterr()
    # A folder holding only a pickled model is not a run; nothing in it is opened
    only = tmp_path / "only_pickle"
    only.mkdir()
    shutil.copy(run_copy / "model.pt", only / "model.pt")
    for args in (
        ["sample", str(only), "--out", str(tmp_path / "y.png")],
        ["sample", str(only / "model.pt"), "--out", str(tmp_path / "y.png")],
        ["train", "--resume", str(only)],
    ):
        assert main(args) == 2
        assert "not a gankit run folder" in error_line(capsys.readouterr().err)
    assert not marker.exists()


def test_no_code_executing_loaders_in_the_package() -> None:
    """Loading never unpickles: no pickle.load(s), torch.load only with weights_only=True, no unsafe YAML or numpy
    pickles. (The CIFAR reader's Unpickler subclass allows only numpy's array globals; tests/test_data_readers.py
    shows it refusing everything else.)"""
    forbidden = [
        r"\bpickle\.loads?\(",
        r"\bpickle\.Unpickler\(",
        r"\bcPickle\b",
        r"\bdill\b",
        r"\bjoblib\.load\(",
        r"\bmarshal\.loads?\(",
        r"\byaml\.(load|unsafe_load|full_load)\(",
        r"allow_pickle\s*=\s*True",
        r"\bweights_only\s*=\s*False",
    ]
    src = Path(gankit.__file__).parent
    found = []
    for f in sorted(src.rglob("*.py")):
        text = f.read_text()
        for pat in forbidden:
            found += [f"{f.relative_to(src)}: {m.group(0)}" for m in re.finditer(pat, text)]
        for m in re.finditer(r"\btorch\.load\(", text):
            call = text[m.end() : m.end() + 300].split("\n\n")[0]
            if "weights_only=True" not in call:
                found.append(f"{f.relative_to(src)}: torch.load without weights_only=True")
    assert not found, found


def test_resume_into_a_different_model_names_both(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model key given with --resume is refused by name before anything loads (see RESUME_MAY_CHANGE); one edited
    into config.yaml by hand gets as far as the weights, whose error names both models."""
    from gankit.config.schema import Config, dump_yaml, read_yaml

    config_before = (run_copy / "config.yaml").read_bytes()
    for key, value, needle in [
        ("model.z_dim", 16, "model.z_dim 8 vs 16"),
        ("model.g_channels", 16, "model.g_channels 8 vs 16"),
    ]:
        assert main(["train", "--resume", str(run_copy), "--steps", "8", "--set", f"{key}={value}"]) == 2
        err = capsys.readouterr().err
        line = error_line(err)
        assert len(err.strip().splitlines()) == 1
        assert f"{key}: 8 -> 16 would change what its checkpoints mean" in line, line
        assert (run_copy / "config.yaml").read_bytes() == config_before
        edited = Config.from_dict(read_yaml(run_copy / "config.yaml")).replace(**{key: value})
        (run_copy / "config.yaml").write_text(dump_yaml(edited))
        assert main(["train", "--resume", str(run_copy), "--steps", "8"]) == 2
        line = error_line(capsys.readouterr().err)
        assert "holds a different g" in line and needle in line and "(checkpoint vs this config)" in line, line
        (run_copy / "config.yaml").write_bytes(config_before)


def test_unknown_checkpoint_format_names_both_versions(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for sj in (run_copy / "checkpoints").glob("*/state.json"):
        state = json.loads(sj.read_text())
        state.update(format=99, gankit_version="9.9.9")
        sj.write_text(json.dumps(state))
    assert main(["train", "--resume", str(run_copy), "--steps", "8"]) == 2
    line = error_line(capsys.readouterr().err)
    assert "format 99" in line and "gankit 9.9.9" in line and f"gankit {gankit.__version__} reads format 1" in line
    with pytest.raises(gankit.GankitError, match="format 99"):
        gankit.load(str(run_copy))


def test_damaged_state_json_is_a_user_error(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for sj in (run_copy / "checkpoints").glob("*/state.json"):
        state = json.loads(sj.read_text())
        del state["rng"]
        sj.write_text(json.dumps(state))
    assert main(["train", "--resume", str(run_copy), "--steps", "8"]) == 2
    assert "state.json is damaged or incomplete" in error_line(capsys.readouterr().err)
    sj = run_copy / "checkpoints" / "final" / "state.json"
    state = json.loads(sj.read_text())
    state["files"] = {"../../config.yaml": {"size": 1, "sha256": "0"}}  # must not reach outside the folder
    sj.write_text(json.dumps(state))
    with pytest.raises(gankit.GankitError, match="lists '../../config.yaml'"):
        checkpoint.verify(sj.parent)


# ---------------------------------------------------------------------------------------------------------------------
# the checkpoint folder's own housekeeping


def _save(ckdir: Path, name: str, step: int, move_latest: bool = True) -> Path:
    return checkpoint.save(
        ckdir, name, {"g": {"w": torch.full((3,), float(step))}}, {"step": step, "config": {}}, move_latest=move_latest
    )


def test_kill_between_the_two_renames_is_recovered(tmp_path: Path, run_copy: Path) -> None:
    # save() of an existing name moves the old copy to .old-<name>-<pid> before renaming the new one in; a kill
    # between the two leaves no `final`, a complete .old-final-* and a (possibly complete) .tmp-final-*.
    ckdir = run_copy / "checkpoints"
    os.replace(ckdir / "final", ckdir / ".old-final-99999")
    shutil.copytree(ckdir / "step-0000006", ckdir / ".tmp-final-99999")
    (ckdir / ".latest.99999.k1ll3d.part").write_text("step-0000006\n")
    assert checkpoint.candidates(ckdir)[0] == ckdir / ".old-final-99999"
    assert checkpoint.load_latest(ckdir).step == 6 and gankit.load(str(run_copy)).step == 6
    assert main(["train", "--resume", str(run_copy), "--steps", "8", "--no-progress"]) == 0
    names = {p.name for p in ckdir.iterdir()}
    assert "final" in names and not [n for n in names if n.startswith(".")], names
    assert checkpoint.load_latest(ckdir).step == 8


def test_prune_keeps_what_latest_names(tmp_path: Path) -> None:
    ckdir = tmp_path / "checkpoints"
    # A stale higher-numbered checkpoint (saved before a crash, never named by `latest`) and a resumed timeline
    _save(ckdir, "step-0000010", 10, move_latest=False)
    _save(ckdir, "step-0000005", 5)
    checkpoint.prune(ckdir, keep_last=1)
    assert (ckdir / "step-0000005").is_dir() and checkpoint.latest_name(ckdir) == "step-0000005"
    assert checkpoint.load_latest(ckdir).step == 5
    # A damaged copy moved aside next to an intact one is dropped, temp folders of dead processes too
    (ckdir / ".old-step-0000005-4242").mkdir()
    (ckdir / ".tmp-step-0000006-4242").mkdir()
    checkpoint.prune(ckdir, keep_last=1)
    assert sorted(p.name for p in ckdir.iterdir()) == ["latest", "step-0000005", "step-0000010"]


def test_failed_checkpoint_write_leaves_the_old_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckdir = tmp_path / "checkpoints"
    _save(ckdir, "step-0000001", 1)

    def full_disk(path: Path, data: bytes) -> None:
        path.write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_file", full_disk)
    with pytest.raises(gankit.GankitError, match=r"step-0000002/g\.safetensors: No space left on device \(disk full"):
        _save(ckdir, "step-0000002", 2)
    assert sorted(p.name for p in ckdir.iterdir()) == ["latest", "step-0000001"]
    assert checkpoint.load_latest(ckdir).step == 1


def test_nan_weights_are_never_saved(tmp_path: Path) -> None:
    ckdir = tmp_path / "checkpoints"
    _save(ckdir, "step-0000001", 1)
    with pytest.raises(gankit.GankitError, match="'w' holds NaN or Inf"):
        checkpoint.save(
            ckdir, "step-0000002", {"g": {"w": torch.tensor([1.0, float("nan")])}}, {"step": 2, "config": {}}
        )
    assert checkpoint.load_latest(ckdir).step == 1 and not (ckdir / "step-0000002").exists()


@pytest.mark.parametrize("on_nan", ["stop", "rollback"])
def test_nan_weights_with_finite_losses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, on_nan: str
) -> None:
    """A step whose loss is finite but which leaves NaN in the weights must not become a checkpoint."""
    from gankit.tasks.gan import GANTask as GANRecipe

    original, calls = GANRecipe.step, [0]

    def poisoned(self: GANRecipe, batcher: object, t: float) -> dict:
        out = original(self, batcher, t)
        calls[0] += 1
        if calls[0] == 3:
            with torch.no_grad():
                next(self.g.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(GANRecipe, "step", poisoned)
    run = tmp_path / "run"
    rc = main(
        [
            "train",
            "--steps",
            "5",
            "--out",
            str(run),
            "--on-nan",
            on_nan,
            "--no-progress",
            *sets({**TINY, "data.limit": 64, "train.checkpoint_every": 3, "train.nan_max_rollbacks": 1}),
        ]
    )
    err = capsys.readouterr().err
    if on_nan == "stop":
        assert rc == 3 and "diverged at step 3: weights/g hold NaN or Inf" in error_line(err)
        assert checkpoint.latest_name(run / "checkpoints") == "step-0000000"
        assert not (run / "checkpoints" / "step-0000003").exists()
    else:
        assert rc == 0 and "weights/g hold NaN or Inf at step 3; rolled back to step 0" in err
        assert checkpoint.load_latest(run / "checkpoints").step == 5


def test_torn_metrics_rows_are_dropped_on_resume(run_copy: Path) -> None:
    # What a kill -9 leaves: rows past the checkpoint that will be redone, and a line cut in the middle
    ckdir = run_copy / "checkpoints"
    shutil.rmtree(ckdir / "final")
    (ckdir / "latest").write_text("step-0000004\n")
    with open(run_copy / "metrics.jsonl", "a") as f:
        f.write('{"time": 1, "step": 7, "loss/d"')
    assert main(["train", "--resume", str(run_copy), "--steps", "6", "--no-progress"]) == 0
    steps = [json.loads(x)["step"] for x in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 6 and steps.count(6) == 1


def test_max_minutes_stops_on_time_and_shows_time_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--max-minutes", "0.01", "--out", str(run), *sets({**TINY, "data.limit": 64})]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_by"] == "time" and summary["step"] > 0
    assert checkpoint.load_latest(run / "checkpoints").step == summary["step"]
    assert "left=" in capsys.readouterr().err  # the progress bar's countdown


# ---------------------------------------------------------------------------------------------------------------------
# loading while a training run prunes, and saying which checkpoint stands in for a damaged one (issue #31)


def test_a_checkpoint_pruned_while_being_read_is_not_an_error(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """gankit.load() during training with keep_last=1: between listing and reading, a save of step 8 prunes step 6
    (the race of #31, made to happen every time). The loader lists again and reads step 8: no FileNotFoundError, no
    fallback to an older step, and no warning (nothing is damaged)."""
    ckdir = run_copy / "checkpoints"
    shutil.rmtree(ckdir / "final")
    (ckdir / "latest").write_text("step-0000006\n")
    real = checkpoint.sha256_file

    def prune_while_reading(path):  # the training run's save + prune, at the worst moment
        if Path(path).parent.name == "step-0000006" and not (ckdir / "step-0000008").exists():
            shutil.copytree(ckdir / "step-0000006", ckdir / "step-0000008")
            state = json.loads((ckdir / "step-0000008" / "state.json").read_text())
            (ckdir / "step-0000008" / "state.json").write_text(json.dumps({**state, "step": 8}))
            (ckdir / "latest").write_text("step-0000008\n")
            shutil.rmtree(ckdir / "step-0000006")
        return real(path)

    monkeypatch.setattr(checkpoint, "sha256_file", prune_while_reading)
    gen = gankit.load(str(run_copy))
    assert gen.step == 8 and gen.sample(2, seed=0).shape == (2, 1, 16, 16)
    assert capsys.readouterr().err == ""
    # the same when the named checkpoint itself is renewed while it is read (`best` moves aside for a moment)
    (ckdir / "best").mkdir()
    for f in (ckdir / "step-0000004").iterdir():
        shutil.copy(f, ckdir / "best" / f.name)

    def renew_best(path):
        if Path(path).parent.name == "best" and not (ckdir / ".renewed").exists():
            (ckdir / ".renewed").touch()
            os.replace(ckdir / "best", ckdir / ".gone")
            shutil.copytree(ckdir / "step-0000008", ckdir / "best")
        return real(path)

    monkeypatch.setattr(checkpoint, "sha256_file", renew_best)
    assert gankit.load(str(run_copy), "best").step == 8


def test_a_damaged_newest_checkpoint_is_named_when_sampling(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`final` is a copy, not hard links: a damaged last numbered checkpoint leaves `final` whole (and the other way
    round). When every newer one is damaged, sample says which checkpoint it used and why."""
    ckdir = run_copy / "checkpoints"
    for f in (ckdir / "final").iterdir():
        assert f.stat().st_ino != (ckdir / "step-0000006" / f.name).stat().st_ino, f.name
    flip_byte(ckdir / "step-0000006" / "g.safetensors")
    assert checkpoint.read(ckdir / "final").step == 6  # untouched by the damage to its twin
    assert main(["sample", str(run_copy), "--n", "4", "--out", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr()
    assert "(step 6)" in out.out and out.err == ""  # `latest` is final, which is whole: nothing to say
    flip_byte(ckdir / "final" / "g.safetensors")
    flip_byte(ckdir / "step-0000004" / "d.safetensors")
    assert main(["sample", str(run_copy), "--n", "4", "--out", str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr()
    assert "(step 2)" in out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 4 and "Traceback" not in out.err, out.err
    assert re.search(r"^gankit: warning: checkpoint \S*final: g\.safetensors is damaged", lines[0]), lines
    assert lines[-1] == (
        f"gankit: warning: using checkpoint step-0000002 (step 2) of {ckdir}: the 3 tried before it are damaged"
    )
    gankit.load(str(run_copy))  # the Python API says the same on stderr
    assert capsys.readouterr().err.strip().splitlines()[-1] == lines[-1]


def test_step_0_standing_in_is_called_untrained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckdir = tmp_path / "checkpoints"
    _save(ckdir, "step-0000000", 0)
    bad = _save(ckdir, "step-0000005", 5)
    flip_byte(bad / "g.safetensors", 10)
    said: list[str] = []
    assert checkpoint.load_latest(ckdir, say=said.append).step == 0
    assert (
        said[-1]
        == f"warning: using checkpoint step-0000000 (step 0 - an untrained model) of {ckdir}: the 1 tried before it are damaged"
    )
