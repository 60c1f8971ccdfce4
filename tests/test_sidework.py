"""Side work (gankit.training.sidework): the clock that splits wall time into the step and the rest, previews paced by
wall time without changing the weights, pix2pix's validation on a fixed subset, and `best` as a link to its step's
checkpoint; which side work a step owes (Paces.due), the one place the loop asks."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import PIX2PIX
from safetensors.torch import load_file

import gankit
from gankit.config.layering import resolve
from gankit.config.schema import TrainConfig
from gankit.training.sidework import Due, Paces, SideClock, Throttle


def _train(tmp_path, name, overrides, resume=False):
    cfg = resolve(overrides=overrides)
    return gankit.train(cfg, resume=str(tmp_path / name)) if resume else gankit.train(cfg, out=str(tmp_path / name))


def _final(run_dir, what="g"):
    return load_file(str(run_dir / "checkpoints" / "final" / f"{what}.safetensors"))


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _state(run_dir):
    return json.loads((run_dir / "checkpoints" / "final" / "state.json").read_text())


def test_summary_splits_wall_time_into_step_and_side_work(tmp_path, tiny_overrides):
    run = _train(tmp_path, "r", {**tiny_overrides, "train.steps": 6, "train.sample_every": 3})
    s = json.loads((run.dir / "summary.json").read_text())
    assert s["step_seconds"] > 0 and s["side_seconds"] > 0
    assert s["step_seconds"] + s["side_seconds"] == pytest.approx(s["wall_seconds"], abs=2e-3)
    # The seconds are rounded to 1 ms in the summary, the share computed before rounding: allow for both.
    assert s["side_share"] == pytest.approx(s["side_seconds"] / s["wall_seconds"], abs=1e-3 + 2e-3 / s["wall_seconds"])
    assert {"previews", "checkpoints", "plots"} <= set(s["side_parts"])
    assert sum(s["side_parts"].values()) <= s["side_seconds"] + 1e-3


def test_side_clock_and_throttle_with_a_fake_clock():
    now = [0.0]
    clock = SideClock(clock=lambda: now[0])
    with clock.step():
        now[0] += 3
    with clock.side("previews"):
        now[0] += 1
    now[0] += 1  # unnamed side work (logging)
    s = clock.summary()
    assert (s["step_seconds"], s["side_seconds"], s["side_share"], s["side_parts"]) == (3, 2, 0.4, {"previews": 1})
    pace = Throttle(10, clock=lambda: now[0])
    assert pace.ready()
    pace.mark()
    now[0] += 9.9
    assert not pace.ready()
    now[0] += 0.1
    assert pace.ready() and Throttle(0).ready()


def test_preview_pacing_does_not_change_the_weights(tmp_path):
    # 12 pairs, batch 4: 3 steps an epoch. Unpaced: a grid (and pix2pix's validation) every epoch; paced by a long
    # interval: only the first and the final grid. Training must not notice.
    base = {**PIX2PIX, "train.steps": 8}
    every = _train(tmp_path, "every", {**base, "train.preview_seconds": 0})
    paced = _train(tmp_path, "paced", {**base, "train.preview_seconds": 3600})
    grids = lambda d: sorted(p.name for p in (d / "samples").glob("step-*.png"))  # noqa: E731
    assert grids(every.dir) == [f"step-000000{i}.png" for i in (0, 3, 6, 8)]
    assert grids(paced.dir) == ["step-0000000.png", "step-0000008.png"]
    scored = lambda d: [
        r["step"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "eval/l1" in r
    ]  # noqa: E731
    assert scored(every.dir) == [0, 3, 6, 8] and scored(paced.dir) == [0, 8]
    for what in ("g", "d"):
        assert _equal(_final(every.dir, what), _final(paced.dir, what))
    losses = lambda d: [
        (r["step"], r["loss/d"])
        for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
        if "loss/d" in r
    ]  # noqa: E731
    assert losses(every.dir) == losses(paced.dir)


def test_pix2pix_validates_on_a_fixed_subset(tmp_path):
    from gankit.data.base import ImageData
    from gankit.tasks.pix2pix import VAL_PAIRS, Pix2PixTask

    cfg = resolve(overrides={**PIX2PIX, "train.steps": 1})
    imgs = torch.randint(0, 256, (100, 1, 32, 32), dtype=torch.uint8)
    data = ImageData(imgs, torch.full((100,), -1), "pairs", targets=imgs.expand(-1, 3, -1, -1).clone())
    task = Pix2PixTask(cfg, data, torch.device("cpu"), val=data)
    assert (
        len(task.val_a) == VAL_PAIRS == 32
        and torch.equal(task.val_a[0], imgs[0])
        and torch.equal(task.val_a[-1], imgs[-1])
    )
    assert set(task.validate()) == {"eval/l1", "eval/psnr", "eval/ssim"}


def test_best_links_to_the_checkpoint_of_its_step_and_holds_its_score(tmp_path):
    """`best` at step 0 and at the end is a hard-linked twin of that step's numbered checkpoint (not a second write),
    and the numbered checkpoint a resume starts from already holds the new best score."""
    run = _train(tmp_path, "p", {**PIX2PIX, "train.steps": 6})
    ck = run.dir / "checkpoints"
    best = json.loads((ck / "best" / "state.json").read_text())
    twin = ck / f"step-{best['step']:07d}"
    for f in (ck / "best").iterdir():
        assert f.stat().st_ino == (twin / f.name).stat().st_ino, f.name
    rows = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines() if '"eval/l1"' in x]
    assert [r["step"] for r in rows] == [0, 6]
    assert best["best_value"] == _state(run.dir)["best_value"]
    assert best["best_value"] == pytest.approx(min(r["eval/l1"] for r in rows), abs=1e-6)  # the log rounds to 6 digits


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
    assert paces.due(200) == Due(
        check_outputs=True, check_weights=True, log=True, preview=True, validate=True, checkpoint=True, plots=True
    )
    assert paces.due(7) == Due(
        check_outputs=False,
        check_weights=False,
        log=False,
        preview=False,
        validate=False,
        checkpoint=False,
        plots=False,
    )
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
