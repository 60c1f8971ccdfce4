"""gankit.training.parts: the finiteness check of a step's outputs, and reading a step's scalars off the device in
one copy."""

from __future__ import annotations

import math

import pytest
import torch

from gankit.training.parts import host_values, nonfinite


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_all_finite_finds_one_bad_value(bad):
    from gankit.training.parts import all_finite

    x = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    assert all_finite(x) and all_finite(torch.zeros(0)) and all_finite(torch.arange(3))
    x[2, 1, 3, 4] = bad
    assert not all_finite(x) and not all_finite(x.to(torch.bfloat16))


def test_host_values_are_float_of_each_value_in_order() -> None:
    outputs = {"loss/d": torch.tensor(0.1234567), "d/real": torch.tensor(-3.5, dtype=torch.bfloat16),
               "aug/p": torch.tensor(0.3, dtype=torch.float64), "loss/g": torch.tensor([2.0 / 3.0]),
               "count": torch.tensor(7), "gp": torch.tensor(float("nan"))}
    got = host_values(outputs)
    assert list(got) == list(outputs)
    for k, v in outputs.items():
        assert type(got[k]) is float
        assert got[k] == float(v) or (math.isnan(got[k]) and math.isnan(float(v))), k
    assert [k for k, v in got.items() if not math.isfinite(v)] == nonfinite(outputs) == ["gp"]
    assert host_values({}) == {}
