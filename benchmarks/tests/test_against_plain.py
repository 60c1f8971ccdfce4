"""benchmarks/train_speed.py --against plain (issue 30): the plain-PyTorch twins of every shipped step have gankit's
parameter counts, a mismatch stops the benchmark, and benchmarks/device_speed.sh runs it end to end on the CPU at a
tiny size and writes the table and JSON. No timing is asserted: the benchmark records its own spread."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file is benchmarks/tests/...)
sys.path.insert(0, str(ROOT / "benchmarks"))
import against_plain as A  # noqa: E402
import plain_steps  # noqa: E402
from gankit.nets import build_models  # noqa: E402


def _script(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A benchmark script run as a user runs it: its own process, output captured."""
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_every_shipped_step_has_a_plain_twin_with_the_same_parameters():
    cases = A.distinct_cases()
    names = [c[0] for c in cases]
    assert "reports/004-dcgan-mnist" in names and "recommended/mnist" in names
    covered = set(names) | {s for c in cases for s in c[3]}
    assert covered == {A.label(p) for p in A.CONFIGS}  # every shipped config is in some row
    for name, _, cfg, _ in cases:
        shape = (A.channels(cfg), cfg.data.image_size, cfg.data.image_size)
        g, d = build_models(cfg.model, shape).values()
        pg, pd = A.PLAIN_MODELS[cfg.model.name](cfg, shape[0])
        assert (A.n_params(pg), A.n_params(pd)) == (A.n_params(g), A.n_params(d)), name
        assert not any(m.__module__.startswith("gankit") for m in [*pg.modules(), *pd.modules()])


def test_a_plain_step_with_other_layers_is_refused(monkeypatch):
    name, _, cfg, _ = next(c for c in A.distinct_cases() if c[0] == "recommended/mnist")
    cfg = cfg.replace(**{"train.batch_size": 4, "model.g_channels": 4, "model.d_channels": 4})
    wrong = lambda c, nc: plain_steps.dcgan(28, nc, c.model.z_dim, 8, 4, True, True)  # noqa: E731  G twice as wide
    monkeypatch.setitem(A.PLAIN_MODELS, "dcgan", wrong)
    with pytest.raises(AssertionError, match="parameter counts differ"):
        A.measure(name, cfg, "cpu", rounds=1, seconds=0.01, peak_n=64)


def test_device_script_runs_on_cpu_and_writes_the_table(tmp_path):
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DEVICE": "cpu",
        "ROUNDS": "2",
        "SIDE_SECONDS": "0.01",
        "OUT": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    res = _script(
        [
            "bash",
            str(ROOT / "benchmarks/device_speed.sh"),
            "--only",
            "recommended/mnist",
            "--threads",
            "1",
            "--peak-n",
            "64",
            "--set",
            "train.batch_size=4",
            "--set",
            "model.g_channels=4",
            "--set",
            "model.d_channels=4",
        ],
        env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"parameters G/D: plain ([\d,]+)/([\d,]+), gankit \1/\2; batch 4, 1 D update", res.stdout)
    md = (tmp_path / "against_plain.md").read_text()
    assert "python3 benchmarks/train_speed.py --against plain --device cpu --rounds 2" in md
    assert "train.batch_size=4" in md  # the override is stated
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len(rows) == 3 and rows[1].startswith("|---")
    cells = [c.strip() for c in rows[2].strip("|").split("|")]
    assert len(cells) == len(rows[0].strip("|").split("|")) == 8
    assert cells[0] == "recommended/mnist" and cells[2] == "4 × 1"
    assert re.fullmatch(r"\*\*×\d+\.\d\d\*\* \(\d+\.\d\d–\d+\.\d\d\)", cells[6])
    data = json.loads((tmp_path / "against_plain.json").read_text())
    (row,) = data["rows"]
    assert row["rounds"] == 2 and len(row["raw"]["gankit"]) == len(row["raw"]["plain"]) == len(row["raw"]["peak"]) == 2
    assert row["ratio"]["min"] <= row["ratio"]["median"] <= row["ratio"]["max"]
    assert data["device"] == "cpu" and (tmp_path / "device_speed.log").exists()


def test_cpu_clock_needs_one_thread(capsys):
    assert A.against_plain(["--against", "plain", "--clock", "cpu", "--threads", "2"]) == 2
    assert capsys.readouterr().out.startswith("gankit: error: --clock cpu")


def test_dcgan_tf_trains_contiguous_unless_asked():
    """Report 004's model gained nothing from channels_last here and lost on AVX2 and on the issue's AMD EPYC."""
    from gankit.config.layering import resolve
    from gankit.tasks.gan import GANTask

    path = ROOT / "gankit/configs/reports/004-dcgan-mnist.yaml"
    small = {"train.batch_size": 4, "model.g_channels": 4, "model.d_channels": 4}
    cfg = resolve(path, small)
    assert (
        cfg.train.channels_last is False and resolve(path, {**small, "train.channels_last": True}).train.channels_last
    )
    assert resolve(overrides={}).train.channels_last  # other models keep it
    task = GANTask(cfg, A.fake_data(cfg, 8), torch.device("cpu"))
    assert task.memory_format == torch.contiguous_format
    assert all(p.is_contiguous() for p in task.d.parameters())


def test_profile_sides_prints_both_op_tables_and_refuses_an_unknown_row():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(ROOT / "benchmarks/profile_sides.py")
    small = ["--set", "train.batch_size=4", "--set", "model.g_channels=4", "--set", "model.d_channels=4"]
    res = _script([sys.executable, script, "recommended/mnist", "--steps", "1", "--rows", "5", *small], env)
    assert res.returncode == 0, res.stdout + res.stderr
    plain, gankit = res.stdout.split("==== plain")[1].split("==== gankit")
    assert re.search(r"^plain: [\d.]+ img/s wall, [\d.]+ img/s CPU time", res.stdout, re.M)
    assert re.search(r"^gankit: [\d.]+ img/s wall", res.stdout, re.M)
    assert "aten::" in plain and "aten::" in gankit  # each side's own op table
    bad = _script([sys.executable, script, "reports/no-such-row"], env)
    assert bad.returncode == 2 and bad.stdout.startswith("gankit: error: no row 'reports/no-such-row'")
    assert bad.stdout.count("\n") == 1
