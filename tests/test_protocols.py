"""FID protocols (legacy-tensorflow, clean) and reference statistics files, on a stand-in TorchScript network that the
test builds with the call interface of inception-2015-12-05.pt (no download, no real Inception)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from gankit.cli import main
from gankit.core.errors import GankitError
from gankit.data.base import ImageData
from gankit.metrics import InceptionFeatures, score_samples
from gankit.metrics.protocols import read_ref_stats, write_ref_stats


class Layers(nn.Module):
    """(B, 3, 299, 299) in [-1, 1] -> (B, 8, 1, 1): a tiny network standing in for Inception's layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 9, stride=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(torch.tanh(self.conv(x)) + 0.1 * self.conv(x), 1)


class StandIn(nn.Module):
    """forward(x in [0, 255] any size, return_features) as the real file: resizes (bilinear), scales, then layers."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = Layers()
        self.output = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor, return_features: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        f = self.layers((x - 128.0) / 128.0).reshape(x.shape[0], -1)
        if return_features:
            return f
        return torch.softmax(F.linear(f, self.output.weight), dim=1)


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("net") / "standin.pt"
    torch.jit.script(StandIn().eval()).save(str(path))
    return path


def _images(n: int, seed: int, size: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    return torch.cat([base, base // 2, 255 - base], dim=1)  # RGB with correlated channels


def _unlabelled(x: torch.Tensor) -> ImageData:
    return ImageData(x, torch.full((x.shape[0],), -1, dtype=torch.long), "test")


def _numpy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook FID formula with scipy's sqrtm, in float64: an independent check of gankit's eigenvalue route."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _reference_features(net: torch.jit.ScriptModule, x: torch.Tensor, protocol: str) -> np.ndarray:
    """Features computed here, without gankit: the clean resize written out with PIL, channel by channel."""
    with torch.no_grad():
        if protocol == "legacy-tensorflow":
            return net(x.float(), return_features=True).double().numpy()
        planes = np.stack(
            [
                [
                    np.asarray(
                        Image.fromarray(img[c].numpy().astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC)
                    )
                    for c in range(3)
                ]
                for img in x
            ]
        )
        y = torch.from_numpy(np.clip(planes, 0, 255).astype(np.float32))
        return net.layers((y - 128) / 128).reshape(len(x), -1).double().numpy()


@pytest.mark.parametrize("protocol", ["legacy-tensorflow", "clean"])
def test_fd_matches_independent_numpy(standin, protocol):
    fake, real = _images(24, 1), _images(30, 2)
    res = score_samples(
        fake,
        _unlabelled(real),
        _unlabelled(real),
        extractor=InceptionFeatures(standin, protocol),
        parzen=False,
        progress=False,
    )
    net = torch.jit.load(str(standin))
    want = _numpy_fd(_reference_features(net, fake, protocol), _reference_features(net, real, protocol))
    assert res["fd"] == pytest.approx(want, rel=1e-6)
    assert res["protocol"] == protocol and res["features_sha256"] and res["fd_reference"] == "images"
    assert res["resize"].startswith("PIL bicubic" if protocol == "clean" else "network's own")


def test_protocols_differ(standin):
    """The two resizes give different features (else the protocol name would be decoration)."""
    x = _images(4, 3)
    a, _ = InceptionFeatures(standin, "legacy-tensorflow")(x)
    b, _ = InceptionFeatures(standin, "clean")(x)
    assert not np.allclose(a, b, rtol=1e-3)


def test_ref_stats_round_trip_and_fd_against_them(tmp_path, standin):
    fake, real = _images(24, 1), _images(30, 2)
    ext = InceptionFeatures(standin, "clean")
    path = tmp_path / "ref.npz"
    a = score_samples(
        fake, _unlabelled(real), _unlabelled(real), extractor=ext, parzen=False, progress=False, save_ref_stats=path
    )
    ref = read_ref_stats(path, "clean")
    assert ref.protocol == "clean" and ref.n == 30 and ref.features_id == ext.identity
    with np.load(path, allow_pickle=False) as z:  # the published layout: mu (F,), sigma (F, F), float64
        assert z["mu"].shape == (8,) and z["sigma"].shape == (8, 8) and z["mu"].dtype == np.float64
    b = score_samples(
        fake, _unlabelled(real), _unlabelled(real), extractor=ext, parzen=False, progress=False, ref_stats=ref
    )
    assert b["fd"] == pytest.approx(a["fd"], rel=1e-12) and str(path) in b["fd_reference"]
    with pytest.raises(GankitError, match="protocol 'clean'"):
        read_ref_stats(path, "legacy-tensorflow")
    with pytest.raises(GankitError, match="protocol 'clean'.*--protocol clean"):
        score_samples(
            fake,
            _unlabelled(real),
            _unlabelled(real),
            extractor=InceptionFeatures(standin),
            parzen=False,
            progress=False,
            ref_stats=ref,
        )


def _npz(path: Path, **arrays) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(
    "arrays, needle",
    [
        ({"mu": np.array([{"x": 1}], dtype=object), "sigma": np.eye(1)}, "pickled"),
        ({"mean": np.zeros(3), "sigma": np.eye(3)}, "no 'mu' array"),
        ({"mu": np.zeros(3)}, "no 'sigma' array"),
        ({"mu": np.zeros(3), "sigma": np.eye(4)}, "expected (F,) and (F, F)"),
        ({"mu": np.array([0.0, np.nan]), "sigma": np.eye(2)}, "NaN"),
        ({"mu": np.zeros(2), "sigma": np.array([[1.0, np.inf], [0, 1]])}, "NaN or Inf"),
    ],
)
def test_bad_ref_stats_are_one_line(tmp_path, arrays, needle):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(GankitError) as e:
        read_ref_stats(path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_foreign_file_without_records_is_read(tmp_path):
    """A published file holds only mu and sigma; it is read (with float32 arrays, as some are)."""
    path = _npz(tmp_path / "pub.npz", mu=np.ones(4, np.float32), sigma=np.eye(4, dtype=np.float32))
    ref = read_ref_stats(path, "clean")
    assert ref.protocol is None and ref.mu.dtype == np.float64 and ref.sigma.shape == (4, 4)
    with pytest.raises(GankitError, match="ending in .npz"):
        write_ref_stats(tmp_path / "x.npy", ref.mu, ref.sigma, protocol="clean", features_id="x", n=2)


def test_cli_refuses_bad_protocol_and_pickles(tmp_path, capsys):
    samples = tmp_path / "s.npy"
    np.save(samples, np.zeros((4, 8, 8, 1), np.uint8))
    pickled = _npz(tmp_path / "p.npz", mu=np.array([None], dtype=object), sigma=np.eye(1))
    cases = [
        (["--features", "inception", "--protocol", "cleen"], "unknown FID protocol 'cleen' (did you mean 'clean'?)"),
        (["--protocol", "clean"], "add --features inception"),
        (["--features", "inception", "--ref-stats", str(pickled)], "pickled"),
        (["--save-ref-stats", str(tmp_path / "r.txt")], "ending in .npz"),
    ]
    for extra, needle in cases:
        rc = main(["eval", "--samples", str(samples), "--data", "digits", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "s.metrics.json").exists()


def test_run_eval_records_protocol(tmp_path, tiny_overrides, standin):
    """`gankit eval RUN --features inception --protocol clean` writes the protocol, N, split and file hash into
    metrics.json."""
    import gankit
    from gankit.config.layering import resolve

    run = gankit.train(
        resolve(overrides={**tiny_overrides, "train.steps": 1, "data.holdout": 40}), out=str(tmp_path / "r")
    )
    rc = main(
        [
            "eval",
            str(run.dir),
            "--n",
            "20",
            "--features",
            "inception",
            "--inception",
            str(standin),
            "--protocol",
            "clean",
            "--no-parzen",
            "--save-ref-stats",
            str(tmp_path / "ref.npz"),
        ]
    )
    assert rc == 0
    res = json.loads((run.dir / "metrics.json").read_text())
    assert res["protocol"] == "clean" and res["n_samples"] == 20 and res["split"] == "holdout"
    assert len(res["features_sha256"]) == 64 and read_ref_stats(tmp_path / "ref.npz").n == 40


def test_compare_warns_when_protocols_differ(tmp_path):
    from gankit.compare import compare

    base = {
        "fd": 1.0,
        "features": "inception",
        "features_id": "inception-ab",
        "n_samples": 100,
        "split": "test",
        "fd_reference": "images",
    }
    for name, proto in (("a", "clean"), ("b", "legacy-tensorflow"), ("c", "clean")):
        d = tmp_path / name
        d.mkdir()
        (d / "config.yaml").write_text(f"seed: {ord(name)}\n")
        (d / "metrics.json").write_text(json.dumps({**base, "protocol": proto}))
    files = compare([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "cmp")
    md = files["summary"].read_text()
    assert "protocol clean" in md and "protocol legacy-tensorflow" in md and "**Warning:**" in md
    assert md.count("metrics not comparable") == 2
    html = files["report"].read_text()
    assert "eval protocol" in html and "not comparable" in html
    same = compare([str(tmp_path / "a"), str(tmp_path / "c")], tmp_path / "cmp2")
    assert "not comparable" not in same["summary"].read_text() and "not comparable" not in same["report"].read_text()


def test_ref_stats_must_be_a_regular_file(tmp_path):
    with pytest.raises(GankitError, match="--ref-stats"):
        read_ref_stats(tmp_path / "missing.npz")
    with pytest.raises(GankitError, match="--ref-stats"):
        read_ref_stats("/dev/zero")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(GankitError, match="not an .npz"):
        read_ref_stats(tmp_path / "junk.npz")
    import pickle

    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"mu": [0.0], "sigma": [[1.0]]}))
    with pytest.raises(GankitError, match="a pickle, which is never loaded"):
        read_ref_stats(tmp_path / "pickle.npz")
