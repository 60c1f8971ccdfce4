"""gankit/training/sidework.py: which side work a step owes (Paces.due), the one place the loop asks."""

from __future__ import annotations

from gankit.config.schema import TrainConfig
from gankit.training.sidework import Due, Paces


def steps_where(paces: Paces, field: str, last: int = 400) -> list[int]:
    return [s for s in range(1, last + 1) if getattr(paces.due(s), field)]


def test_each_kind_of_side_work_comes_at_its_own_pace() -> None:
    paces = Paces(log_every=20, sample_every=50, eval_every=100, checkpoint_every=200, check_every_step=False)
    assert steps_where(paces, "log") == [1, *range(20, 401, 20)]  # the first step too: a run shows a row at once
    assert steps_where(paces, "check_outputs") == list(range(20, 401, 20))  # on a device: where a row reads them
    assert steps_where(paces, "preview") == list(range(50, 401, 50))
    assert steps_where(paces, "validate") == [100, 200, 300, 400]
    assert steps_where(paces, "checkpoint") == [200, 400]
    # weights are checked and losses.png redrawn exactly at checkpoint steps
    assert steps_where(paces, "check_weights") == steps_where(paces, "plots") == [200, 400]
    assert paces.due(200) == Due(check_outputs=True, check_weights=True, log=True, preview=True, validate=True,
                                 checkpoint=True, plots=True)
    assert paces.due(7) == Due(check_outputs=False, check_weights=False, log=False, preview=False, validate=False,
                               checkpoint=False, plots=False)
    # step 0 (a run whose budget was spent before its first step) counts as checkpointed: the end adds no save
    assert paces.due(0).checkpoint


def test_cpu_checks_every_step_and_eval_every_0_never_validates() -> None:
    paces = Paces(log_every=20, sample_every=5, eval_every=0, checkpoint_every=3, check_every_step=True)
    assert steps_where(paces, "check_outputs", 30) == list(range(1, 31))
    assert steps_where(paces, "validate", 1000) == []
    assert steps_where(paces, "checkpoint", 10) == [3, 6, 9]


def test_paces_from_the_config() -> None:
    t = TrainConfig(log_every=7, sample_every=0, eval_every=11, checkpoint_every=13, d_steps=2)
    on_cpu = Paces.of(t, batches_per_epoch=30, device_type="cpu")
    assert on_cpu == Paces(log_every=7, sample_every=15, eval_every=11, checkpoint_every=13, check_every_step=True)
    assert not Paces.of(t, batches_per_epoch=30, device_type="cuda").check_every_step
    assert Paces.of(t, batches_per_epoch=1, device_type="cpu").sample_every == 1  # an epoch shorter than a step
    assert Paces.of(TrainConfig(sample_every=4), batches_per_epoch=30, device_type="cpu").sample_every == 4
