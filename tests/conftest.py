from __future__ import annotations

import os
import tempfile

import pytest
import torch

# Tests never touch the user's cache, the repository or the network-backed defaults: one fresh cache folder per test
# session (classifiers trained for metrics are shared by the tests of that session).
_CACHE = tempfile.TemporaryDirectory(prefix="gankit-test-cache-")
os.environ["GANKIT_CACHE"] = _CACHE.name
torch.set_num_threads(1)  # many tiny ops: one thread is faster and keeps results identical across runs


@pytest.fixture
def tiny_overrides() -> dict:
    """A DCGAN small enough that a step takes milliseconds."""
    return {
        "data.limit": 128,
        "data.image_size": 16,
        "model.g_channels": 8,
        "model.d_channels": 8,
        "model.z_dim": 8,
        "train.batch_size": 16,
        "train.progress": False,
        "train.log_every": 2,
        "train.threads": 1,
    }
