from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import gankit
from gankit.cli import main
from gankit.config.layering import resolve
from gankit.data.splits import holdout_split
from gankit.data import load_dataset
from gankit.config import DataConfig


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    tiny = {
        "data.image_size": 16,
        "model.g_channels": 8,
        "model.d_channels": 8,
        "model.z_dim": 8,
        "train.batch_size": 32,
        "train.progress": False,
        "train.steps": 3,
        "train.threads": 1,
    }
    out = tmp_path_factory.mktemp("runs") / "digits"
    gankit.train(resolve(overrides=tiny), out=str(out))
    return out


def test_eval_run_writes_every_metric(digits_run, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["eval", str(digits_run), "--n", "300", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in [
        "fd",
        "kid_mean",
        "is_mean",
        "precision",
        "recall",
        "density",
        "coverage",
        "parzen_mean",
        "classes_hit",
        "label_kl_uniform",
        "nn_pixel_samples",
        "features_id",
        "n_samples",
    ]:
        assert key in res, key
    assert res["n_samples"] == 300 and res["fd"] > 0
    assert (digits_run / "memorisation.png").exists()
    assert "FD" in capsys.readouterr().out
    assert "Nearest training neighbours" in (digits_run / "report.html").read_text()  # eval refreshes the run's page


def test_eval_npy_samples_against_a_dataset(tmp_path):
    rng = np.random.default_rng(0)
    npy = tmp_path / "other_tool.npy"
    np.save(npy, rng.integers(0, 256, (200, 16, 16, 1), dtype=np.uint8))
    out = tmp_path / "r.json"
    assert main(["eval", "--samples", str(npy), "--data", "digits", "--no-parzen", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["n_samples"] == 200


@pytest.mark.parametrize(
    "content, needle",
    [
        (np.zeros((3, 4, 4, 2), np.uint8), "must be uint8 (N, H, W, C)"),
        (np.zeros((3, 8, 8, 1), np.float32), "must be uint8"),
    ],
)
def test_eval_npy_bad_arrays(tmp_path, capsys, content, needle):
    npy = tmp_path / "bad.npy"
    np.save(npy, content)
    assert main(["eval", "--samples", str(npy), "--data", "digits"]) == 2
    assert needle in capsys.readouterr().err


def test_holdout_is_a_fixed_random_disjoint_choice():
    data = load_dataset(DataConfig(name="digits", image_size=8))
    a, b = holdout_split(data, 100)
    a2, b2 = holdout_split(data, 100)
    assert len(a) + len(b) == len(data) and len(b) == 100
    assert (b.images == b2.images).all()
    # Not simply the tail of the split.
    assert not (b.images == data.images[-100:]).all()


def test_pix2pix_train_translate_eval(tmp_path):
    run = tmp_path / "p2p"
    cfg = resolve(
        overrides={
            "model.name": "pix2pix",
            "data.image_size": 32,
            "data.limit": 40,
            "model.g_channels": 8,
            "model.d_channels": 8,
            "model.patch": 16,
            "train.batch_size": 4,
            "train.steps": 2,
            "train.progress": False,
            "train.threads": 1,
        }
    )
    assert cfg.data.name == "sketch"
    gankit.train(cfg, out=str(run))
    sheets = sorted((run / "samples").glob("step-*.png"))
    assert sheets and Image.open(sheets[-1]).size[0] > 3 * 32
    assert any('"eval/psnr"' in line for line in (run / "metrics.jsonl").read_text().splitlines())
    inp = tmp_path / "in"
    inp.mkdir()
    Image.new("RGB", (70, 50), (200, 10, 10)).save(inp / "x.jpg")
    Image.new("L", (40, 40), 128).save(inp / "y.png")
    (inp / "notes.txt").write_text("ignored")
    assert main(["translate", str(run), str(inp), "--out", str(tmp_path / "out")]) == 0
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outs == ["x.png", "y.png"] and Image.open(tmp_path / "out" / "x.png").size == (32, 32)
    assert main(["eval", str(run), "--out", str(tmp_path / "pm.json")]) == 0
    res = json.loads((tmp_path / "pm.json").read_text())
    assert {"l1", "psnr", "ssim", "fd"} <= res.keys()
    # A GAN command on an image-to-image run says what to use instead.
    assert main(["sample", str(run), "--out", str(tmp_path / "s.png")]) == 2


def test_eval_every_logs_fd_and_keeps_best(tmp_path):
    cfg = resolve(
        overrides={
            "data.image_size": 16,
            "data.limit": 300,
            "model.g_channels": 8,
            "model.d_channels": 8,
            "model.z_dim": 8,
            "train.batch_size": 32,
            "train.progress": False,
            "train.steps": 4,
            "train.eval_every": 2,
            "train.threads": 1,
        }
    )
    run = gankit.train(cfg, out=str(tmp_path / "e"))
    rows = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    fds = [r for r in rows if "eval/fd" in r]
    assert [r["step"] for r in fds] == [2, 4] and all(r["eval/fd"] > 0 for r in fds)
    best = json.loads((run.dir / "checkpoints" / "best" / "state.json").read_text())
    assert best["best_value"] == pytest.approx(min(r["eval/fd"] for r in fds), rel=1e-6)
    assert gankit.load(str(run.dir), "best").sample(2).shape == (2, 1, 16, 16)


@pytest.mark.slow
def test_new_user_side_by_side_pairs_of_another_size(tmp_path):
    """512x256 side-by-side pairs in a plain folder train and translate with only --data paired --data-dir."""
    rng = np.random.default_rng(0)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for i in range(12):
        img = np.zeros((256, 512, 3), np.uint8)
        img[:, :256] = rng.integers(0, 256, 3)  # A: a flat colour
        img[:, 256:] = 255 - img[:, :256]  # B: its negative
        Image.fromarray(img).save(pairs / f"{i:02d}.jpg")
    run = tmp_path / "run"
    assert (
        main(
            ["train", "--data", "paired", "--data-dir", str(pairs), "--steps", "1", "--out", str(run), "--no-progress"]
        )
        == 0
    )
    cfg = json.loads((run / "run.json").read_text())
    assert cfg["image_shape"] == [3, 128, 128]
    assert main(["translate", str(run), str(pairs), "--out", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 12


@pytest.mark.parametrize("run_split, other", [("all", "test"), ("val", "test"), ("test", None)])
def test_eval_refuses_to_compare_with_images_the_run_trained_on(run_split, other):
    from gankit.data.splits import reference_data

    cfg = resolve(overrides={"data.split": run_split, "data.image_size": 16})
    with pytest.raises(gankit.GankitError, match="memorisation"):
        reference_data(cfg, other)


def test_collapse_monitor_ignores_wasserstein_losses():
    from gankit.training.parts import Monitor

    rows = [{"loss/d": -5.0, "loss/g": float(i)} for i in range(12)]
    wgan, bce = Monitor(window=10, enabled=False), Monitor(window=10)
    assert not any(wgan.update(i, r) for i, r in enumerate(rows))
    assert any(bce.update(i, {"loss/d": 1e-5, "loss/g": float(i)}) for i in range(12))


def write_idx(path, array: np.ndarray) -> None:
    """An IDX file (uint8 data): magic 0x08 type, ndim, big-endian dims, then the bytes; gzipped."""
    import gzip
    import struct

    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def test_eval_npy_with_only_the_test_split_cuts_it_for_the_classifier(tmp_path, monkeypatch):
    # A folder holding only MNIST's t10k files, as a folder with only the test split does (issue 14.13): here 80 tiny fakes.
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    digits = load_dataset(DataConfig(name="digits", image_size=28)).subset(slice(0, 80))
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte.gz", digits.images[:, 0].numpy())
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", digits.labels.numpy().astype(np.uint8))
    npy = tmp_path / "samples.npy"
    np.save(npy, digits.images[:30].permute(0, 2, 3, 1).numpy())
    out = tmp_path / "r.json"
    args = [
        "eval",
        "--samples",
        str(npy),
        "--data",
        "mnist",
        "--data-dir",
        str(folder),
        "--split",
        "test",
        "--no-parzen",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    res = json.loads(out.read_text())
    assert res["n_real_test"] == 40 and res["n_real_train"] == 40  # disjoint halves of the one split
    assert res["classifier_images"].startswith("mnist 'test' split, a fixed random 40 of its 80 images")
    assert res["features_id"].startswith("classifier-")
