"""gankit.training.parts: the finiteness check of a step's outputs, reading a step's scalars off the device in one
copy, and the budget's clock (train.clock) with the --cpu-minutes flag that sets it."""

from __future__ import annotations

import argparse
import math
import time

import pytest
import torch

from gankit.cli.common import add_data_flags, overrides
from gankit.config.layering import resolve
from gankit.core.errors import GankitError
from gankit.training.parts import Budget, host_values, nonfinite


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_all_finite_finds_one_bad_value(bad):
    from gankit.training.parts import all_finite

    x = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    assert all_finite(x) and all_finite(torch.zeros(0)) and all_finite(torch.arange(3))
    x[2, 1, 3, 4] = bad
    assert not all_finite(x) and not all_finite(x.to(torch.bfloat16))


def test_host_values_are_float_of_each_value_in_order() -> None:
    outputs = {
        "loss/d": torch.tensor(0.1234567),
        "d/real": torch.tensor(-3.5, dtype=torch.bfloat16),
        "aug/p": torch.tensor(0.3, dtype=torch.float64),
        "loss/g": torch.tensor([2.0 / 3.0]),
        "count": torch.tensor(7),
        "gp": torch.tensor(float("nan")),
    }
    got = host_values(outputs)
    assert list(got) == list(outputs)
    for k, v in outputs.items():
        assert type(got[k]) is float
        assert got[k] == float(v) or (math.isnan(got[k]) and math.isnan(float(v))), k
    assert [k for k, v in got.items() if not math.isfinite(v)] == nonfinite(outputs) == ["gp"]
    assert host_values({}) == {}


def _budget(clock: str, seconds: float) -> Budget:
    cfg = resolve(overrides={"train.max_minutes": seconds / 60, "train.clock": clock})
    b = Budget(cfg, batches_per_epoch=10)
    b.start_clock()
    return b


def test_a_cpu_budget_does_not_run_while_the_process_waits() -> None:
    """Sleeping (as a process does while other programs hold the cores) spends wall time, not CPU time: the wall
    budget ends, the CPU budget does not, and ends once this process has computed for its length."""
    wall, cpu = _budget("wall", 0.3), _budget("cpu", 0.3)
    time.sleep(0.45)
    assert wall.spent(0) == "time"
    assert cpu.spent(0) is None and cpu.elapsed() < 0.3 and cpu.progress(0) < 1
    t0, x = time.process_time(), 0
    while cpu.spent(0) is None and time.process_time() - t0 < 10:
        x += 1
    assert cpu.spent(0) == "time" and time.process_time() - t0 >= 0.3 - 0.05  # what slept before did not count much


def _flags(*argv: str) -> dict:
    p = argparse.ArgumentParser()
    add_data_flags(p)
    return overrides(p.parse_args(list(argv)))


def test_cpu_minutes_flag_sets_the_budget_and_its_clock() -> None:
    assert _flags("--cpu-minutes", "10") == {
        "train.steps": 0,
        "train.epochs": 0,
        "train.max_minutes": 10.0,
        "train.clock": "cpu",
    }
    assert "train.clock" not in _flags("--max-minutes", "10")  # the config's clock (wall by default)
    with pytest.raises(GankitError, match="give one time budget"):
        _flags("--cpu-minutes", "1", "--max-minutes", "1")
    with pytest.raises(GankitError, match="must be > 0"):
        _flags("--cpu-minutes", "0")
    with pytest.raises(GankitError, match="train.clock"):
        resolve(overrides={"train.steps": 1, "train.clock": "gpu"})
