"""Multi-process training on CPU with gloo: two processes x one thread, launched by torchrun as users launch it.

Every test starts real processes (torchrun -> `-m gankit train`), so the file is marked slow; the runs are tiny
(16x16 digits, 8 channels) so that the whole file stays well under a minute and a half on two busy cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gankit
from gankit.config.layering import resolve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# No BatchNorm: with it each process normalises over its own shard, which one process cannot reproduce (on CUDA
# train.sync_bn=true fixes that). Without it, 2 processes must compute what 1 process computes.
TINY = {
    "data.limit": 128,
    "data.image_size": 16,
    "model.g_channels": 8,
    "model.d_channels": 8,
    "model.z_dim": 8,
    "train.batch_size": 15,
    "train.log_every": 2,
    "train.threads": 1,
    "train.progress": False,
    "model.g_batchnorm": False,
    "model.d_batchnorm": False,
}
# 15 does not divide by 2: rank 0 takes 8 images, rank 1 takes 7, and the loss weights 8/15 and 7/15 must be right.


def _flags(over: dict) -> list[str]:
    return [a for k, v in over.items() for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, bool) else v}")]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*launch: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "gankit", "train"]


def _weights(run: Path, which: str = "final") -> dict[str, torch.Tensor]:
    return {
        f"{m}.{k}": v
        for m in ("g", "d")
        for k, v in load_file(str(run / "checkpoints" / which / f"{m}.safetensors")).items()
    }


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _one_process(out: Path, steps: int) -> Path:
    cfg = resolve(overrides={**TINY, "train.steps": steps})
    return gankit.train(cfg, out=str(out)).dir


# The all-reduce adds the two ranks' weighted gradients in another order than one process sums its batch, so the
# results differ in the last bits (float32 eps ~1.2e-7 relative); Adam divides by sqrt(v) and can amplify such
# differences a little over steps. Weights here are O(0.1): 1e-6 absolute is ~100x the observed difference (~1e-8)
# and far below the change one step makes (~lr = 2e-4), so a wrong weighting or shard fails it.
TOL = 1e-6


def test_two_processes_equal_one_and_resume_on_one(tmp_path):
    """2 processes == 1 process with the same global batch after 6 steps; that run resumed on 1 process to 10 steps
    == 1 process for 10 steps; only one set of files is written."""
    two = tmp_path / "two"
    r = subprocess.run(
        [*_torchrun("--standalone", "--nproc-per-node", "2"), "--steps", "6", "--out", str(two), *_flags(TINY)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("done: 6 steps") == 1  # rank 1 reports nothing
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "loss/d" in row] == [1, 2, 4, 6]  # one writer: no duplicated rows
    one = _one_process(tmp_path / "one", 6)
    assert _max_diff(_weights(one), _weights(two)) < TOL
    one_rows = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    assert abs(one_rows[-1]["loss/d"] - rows[-1]["loss/d"]) < 1e-5  # the logged loss is the global batch's

    # resume 2 -> 1: the checkpoint says world_size 2; the global batch and the data position carry over
    cfg = resolve(overrides={**TINY, "train.steps": 10})
    gankit.train(cfg, resume=str(two))
    straight = _one_process(tmp_path / "straight", 10)
    assert _max_diff(_weights(straight), _weights(two)) < TOL


def test_accumulation_on_two_processes_equals_one_big_batch(tmp_path):
    """train.accumulate=3 on 2 processes (shards of 8 and 7 images, each cut into 3 micro-batches) gives the update of
    one process with the whole batch of 15 at once."""
    two = tmp_path / "two"
    _train2("--steps", "4", "--out", str(two), *_flags({**TINY, "train.accumulate": 3}))
    one = _one_process(tmp_path / "one", 4)
    assert _max_diff(_weights(one), _weights(two)) < TOL


def _train2(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [*_torchrun("--standalone", "--nproc-per-node", "2"), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def _aug_p(run: Path) -> list[float]:
    return [json.loads(line)["aug/p"] for line in (run / "metrics.jsonl").read_text().splitlines() if "aug/p" in line]


def test_ada_on_two_processes_equals_one_and_resumes_exactly(tmp_path):
    """train.augment=ada on 2 processes: the summed statistic moves p identically on both ranks (the checkpoint
    consistency check compares every tensor, and a p that differed would make D's weights differ), p moves and
    equals one process's p at every logged step, the weights match one process's, and resume 2 -> 2 is exact."""
    ada = {**TINY, "train.augment": "ada", "train.ada_target": 0.1, "train.ada_kimg": 0.2, "train.checkpoint_every": 4}
    straight, part = tmp_path / "straight", tmp_path / "part"
    _train2("--steps", "8", "--out", str(straight), *_flags(ada))
    one = gankit.train(resolve(overrides={**ada, "train.steps": 8}), out=str(tmp_path / "one")).dir
    assert _aug_p(straight) == _aug_p(one) and _aug_p(straight)[-1] > 0, (_aug_p(straight), _aug_p(one))
    assert _max_diff(_weights(one), _weights(straight)) < TOL
    _train2("--steps", "6", "--out", str(part), *_flags(ada))
    _train2("--resume", str(part), "--steps", "8")
    assert _max_diff(_weights(straight), _weights(part)) == 0.0
    assert _aug_p(part) == _aug_p(straight)


def test_conditional_batchnorm_ema_recipe_on_two_processes(tmp_path):
    """What `gankit train --data mnist` trains (conditional, BatchNorm, an EMA of G with standing statistics) runs on
    two processes: rank 0's step-0 preview settles the EMA, and the other rank must hold the same tensors when the
    consistency check compares them."""
    cond = {
        **TINY,
        "model.g_batchnorm": True,
        "model.d_batchnorm": True,
        "model.num_classes": 10,
        "model.g_class_norm": True,
        "train.ema_half_life": 1,
        "train.checkpoint_every": 4,
    }
    run = tmp_path / "cond"
    _train2("--steps", "4", "--out", str(run), *_flags(cond))
    ema = load_file(str(run / "checkpoints" / "final" / "ema.safetensors"))
    assert any("running_mean" in k for k in ema) and all(bool(v.isfinite().all()) for v in ema.values())


# CycleGAN (instance norm: per image, so 2 processes must compute what 1 does); batch 3 splits 2 + 1, and a pool of 4
# fills after two steps, so its swaps (drawn for the whole global batch, the same on both ranks) are exercised.
CYCLE = {
    "model.name": "cyclegan",
    "data.image_size": 16,
    "data.limit": 24,
    "model.g_channels": 4,
    "model.d_channels": 4,
    "model.g_blocks": 1,
    "model.patch": 16,
    "model.pool_size": 4,
    "train.batch_size": 3,
    "train.threads": 1,
    "train.progress": False,
    "train.log_every": 2,
}


def test_cyclegan_on_two_processes_equals_one(tmp_path):
    two = tmp_path / "two"
    _train2("--steps", "4", "--out", str(two), *_flags(CYCLE))
    one = gankit.train(resolve(overrides={**CYCLE, "train.steps": 4}), out=str(tmp_path / "one")).dir
    w1, w2 = _weights(one), _weights(two)
    # A conv bias right before InstanceNorm has no effect on the output (the norm removes any per-channel constant),
    # so its gradient is rounding noise, which Adam turns into steps of up to lr each way: those biases may differ
    # by 2 x steps x lr between one and two processes. Every other tensor follows the same numbers.
    biases = [k for k in w1 if k.endswith("bias")]
    assert _max_diff({k: w1[k] for k in w1 if k not in biases}, {k: w2[k] for k in w2 if k not in biases}) < 1e-5
    assert _max_diff({k: w1[k] for k in biases}, {k: w2[k] for k in biases}) <= 2 * 4 * 2e-4
    pools = [load_file(str(r / "checkpoints" / "final" / "pool.safetensors")) for r in (one, two)]
    assert int(pools[0]["0.count"]) == 4
    # the pooled fakes are G's outputs, equal up to the last bits as the weights are
    as_float = lambda t: t.view(torch.float32)  # noqa: E731  (stored as float32 bits)
    assert (
        max(float((as_float(pools[0][k]) - as_float(pools[1][k])).abs().max()) for k in pools[0] if "bits" in k) < 1e-5
    )


# A worker that trains normally except that on rank 1 one weight of G moves after the second step: the processes have
# diverged, which the consistency check at the next checkpoint (step 4) must catch on every rank.
DIVERGE = """
import os, torch
from gankit.cli import run
from gankit.tasks.gan import GANTask
step = GANTask.step
def perturbed(self, batcher, t):
    out = step(self, batcher, t)
    self.calls = getattr(self, "calls", 0) + 1
    if self.calls == 2 and os.environ["RANK"] == "1":
        with torch.no_grad():
            w = next(self.g.parameters())
            w[(0,) * w.ndim] += 1e-3
    return out
GANTask.step = perturbed
run()  # what `python -m gankit` runs
"""


def test_consistency_check_names_the_tensor_and_stops_every_rank(tmp_path):
    script = tmp_path / "diverge.py"
    script.write_text(DIVERGE)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            "train",
            "--steps",
            "8",
            "--out",
            str(tmp_path / "run"),
            *_flags({**TINY, "train.checkpoint_every": 4}),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )  # a rank left waiting for a collective that never comes fails here
    # Both ranks stop with the one-line error. Found by pattern, not by line: the two processes share one stderr pipe,
    # and their lines can land run together.
    errors = re.findall(r"gankit: error: at checkpoint step-(\d+): tensor '(g\.[^']+)' differs between rank", r.stderr)
    assert r.returncode != 0 and len(errors) == 2, r.stderr[-3000:]
    assert all(step == "0000004" for step, _ in errors), errors
    assert r.stderr.count("gankit: error:") == 2, r.stderr[-3000:]  # nothing else went wrong
    # ... and exit non-zero: 2, or -15 where torchrun's SIGTERM (sent to the rest once one worker failed) came first;
    # never -6 (SIGABRT in the interpreter's teardown: see gankit.cli.run)
    codes = [
        int(line.split(":")[1].split()[0]) for line in r.stderr.splitlines() if line.strip().startswith("exitcode")
    ]
    assert len(codes) == 2 and set(codes) <= {2, -15} and 2 in codes, r.stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoints" / "step-0000004").exists()  # nothing inconsistent was written


def test_two_machines_write_one_run(tmp_path):
    """Two torchrun invocations (--nnodes 2, node rank 0 and 1, one process each) meet at 127.0.0.1 and train one
    run: node 0's process is rank 0 and writes the folder; node 1 writes nothing."""
    port = _free_port()
    out, other = tmp_path / "run", tmp_path / "node1-cwd"
    other.mkdir()
    common = ["--nnodes", "2", "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    args = ["--steps", "4", "--out", str(out), *_flags(TINY)]
    procs = [
        subprocess.Popen(
            [*_torchrun(*common, "--node-rank", str(n)), *args],
            env=_env(),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, cwd in ((0, tmp_path), (1, other))
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-1500:] + outs[1][1][-1500:]
    assert "done: 4 steps" in outs[0][0] and "done" not in outs[1][0]
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    assert (out / "checkpoints" / "final").is_dir() and not any(other.iterdir())


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _kill_tree(pid: int) -> None:
    """The launcher, its torchrun (in a session of its own) and the workers: nothing outlives a failed test."""
    for kid in _children(pid):
        _kill_tree(kid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_for(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.1)


def _sigterm_run(out):
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gankit",
            "train",
            "--nproc",
            "2",
            "--steps",
            "100000",
            "--out",
            str(out),
            *_flags({**TINY, "train.checkpoint_every": 100000}),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(
            lambda: (out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 3
        )
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        _kill_tree(p.pid)
    return p.returncode, err


def test_sigterm_stops_all_ranks_saves_and_exits_143(tmp_path):
    out = tmp_path / "run"
    rc, err = _sigterm_run(out)
    assert rc == 143, err[-2000:]
    # "checkpoint saved" once, from rank 0 (rank 1 stops silently), and no torchrun SignalException traceback (#31)
    assert err.count("SIGTERM at step") == 1, err[-2000:]
    assert "Traceback" not in err and "SignalException" not in err, err[-2000:]
    steps = set(re.findall(r"SIGTERM at step (\d+):", err))  # by pattern: the ranks share one stderr pipe
    assert len(steps) == 1, err[-2000:]
    saved = (out / "checkpoints" / "latest").read_text().strip()
    assert saved == f"step-{int(steps.pop()):07d}" and saved != "step-0000000"


def test_kill9_of_one_worker_restarts_and_resumes(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gankit",
            "train",
            "--nproc",
            "2",
            "--max-restarts",
            "1",
            "--steps",
            "100",
            "--out",
            str(out),
            *_flags({**TINY, "train.checkpoint_every": 20}),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: (out / "checkpoints" / "step-0000020").is_dir())
        torchrun = _children(p.pid)
        workers = [w for t in torchrun for w in _children(t)]
        assert len(workers) == 2, (torchrun, workers)
        os.kill(max(workers), signal.SIGKILL)  # one of the two workers dies without a word
        stdout, err = p.communicate(timeout=120)
    finally:
        _kill_tree(p.pid)
    assert p.returncode == 0, [line[:300] for line in err.splitlines() if "gankit" in line or "rror" in line]
    assert "resuming" in err and "done: 100 steps" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 100
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # redone steps replaced their rows
