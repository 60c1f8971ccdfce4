from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import gankit
from gankit.cli import main
from gankit.config.layering import resolve
from gankit.data.base import to_uint8


def _for_model(tiny, extra):
    if str(extra.get("model.name", "")).startswith(
        "mlp"
    ):  # an MLP has no conv widths (a key it does not read is an error)
        tiny = {k: v for k, v in tiny.items() if k not in ("model.g_channels", "model.d_channels")}
    return {**tiny, **extra}


def _train(tmp_path, name, tiny, **extra):
    cfg = resolve(overrides=_for_model(tiny, extra))
    return gankit.train(cfg, out=str(tmp_path / name))


def test_run_folder_has_every_file(tmp_path, tiny_overrides):
    run = _train(
        tmp_path, "r", tiny_overrides, **{"train.steps": 10, "train.sample_every": 4, "train.checkpoint_every": 5}
    )
    d = run.dir
    for f in ["config.yaml", "metrics.jsonl", "progress.gif", "losses.png", "summary.json", "checkpoints/latest"]:
        assert (d / f).exists(), f
    assert sorted(p.name for p in (d / "samples").glob("step-*.png"))[-1] == "step-0000010.png"
    assert {p.name for p in (d / "checkpoints").iterdir()} >= {"final", "step-0000005", "step-0000010"}
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 10 and np.isfinite(rows[-1]["loss/d"]) and rows[-1]["images_per_s"] > 0
    assert Image.open(d / "progress.gif").n_frames >= 3
    assert json.loads((d / "summary.json").read_text())["stopped_by"] == "steps"


def _weights(run_dir):
    final = run_dir / "checkpoints" / "final"
    return {
        f"{f.stem}.{k}": v
        for f in sorted(final.glob("*.safetensors"))
        if f.stem in ("g", "ema")
        for k, v in load_file(str(f)).items()
    }


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"loss.name": "wgan-gp", "train.d_steps": 3, "model.d_batchnorm": False},
        {
            "model.name": "mlp",
            "model.g_hidden": [32],
            "model.d_hidden": [32],
            "model.g_dropout": 0.2,
            "train.ema_half_life": 0.1,
        },
        {"model.num_classes": 10, "loss.name": "lsgan", "loss.label_smoothing": 0.1},
        {"train.augment": "ada", "train.ada_kimg": 1, "loss.r1_gamma": 1.0, "loss.r1_every": 2},
        {"train.augment": "color,translation,cutout", "model.num_classes": 10},
        {"train.ema_half_life": 0.1, "model.num_classes": 10},
    ],
    ids=[
        "dcgan",
        "wgan-gp-ncritic3",
        "mlp-dropout-ema",
        "conditional-lsgan-smoothing",
        "ada-lazy-r1",
        "diffaugment",
        "conditional-dcgan-ema",
    ],
)
def test_resume_is_bit_exact(tmp_path, tiny_overrides, extra):
    straight = _train(tmp_path, "straight", tiny_overrides, **{"train.steps": 12, **extra})
    half = _train(tmp_path, "half", tiny_overrides, **{"train.steps": 5, **extra})
    cfg = resolve(overrides=_for_model(tiny_overrides, {"train.steps": 12, **extra}))
    resumed = gankit.train(cfg, resume=str(half.dir))
    assert resumed.step == 12
    a, b = _weights(straight.dir), _weights(resumed.dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The logged losses after the resume point are identical too.
    rows = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if '"loss/d"' in x]  # noqa: E731
    after = {r["step"]: r["loss/d"] for r in rows(straight.dir) if r["step"] > 5}
    again = {r["step"]: r["loss/d"] for r in rows(resumed.dir) if r["step"] > 5}
    assert after == again and after
    # And the samples of both runs match.
    assert torch.equal(gankit.load(straight.dir).sample(8, seed=3), gankit.load(resumed.dir).sample(8, seed=3))


def test_ema_has_its_own_batchnorm_statistics(tmp_path, tiny_overrides):
    """The averaged G is saved with BatchNorm statistics of its own outputs, not the live G's (see tasks/gan.py EMA)."""
    run = _train(tmp_path, "ema", tiny_overrides, **{"train.steps": 8, "train.ema_half_life": 0.1, "optim.lr_g": 0.01})
    loaded = gankit.load(run.dir)
    ema = loaded.g
    live = load_file(str(run.dir / "checkpoints" / "final" / "g.safetensors"))
    norms = {n: m for n, m in ema.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    seen = {}

    def keep(name):
        def hook(module, inp, out) -> None:  # returns None: the module's output is left as it is
            seen[name] = inp[0].var(dim=(0, 2, 3))

        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in norms.items()]
    ema.train()
    with torch.no_grad():  # the average's own activations on fresh noise, in batch-statistics mode
        ema(loaded.noise(4096, seed=7), None)
    for h in hooks:
        h.remove()
    assert norms and seen.keys() == norms.keys()
    rel = lambda var, name: ((var - seen[name]).abs() / seen[name]).max().item()  # noqa: E731
    own = max(rel(m.running_var, n) for n, m in norms.items())
    borrowed = max(rel(live[f"{n}.running_var"], n) for n in norms)
    assert own < 0.1 and borrowed > 3 * own, (own, borrowed)


def test_sample_api_and_cli(tmp_path, tiny_overrides):
    run = _train(tmp_path, "r", tiny_overrides, **{"train.steps": 3})
    g = gankit.load(str(run.dir))
    x = g.sample(16, seed=0)
    assert x.shape == (16, 1, 16, 16) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, g.sample(16, seed=0)) and not torch.equal(x, g.sample(16, seed=1))
    npy = tmp_path / "s.npy"
    assert main(["sample", str(run.dir), "--n", "20", "--out", str(npy)]) == 0
    arr = np.load(npy, allow_pickle=False)
    assert arr.shape == (20, 16, 16, 1) and arr.dtype == np.uint8
    assert not (tmp_path / "s.labels.npy").exists()  # an unconditional G has no classes to record
    assert main(["sample", str(run.dir), "--n", "20", "--out", str(tmp_path / "again.npy")]) == 0
    assert np.array_equal(arr, np.load(tmp_path / "again.npy"))
    png = tmp_path / "grid.png"
    assert main(["sample", str(run.dir), "--n", "9", "--out", str(png)]) == 0
    assert Image.open(png).size[0] > 16 * 3
    lerp = tmp_path / "lerp.png"
    assert main(["interpolate", str(run.dir), "--steps", "5", "--rows", "2", "--out", str(lerp), "--slerp"]) == 0
    assert lerp.exists()


def test_conditional_class_sampling(tmp_path, tiny_overrides):
    run = _train(tmp_path, "c", tiny_overrides, **{"train.steps": 2, "model.num_classes": 10})
    assert list((run.dir / "samples").glob("classes-*.png"))
    out = tmp_path / "three.npy"
    assert main(["sample", str(run.dir), "--n", "4", "--class", "3", "--out", str(out)]) == 0
    assert main(["sample", str(run.dir), "--n", "4", "--class", "12", "--out", str(tmp_path / "twelve.npy")]) == 2
    # without --class, samples take the classes in the training images' proportions (128 digits: not equal counts)
    from gankit.data import load_dataset
    from gankit.tasks import load

    cfg = resolve(overrides=_for_model(tiny_overrides, {"model.num_classes": 10}))
    counts = torch.bincount(load_dataset(cfg.data).labels, minlength=10)
    assert len(set(counts.tolist())) > 1
    gen = load(run.dir)
    assert gen.class_counts == counts.tolist()
    drawn = torch.bincount(gen.labels(1000), minlength=10)
    assert (drawn - 1000 * counts / counts.sum()).abs().max() <= 1
    # the .npy's classes lie beside it, row for row: those drawn above, or the one asked for
    assert np.load(tmp_path / "three.labels.npy").tolist() == [3] * 4
    assert main(["sample", str(run.dir), "--n", "50", "--seed", "2", "--out", str(tmp_path / "mix.npy")]) == 0
    labels = np.load(tmp_path / "mix.labels.npy", allow_pickle=False)
    assert labels.tolist() == gen.labels(50).tolist() and labels.dtype == np.int64
    images = np.load(tmp_path / "mix.npy")
    again = gen.generate(gen.noise(50, 2), torch.from_numpy(labels))
    assert np.array_equal(images, to_uint8(again).permute(0, 2, 3, 1).numpy())
    # an existing labels file is not overwritten without --force, and nothing is written
    (tmp_path / "new.labels.npy").write_bytes(b"keep")
    assert main(["sample", str(run.dir), "--n", "4", "--out", str(tmp_path / "new.npy")]) == 2
    assert not (tmp_path / "new.npy").exists() and (tmp_path / "new.labels.npy").read_bytes() == b"keep"
    assert main(["sample", str(run.dir), "--n", "4", "--out", str(tmp_path / "new.npy"), "--force"]) == 0
    assert np.load(tmp_path / "new.labels.npy").shape == (4,)


def test_classes_without_images_are_never_drawn(tmp_path, tiny_overrides):
    from gankit.tasks import load

    run = _train(tmp_path, "c12", tiny_overrides, **{"train.steps": 1, "model.num_classes": 12})  # digits has 10
    labels = load(run.dir).labels(500)
    assert set(labels.tolist()) == set(range(10))


def test_class_sequence_keeps_proportions_in_every_prefix():
    from gankit.tasks.gan import class_sequence

    assert class_sequence([5, 5, 5], 7).tolist() == [0, 1, 2, 0, 1, 2, 0]  # equal counts: classes in turn
    counts = torch.tensor([30, 0, 10, 60])
    seq = class_sequence(counts.tolist(), 500)
    assert 1 not in seq.tolist()  # a class with no training images is never drawn
    for n in (1, 9, 100, 333, 500):
        drawn = torch.bincount(seq[:n], minlength=4)
        assert torch.equal(class_sequence(counts.tolist(), n), seq[:n])
        assert (drawn - n * counts / counts.sum()).abs().max() < 1, (n, drawn)


def test_nan_stops_with_exit_3_and_keeps_checkpoint(tmp_path, tiny_overrides, capsys):
    # A learning rate this large overflows within a few steps.
    args = [
        "train",
        "--steps",
        "50",
        "--out",
        str(tmp_path / "nan"),
        "--set",
        "optim.lr_g=1e30",
        "--set",
        "optim.lr_d=1e30",
        "--set",
        "optim.name=sgd",
        "--no-progress",
    ]
    for k, v in tiny_overrides.items():
        args += ["--set", f"{k}={json.dumps(v) if not isinstance(v, bool) else str(v).lower()}"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "diverged at step" in err and "Traceback" not in err
    ck = tmp_path / "nan" / "checkpoints" / "step-0000000"
    assert (ck / "state.json").exists()


def test_nan_rollback_lowers_lr(tmp_path, tiny_overrides):
    cfg = resolve(
        overrides={
            **tiny_overrides,
            "train.steps": 6,
            "optim.name": "sgd",
            "optim.lr_g": 1e30,
            "optim.lr_d": 1e30,
            "train.on_nan": "rollback",
            "train.nan_max_rollbacks": 2,
        }
    )
    with pytest.raises(gankit.GankitError, match="diverged"):
        gankit.train(cfg, out=str(tmp_path / "rb"))
    events = [json.loads(x) for x in (tmp_path / "rb" / "metrics.jsonl").read_text().splitlines() if "rollback" in x]
    assert [e["lr_scale"] for e in events] == [0.5, 0.25]


def test_augmentation_state_is_checkpointed_and_logged(tmp_path, tiny_overrides):
    run = _train(
        tmp_path,
        "ada",
        tiny_overrides,
        **{"train.steps": 8, "train.augment": "ada", "train.ada_kimg": 0.5, "loss.r1_gamma": 1.0, "loss.r1_every": 1},
    )
    state = json.loads((run.dir / "checkpoints" / "final" / "state.json").read_text())
    assert state["task"]["d_updates"] == 8 and 0 < state["task"]["augment"]["p"] <= 1  # p moved off its start of 0
    rows = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert any("aug/p" in r for r in rows) and any(r.get("r1", 0) > 0 for r in rows)


def test_strong_augmentation_does_not_leak_into_samples(tmp_path, tiny_overrides):
    """DiffAugment's promise: D sees cutout squares on every real and fake image, G never learns to draw them.
    Measured with cutout_score (the share of images holding a flat square of the cutout's size)."""
    from gankit.data import load_dataset
    from gankit.data.augment import build_augment, cutout_score
    from gankit.data.base import to_float

    run = _train(
        tmp_path,
        "leak",
        tiny_overrides,
        **{"train.steps": 150, "train.augment": "cutout", "train.batch_size": 32, "optim.lr_g": 5e-4},
    )
    samples = gankit.load(str(run.dir)).sample(128, seed=1)
    reals = to_float(load_dataset(resolve(overrides=tiny_overrides).data).images[:128])
    augmented = build_augment("cutout", seed=0)(reals)
    assert cutout_score(augmented) > 0.8  # the measure sees the squares where they are
    assert cutout_score(samples) < 0.1, cutout_score(samples)


def test_run_writes_a_report_and_tensorboard_events(tmp_path, tiny_overrides):
    pytest.importorskip("tensorboard")
    run = _train(tmp_path, "tb", tiny_overrides, **{"train.steps": 4, "train.tensorboard": True})
    assert (run.dir / "report.html").is_file() and "<html" in (run.dir / "report.html").read_text()[:200].lower()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.dir / "tensorboard"))
    events.Reload()
    assert "loss/d" in events.Tags()["scalars"] and events.Tags()["images"]


def test_final_is_a_copy_of_the_last_checkpoint(tmp_path, tiny_overrides, capsys):
    """The last step is serialised once; `final` holds the same bytes in files of its own (not hard links), so one
    damaged file cannot damage both, and loading falls back from either to the other (#31)."""
    from gankit.training import checkpoint

    run = _train(tmp_path, "fin", tiny_overrides, **{"train.steps": 7, "train.checkpoint_every": 5})
    ck = run.dir / "checkpoints"
    for f in (ck / "final").iterdir():
        twin = ck / "step-0000007" / f.name
        assert f.stat().st_ino != twin.stat().st_ino and f.read_bytes() == twin.read_bytes(), f.name
    assert checkpoint.latest_name(ck) == "final" and checkpoint.load_latest(ck).step == 7
    data = bytearray((ck / "final" / "g.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (ck / "final" / "g.safetensors").write_bytes(bytes(data))
    said = []
    loaded = checkpoint.load_latest(ck, say=said.append)
    assert loaded.step == 7 and loaded.path.name == "step-0000007"
    assert said[-1] == f"warning: using checkpoint step-0000007 (step 7) of {ck}: the 1 tried before it are damaged"
