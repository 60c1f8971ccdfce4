"""How much a reproduction trains and scores: the budgets ``gankit reproduce --budget`` chooses from.

A leaf module (the claims files name budgets in ``budget_steps``, the runner plans with them), so that neither imports
the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.registry import Registry


@dataclass(frozen=True)
class Budget:
    description: str
    steps: int | None  # G updates per run; None = each config's own budget (epochs or steps)
    gray_size: int | None  # image size of 1-channel data sets (None = the config's)
    colour_size: int | None  # of colour data sets
    eval_n: int  # samples scored per run
    digits_everywhere: bool = False  # every data set replaced by the embedded digits (tests only)
    digits_for_mnist: bool = False  # MNIST claims may use the embedded digits when no MNIST files are here
    batch_cap: int = 0  # at most this batch size (0 = the config's)
    log_every: int = 0  # 0 = the config's
    holdout: int = 2000  # images kept aside for evaluation where only MNIST's t10k files are here


BUDGETS: Registry[Budget] = Registry("budget", Budget)
BUDGETS.add(
    "smoke",
    Budget(
        "a test of the machinery: embedded digits for every data set, 16x16, 3 steps, 96 "
        "samples scored; its verdicts say nothing about the reports",
        3,
        16,
        16,
        96,
        digits_everywhere=True,
        batch_cap=16,
        log_every=1,
        holdout=100,
    ),
)
BUDGETS.add(
    "quick",
    Budget(
        "300 generator updates per run (fewer where a report's claims file sets its own quick steps, "
        "budget_steps) at 28x28 (colour sets 32x32), the configs' batch sizes, 2,000 samples scored "
        "(made to fit about 30 minutes per report on an idle 2-core machine with --workers 2; the page's Cost "
        "section says what this one took)",
        300,
        28,
        32,
        2000,
        digits_for_mnist=True,
        log_every=5,
    ),
)
BUDGETS.add(
    "report",
    Budget(
        "each config's own budget (the report's epochs or iterations) and image size, 10,000 samples scored",
        None,
        None,
        None,
        10000,
    ),
)
