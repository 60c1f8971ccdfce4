"""Settings for every test of the repository, tests/ and benchmarks/tests/ alike: a private cache, one thread, and the
machine named in the report. The unit suite's fixtures are in tests/conftest.py."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
from threadpoolctl import threadpool_limits

# Tests never touch the user's cache, the repository or the network-backed defaults: one fresh cache folder per test
# session (classifiers trained for metrics are shared by the tests of that session).
_CACHE = tempfile.TemporaryDirectory(prefix="gankit-test-cache-")
os.environ["GANKIT_CACHE"] = _CACHE.name
torch.set_num_threads(1)  # many tiny ops: one thread is faster and keeps results identical across runs
# numpy's BLAS/OpenMP pools too (FD's covariances, the scorers' statistics): on a loaded 2-core machine their second
# thread cost more CPU than the tiny work it shared (seen in tests/test_tune.py, third session).
threadpool_limits(1)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def _machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"gankit: torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{_cpu_model()}, {cores} usable cores (of {os.cpu_count()}), tests run on 1 thread"
    )


def pytest_report_header(config: pytest.Config) -> str:
    """The machine in the header, so a failure names it: numerics differ with the CPU's vector width (the kernel
    torch picks) and with the thread count, and the suite's run time with the cores this process may use."""
    return _machine()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    # `-q` (the project's addopts) hides the header; the same line then closes the report, next to any failure.
    if config.get_verbosity() < 0:
        terminalreporter.write_line(_machine())
