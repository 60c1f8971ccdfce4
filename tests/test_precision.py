"""Mixed precision (bf16, fp16 with loss scalers; gankit.training.precision) and compiled forwards: they train, resume
exactly and keep the checkpoint's keys."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import PIX2PIX
from safetensors.torch import load_file

import gankit
from gankit.config.layering import resolve
from gankit.core.errors import GankitError
from gankit.losses import gradient_penalty
from gankit.training.precision import Precision


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
    run = _train(
        tmp_path,
        "w",
        {
            **tiny_overrides,
            "loss.name": "wgan-gp",
            "train.d_steps": 3,
            "model.d_batchnorm": False,
            "train.precision": "bf16",
            "train.steps": 3,
        },
    )
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
    mlp = {
        **{k: v for k, v in tiny_overrides.items() if not k.startswith("model.")},
        "model.name": "mlp",
        "model.g_hidden": [16],
        "model.d_hidden": [16],
        "model.z_dim": 8,
        "train.steps": 3,
    }
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
