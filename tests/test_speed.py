"""Issue 10: mixed precision (bf16, fp16 with loss scalers), compiled forwards, the side-work clock in summary.json,
and pacing of previews by wall time that never changes the trained weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import gankit
from gankit.config.layering import resolve
from gankit.core.errors import GankitError
from gankit.losses import gradient_penalty
from gankit.training.precision import Precision
from gankit.training.sidework import SideClock, Throttle

PIX2PIX = {"model.name": "pix2pix", "data.image_size": 32, "data.limit": 12, "model.g_channels": 8,
           "model.d_channels": 8, "train.batch_size": 4, "train.log_every": 2, "train.threads": 1,
           "train.progress": False}


def _train(tmp_path, name, overrides, resume=False):
    cfg = resolve(overrides=overrides)
    return gankit.train(cfg, resume=str(tmp_path / name)) if resume else gankit.train(cfg, out=str(tmp_path / name))


def _final(run_dir, what="g"):
    return load_file(str(run_dir / "checkpoints" / "final" / f"{what}.safetensors"))


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _state(run_dir):
    return json.loads((run_dir / "checkpoints" / "final" / "state.json").read_text())


# -- precision ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes_exactly(tmp_path, tiny_overrides, precision):
    extra = {**tiny_overrides, "train.precision": precision}
    straight = _train(tmp_path, "straight", {**extra, "train.steps": 6})
    _train(tmp_path, "half", {**extra, "train.steps": 3})
    resumed = _train(tmp_path, "half", {**extra, "train.steps": 6}, resume=True)
    assert resumed.step == 6 and _equal(_final(straight.dir), _final(resumed.dir))
    assert all(torch.isfinite(v).all() for v in _final(straight.dir).values())
    # Autocast really ran: the weights differ from the same run in fp32.
    fp32 = _train(tmp_path, "fp32", {**tiny_overrides, "train.steps": 6})
    assert not _equal(_final(straight.dir), _final(fp32.dir))
    scalers = _state(straight.dir).get("task", {}).get("scalers")
    if precision == "fp16":  # one loss scaler per optimizer, in the checkpoint
        assert set(scalers) == {"g", "d"} and all(s["scale"] > 0 for s in scalers.values())
    else:
        assert scalers is None


def test_fp16_scaler_state_is_restored(tmp_path, tiny_overrides):
    cfg = resolve(overrides={**tiny_overrides, "train.precision": "fp16", "train.steps": 2})
    run = gankit.train(cfg, out=str(tmp_path / "r"))
    saved = _state(run.dir)["task"]["scalers"]
    from gankit.data import load_dataset
    from gankit.tasks.gan import GANTask

    task = GANTask(cfg, load_dataset(cfg.data), torch.device("cpu"))
    task.load_extra_state({"scalers": {"d": {**saved["d"], "scale": 128.0}}})
    assert task.prec.scalers["d"].get_scale() == 128.0


def test_pix2pix_bf16_resumes_exactly(tmp_path):
    extra = {**PIX2PIX, "train.precision": "bf16"}
    straight = _train(tmp_path, "straight", {**extra, "train.steps": 4})
    _train(tmp_path, "half", {**extra, "train.steps": 2})
    resumed = _train(tmp_path, "half", {**extra, "train.steps": 4}, resume=True)
    assert _equal(_final(straight.dir), _final(resumed.dir))


def test_gradient_penalty_is_fp32_under_autocast():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 1))
    real, fake = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    plain = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = gradient_penalty(critic, real, fake.bfloat16(), torch.Generator().manual_seed(1))
    assert mixed.dtype == torch.float32
    # fake was rounded to bf16 (3 significant digits), nothing else: fp32 maths all the way.
    assert torch.allclose(mixed, plain, rtol=1e-2) and not torch.equal(mixed, plain.bfloat16().float())


def test_wgan_gp_trains_in_bf16(tmp_path, tiny_overrides):
    run = _train(tmp_path, "w", {**tiny_overrides, "loss.name": "wgan-gp", "train.d_steps": 3,
                                 "model.d_batchnorm": False, "train.precision": "bf16", "train.steps": 3})
    rows = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines() if '"gp"' in x]
    assert rows and all(torch.isfinite(torch.tensor(r["gp"])) for r in rows)


def test_bad_precision_is_a_clear_error(tiny_overrides):
    with pytest.raises(GankitError, match="train.precision"):
        resolve(overrides={**tiny_overrides, "train.precision": "fp8"})
    with pytest.raises(GankitError, match="train.precision"):
        Precision("fp8", torch.device("cpu"), {})


# -- compile --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_run_keeps_checkpoint_keys_and_losses(tmp_path, tiny_overrides):
    # An MLP: inductor's compile time grows with the number of ops, and the mechanism is the same as for convs.
    mlp = {**{k: v for k, v in tiny_overrides.items() if not k.startswith("model.")}, "model.name": "mlp",
           "model.g_hidden": [16], "model.d_hidden": [16], "model.z_dim": 8, "train.steps": 3}
    plain = _train(tmp_path, "plain", mlp)
    comp = _train(tmp_path, "comp", {**mlp, "train.compile": True})
    for what in ("g", "d"):  # the original modules are saved: no "_orig_mod." prefixes
        a, b = _final(plain.dir, what), _final(comp.dir, what)
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[k], b[k], atol=2e-3) for k in a)
    first = lambda d: next(json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if '"loss/d"' in x)  # noqa: E731
    assert first(plain.dir)["loss/d"] == pytest.approx(first(comp.dir)["loss/d"], abs=1e-4)  # step 1: same maths
    summary = json.loads((comp.dir / "summary.json").read_text())
    assert summary["first_step_seconds"] > 0
    assert gankit.load(comp.dir).sample(4, seed=0).shape[0] == 4  # loads without the compiled wrapper


# -- side work ------------------------------------------------------------------------------------------------------


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
    scored = lambda d: [r["step"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "eval/l1" in r]  # noqa: E731
    assert scored(every.dir) == [0, 3, 6, 8] and scored(paced.dir) == [0, 8]
    for what in ("g", "d"):
        assert _equal(_final(every.dir, what), _final(paced.dir, what))
    losses = lambda d: [(r["step"], r["loss/d"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "loss/d" in r]  # noqa: E731
    assert losses(every.dir) == losses(paced.dir)


def test_pix2pix_validates_on_a_fixed_subset(tmp_path):
    from gankit.data.base import ImageData
    from gankit.tasks.pix2pix import VAL_PAIRS, Pix2PixTask

    cfg = resolve(overrides={**PIX2PIX, "train.steps": 1})
    imgs = torch.randint(0, 256, (100, 1, 32, 32), dtype=torch.uint8)
    data = ImageData(imgs, torch.full((100,), -1), "pairs", targets=imgs.expand(-1, 3, -1, -1).clone())
    task = Pix2PixTask(cfg, data, torch.device("cpu"), val=data)
    assert len(task.val_a) == VAL_PAIRS == 32 and torch.equal(task.val_a[0], imgs[0]) and torch.equal(task.val_a[-1], imgs[-1])
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


def test_pix2pix_trains_channels_last_with_fused_adam(tmp_path):
    from gankit.data.base import ImageData
    from gankit.tasks.pix2pix import Pix2PixTask

    cfg = resolve(overrides={**PIX2PIX, "train.channels_last": True})  # paired sets default to contiguous
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8, generator=g)
    data = ImageData(imgs, torch.full((4,), -1), "t", [], torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g))
    task = Pix2PixTask(cfg, data, torch.device("cpu"))
    conv = task.g.down[1][1]  # 8 -> 16 channels (a 1-channel weight is both layouts at once)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert all(grp["fused"] for o in task.optimizers.values() for grp in o.param_groups)
    plain = Pix2PixTask(resolve(overrides={**PIX2PIX, "train.channels_last": False}), data, torch.device("cpu"))
    assert plain.g.down[1][1].weight.is_contiguous()


def test_restored_adam_moments_take_their_parameters_layout():
    """Checkpoints store moments contiguous; restored next to channels_last weights they must take the weights'
    layout, else fused Adam on the CPU pairs the wrong elements and the resume is not exact."""
    from gankit.training.checkpoint import match_layouts

    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=torch.channels_last)

    def two_steps(reload: bool) -> torch.Tensor:
        p = torch.nn.Parameter(w.clone())
        p.grad = w.flip(0).contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam([p], fused=True)
        opt.step()
        if reload:
            sd = opt.state_dict()
            sd["state"][0] = {k: v.contiguous() for k, v in sd["state"][0].items()}  # as a checkpoint stores them
            opt.load_state_dict(sd)
            match_layouts(opt)
            assert opt.state[p]["exp_avg"].stride() == p.stride()
        opt.step()
        return p.detach()

    assert torch.equal(two_steps(False), two_steps(True))


@pytest.mark.parametrize("amsgrad", [False, True])
def test_layout_adam_updates_channels_last_weights_as_adam_does(monkeypatch, amsgrad):
    """gankit's Adam hands the fused kernel flat views of channels_last tensors (no contiguous copies): the same
    update as torch's fused Adam bit for bit (the same kernel), the same as its per-parameter Adam to a few ulp (another
    kernel), and the flat path is really taken."""
    import gankit.optim as optim

    flattened, plain_order = [], optim.memory_order
    monkeypatch.setattr(optim, "memory_order", lambda t: flattened.append(tuple(t.shape)) or plain_order(t))
    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 4, 3, 3), (6, 5, 4, 4), (7,)]
    start = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(3)]
    cl = (lambda t: t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t.clone())

    def train(make) -> list[torch.Tensor]:
        ps = [torch.nn.Parameter(cl(w)) for w in start]
        opt = make(ps)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = cl(g)
            opt.step()
        return [p.detach() for p in ps]

    kw = dict(lr=1e-2, betas=(0.5, 0.99), weight_decay=1e-3, amsgrad=amsgrad)
    ours = train(lambda ps: optim.LayoutAdam(ps, fused=True, **kw))
    assert sorted(set(flattened)) == [(6, 5, 4, 4), (8, 4, 3, 3)]  # each tensor of both 4-d weights, each step
    assert ours[0].is_contiguous(memory_format=torch.channels_last) and not ours[0].is_contiguous()
    fused = train(lambda ps: torch.optim.Adam(ps, fused=True, **kw))
    assert all(torch.equal(a, b) for a, b in zip(ours, fused))  # the same fused kernel on the same elements
    # The single-tensor Adam is another kernel: how it vectorises (AVX2, AVX512) and fuses the multiply-adds decides
    # the last bit, so on some machines (an AMD EPYC, AVX512) it differs from the fused kernel by 1 ulp, and three
    # steps can add up a few. Per step each kernel rounds the update (at most ~lr here) and the new weight: so allow
    # 8 ulp of the weight (rtol) plus 8 ulp of lr per step for weights near 0 (atol). A layout bug (an element paired
    # with another element's moments) moves weights by ~lr = 1e-2, about 10^4 times more than that.
    eps, steps = torch.finfo(torch.float32).eps, len(grads)
    single = train(lambda ps: torch.optim.Adam(ps, foreach=False, **kw))
    for a, b in zip(ours, single):
        torch.testing.assert_close(a, b, rtol=8 * eps, atol=8 * eps * kw["lr"] * steps)


def test_memory_order_views_dense_tensors_only():
    from gankit.optim import memory_order

    x = torch.arange(2 * 3 * 4 * 5.0).view(2, 3, 4, 5)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(memory_order(cl), cl.permute(0, 2, 3, 1).reshape(-1))
    assert memory_order(cl).data_ptr() == cl.data_ptr()  # a view, not a copy
    assert torch.equal(memory_order(x), x.reshape(-1))
    assert memory_order(x[:, :, :2]) is None  # a slice has holes


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_all_finite_finds_one_bad_value(bad):
    from gankit.training.parts import all_finite

    x = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    assert all_finite(x) and all_finite(torch.zeros(0)) and all_finite(torch.arange(3))
    x[2, 1, 3, 4] = bad
    assert not all_finite(x) and not all_finite(x.to(torch.bfloat16))
