"""gankit.training.parts: the finiteness check of a step's outputs."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_all_finite_finds_one_bad_value(bad):
    from gankit.training.parts import all_finite

    x = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    assert all_finite(x) and all_finite(torch.zeros(0)) and all_finite(torch.arange(3))
    x[2, 1, 3, 4] = bad
    assert not all_finite(x) and not all_finite(x.to(torch.bfloat16))
