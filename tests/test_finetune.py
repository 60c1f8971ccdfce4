"""Fine-tuning (train.init_from / --init-from) and gradient accumulation (train.accumulate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gankit
from gankit.cli import main
from gankit.config.layering import resolve
from gankit.data.base import Batcher
from gankit.data import load_dataset
from gankit.tasks.gan import GANTask


def _train(tmp_path: Path, name: str, tiny: dict, **extra) -> gankit.Run:
    return gankit.train(resolve(overrides={**tiny, **extra}), out=str(tmp_path / name))


def _tensors(ck: Path, stem: str) -> dict[str, torch.Tensor]:
    return load_file(str(ck / f"{stem}.safetensors"))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A short source run (digits, 16x16, EMA on) that the tests fine-tune from."""
    tmp = tmp_path_factory.mktemp("src")
    tiny = {
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
    return _train(tmp, "src", tiny, **{"train.steps": 4, "train.ema_half_life": 0.1}).dir


def test_init_is_recorded_in_run_json_config_and_report(tmp_path, tiny_overrides, source):
    run = _train(
        tmp_path, "ft", tiny_overrides, **{"train.steps": 3, "train.init_from": str(source), "train.ema_half_life": 0.1}
    )
    src = (source / "checkpoints" / "final").resolve()
    meta = json.loads((run.dir / "run.json").read_text())
    assert meta["init_from"]["checkpoint"] == str(src)
    assert meta["init_from"]["step"] == 4 and meta["init_from"]["parts"] == ["g", "d", "ema"]
    # the config records the resolved checkpoint folder (not the run folder), so a re-run starts from the same weights
    assert gankit.training.rundir.load_run_config(run.dir).train.init_from == str(src)
    assert json.loads((run.dir / "checkpoints" / "final" / "state.json").read_text())["step"] == 3  # not 4 + 3
    from gankit.report import render

    html = render([run.dir], interpolation=False)
    assert "fine-tuned from" in html and "step 4" in html


def test_step_zero_is_the_source_and_training_moves_on(tmp_path, tiny_overrides, source):
    run = _train(
        tmp_path,
        "ft0",
        tiny_overrides,
        **{"train.steps": 2, "train.init_from": str(source), "train.init_parts": ["g", "d"], "train.keep_last": 5},
    )
    src = source / "checkpoints" / "final"
    zero = run.dir / "checkpoints" / "step-0000000"
    for stem in ("g", "d"):
        a, b = _tensors(src, stem), _tensors(zero, stem)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), stem
    # the optimizer starts fresh: Adam's step counter after 2 updates is 2, not the source's 4 + 2
    st = json.loads((run.dir / "checkpoints" / "final" / "state.json").read_text())
    steps = {v["step"] for v in st["optim"]["g"]["state"].values() if "step" in v}
    opt_t = _tensors(run.dir / "checkpoints" / "final", "optim_g")
    adam_steps = {float(v) for k, v in opt_t.items() if k.endswith(".step")} | {float(s) for s in steps}
    assert adam_steps == {2.0}
    fin = _tensors(run.dir / "checkpoints" / "final", "g")
    assert any(not torch.equal(fin[k], _tensors(src, "g")[k]) for k in fin if fin[k].is_floating_point())


def test_freeze_d_keeps_first_layers(tmp_path, tiny_overrides, source):
    run = _train(
        tmp_path, "frz", tiny_overrides, **{"train.steps": 3, "train.init_from": str(source), "train.freeze_d": 1}
    )
    a = _tensors(source / "checkpoints" / "final", "d")
    b = _tensors(run.dir / "checkpoints" / "final", "d")
    first = [k for k in a if k.endswith("weight") and a[k].ndim == 4][0]  # the layer that sees the images
    assert torch.equal(a[first], b[first])
    assert not torch.equal(a["head.weight"], b["head.weight"])


def test_resume_of_fine_tuned_run_is_exact_and_does_not_reinit(tmp_path, tiny_overrides, source):
    extra = {"train.init_from": str(source), "train.freeze_d": 1}
    straight = _train(tmp_path, "s", tiny_overrides, **{"train.steps": 6, **extra})
    half = _train(tmp_path, "h", tiny_overrides, **{"train.steps": 3, **extra})
    # the source changes after the fine-tuned run started: a resume must not read it again
    (source / "checkpoints" / "final" / "g.safetensors").rename(source / "g.moved")
    try:
        cfg = gankit.config.layering.resume_config(
            gankit.training.rundir.load_run_config(half.dir).to_dict(), {"train.steps": 6}
        )
        resumed = gankit.train(cfg, resume=str(half.dir))
    finally:
        (source / "g.moved").rename(source / "checkpoints" / "final" / "g.safetensors")
    for stem in ("g", "d"):
        a = _tensors(straight.dir / "checkpoints" / "final", stem)
        b = _tensors(resumed.dir / "checkpoints" / "final", stem)
        assert all(torch.equal(a[k], b[k]) for k in a), stem
    assert json.loads((resumed.dir / "run.json").read_text())["init_from"]["step"] == 4


def test_config_yaml_reruns_from_same_weights(tmp_path, tiny_overrides, source):
    first = _train(tmp_path, "a", tiny_overrides, **{"train.steps": 2, "train.init_from": str(source)})
    # (the saved config itself; `gankit train RUN/config.yaml` on the command line fails on main for every run, as
    # its model section lists keys of every model: a separate defect)
    gankit.train(gankit.training.rundir.load_run_config(first.dir), out=str(tmp_path / "b"))
    a = _tensors(first.dir / "checkpoints" / "final", "g")
    b = _tensors(tmp_path / "b" / "checkpoints" / "final", "g")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"model.z_dim": 9}, "tensor 'net.0."),
        ({"model.num_classes": 10}, "unconditional"),
        ({"data.channels": 3}, "set data.channels=1"),
        ({"model.name": "mlp", "model.g_hidden": [8], "model.d_hidden": [8]}, "fine-tune with --model dcgan"),
    ],
)
def test_incompatible_source_is_one_line(tmp_path, tiny_overrides, source, capsys, extra, needle):
    tiny = {
        k: v
        for k, v in tiny_overrides.items()
        if not (extra.get("model.name") == "mlp" and k in ("model.g_channels", "model.d_channels"))
    }
    sets = [
        f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in {**tiny, **extra, "train.steps": 1}.items()
    ]
    out = tmp_path / "x"
    rc = main(["train", "--init-from", str(source), "--out", str(out), *sum((["--set", s] for s in sets), [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("gankit: error: --init-from") and needle in err[0], err
    assert not out.exists()  # nothing left behind


def test_bad_init_sources_are_one_line(tmp_path, tiny_overrides, source, capsys):
    (tmp_path / "empty").mkdir()
    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(source / "checkpoints" / "final", damaged)
    with open(damaged / "g.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    for arg, needle in [
        (tmp_path / "nope", "no such run folder"),
        (tmp_path / "empty", "not a gankit run"),
        (damaged, "damaged"),
    ]:
        rc = main(["train", "--init-from", str(arg), "--steps", "1", "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and needle in err[0], err
        assert not (tmp_path / "o").exists()
    for bad in (["--init-parts", "g,x"], ["--freeze-d", "9"]):
        rc = main(
            [
                "train",
                "--init-from",
                str(source),
                *bad,
                "--steps",
                "1",
                "--out",
                str(tmp_path / "o"),
                *sum((["--set", f"{k}={v}"] for k, v in tiny_overrides.items()), []),
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and ("init_parts" in err[0] or "freeze_d" in err[0]), err


# ---------------------------------------------------------------------------------------------------------------------
# gradient accumulation


def _one_step(tiny: dict, **extra) -> dict[str, torch.Tensor]:
    cfg = resolve(overrides={**tiny, **extra})
    torch.manual_seed(0)
    data = load_dataset(cfg.data)
    task = GANTask(cfg, data, torch.device("cpu"))
    batcher = Batcher(data, cfg.train.batch_size, cfg.seed, torch.device("cpu"))
    seen: set[int] = set()
    task.d.register_forward_pre_hook(lambda m, args: seen.add(args[0].shape[0]))
    for _ in range(2):
        task.step(batcher, 0.0)
    assert seen == {cfg.train.batch_size // cfg.train.accumulate}  # D saw micro-batches only
    return {
        **{f"g.{k}": v for k, v in task.g.state_dict().items()},
        **{f"d.{k}": v for k, v in task.d.state_dict().items()},
    }


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"loss.name": "hinge", "train.d_steps": 2, "loss.r1_gamma": 1.0, "loss.r1_every": 1, "model.num_classes": 10},
    ],
    ids=["nonsat", "hinge-r1-conditional-dsteps2"],
)
def test_accumulate_equals_one_big_batch(tiny_overrides, extra):
    """N micro-batches of B/N give the update of one batch of B (BatchNorm off): equal to float32 rounding, since
    the sums run in another order."""
    base = {
        **tiny_overrides,
        "model.g_batchnorm": False,
        "model.d_batchnorm": False,
        "train.channels_last": False,
        **extra,
    }
    one = _one_step(base)
    four = _one_step(base, **{"train.accumulate": 4})
    assert one.keys() == four.keys()
    moved = False
    for k in one:
        torch.testing.assert_close(four[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
    ref = _one_step(base, **{"train.batch_size": 4})  # a check that can fail: a smaller batch is another update
    moved = any(not torch.allclose(ref[k], one[k], rtol=1e-5, atol=1e-6) for k in one if one[k].is_floating_point())
    assert moved


def test_accumulate_resume_is_exact(tmp_path, tiny_overrides):
    extra = {"train.accumulate": 2}
    straight = _train(tmp_path, "s", tiny_overrides, **{"train.steps": 6, **extra})
    half = _train(tmp_path, "h", tiny_overrides, **{"train.steps": 3, **extra})
    resumed = gankit.train(resolve(overrides={**tiny_overrides, **extra, "train.steps": 6}), resume=str(half.dir))
    for stem in ("g", "d"):
        a = _tensors(straight.dir / "checkpoints" / "final", stem)
        b = _tensors(resumed.dir / "checkpoints" / "final", stem)
        assert all(torch.equal(a[k], b[k]) for k in a), stem


@pytest.mark.parametrize("value, needle", [("0", "train.accumulate=0"), ("3", "divide train.batch_size=16")])
def test_bad_accumulate_is_one_line(tmp_path, tiny_overrides, capsys, value, needle):
    sets = [f"{k}={v}" for k, v in {**tiny_overrides, "train.accumulate": value}.items()]
    rc = main(["train", "--steps", "1", "--out", str(tmp_path / "o"), *sum((["--set", s] for s in sets), [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()


def test_resume_refuses_init_flags(tmp_path, tiny_overrides, source, capsys):
    half = _train(tmp_path, "h", tiny_overrides, **{"train.steps": 1})
    for extra in (["--init-from", str(source)], ["--set", "train.freeze_d=1"]):
        rc = main(["train", "--resume", str(half.dir), "--steps", "2", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "start a new run" in err[0], err


def test_sweep_with_init_from_resumes(tmp_path, tiny_overrides, source):
    """A sweep given a run folder as train.init_from records the checkpoint folder, and running it again (resume)
    finds the same config."""
    from gankit.sweep import run_sweep

    base = {**tiny_overrides, "train.steps": 1, "train.init_from": str(source)}
    first = run_sweep(None, {"seed": [0, 1]}, tmp_path / "sw", base, say=lambda m: None)
    assert all(r["status"] == "done" for r in first["runs"])
    (tmp_path / "sw" / first["runs"][0]["dir"] / "summary.json").unlink()  # as if stopped: the sweep resumes it
    again = run_sweep(None, {"seed": [0, 1]}, tmp_path / "sw", base, say=lambda m: None)
    assert all(r["status"] == "done" for r in again["runs"])
