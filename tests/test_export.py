"""Exported generators (TorchScript, ONNX through onnxruntime) match eager PyTorch at two batch sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gankit
from gankit.cli import main
from gankit.config.layering import resolve
from gankit.core.errors import GankitError
from gankit.export import exportable, export_generator, read_metadata

TINY = {
    "data.limit": 128,
    "data.image_size": 16,
    "train.batch_size": 16,
    "train.progress": False,
    "train.log_every": 2,
    "train.threads": 1,
    "train.steps": 3,
}
CONV = {"model.g_channels": 8, "model.d_channels": 8, "model.z_dim": 8}
RUNS = {
    "dcgan": {**CONV, "train.ema_half_life": 0.1},
    "conditional": {**CONV, "model.num_classes": 10},
    "mlp": {"model.name": "mlp", "model.g_hidden": [32], "model.d_hidden": [32], "model.z_dim": 8},
    "pix2pix": {
        "model.name": "pix2pix",
        "data.image_size": 32,
        "data.limit": 40,
        "model.patch": 16,
        "train.batch_size": 4,
        "train.steps": 2,
        "model.g_channels": 8,
        "model.d_channels": 8,
    },
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    return {k: gankit.train(resolve(overrides={**TINY, **v}), out=str(root / k)).dir for k, v in RUNS.items()}


def _inputs(ex, batch: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for x in ex.inputs:
        if x.dtype == torch.long:
            out.append(torch.randint(0, ex.metadata["num_classes"], (batch,), generator=g))
        else:
            out.append(torch.randn(batch, *x.shape[1:], generator=g).clamp(-1, 1))
    return out


def _run_exported(path: Path, fmt: str, names: list[str], inputs: list[torch.Tensor]) -> torch.Tensor:
    if fmt == "torchscript":
        return torch.jit.load(str(path))(*inputs)
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == names
    return torch.from_numpy(sess.run(["images"], {n: x.numpy() for n, x in zip(names, inputs)})[0])


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
@pytest.mark.parametrize("kind", list(RUNS))
def test_exported_matches_eager(runs, tmp_path, kind, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxscript")
    path = export_generator(runs[kind], fmt, tmp_path / f"g.{'onnx' if fmt == 'onnx' else 'pt'}")
    ex = exportable(runs[kind])
    meta = read_metadata(path)
    assert meta["value_range"] == [-1.0, 1.0] and meta["inputs"] == ex.input_names
    if kind == "pix2pix":
        assert meta["kind"] == "pix2pix" and meta["image_shape"] == [3, 32, 32] and meta["input_shape"] == [1, 32, 32]
    else:
        assert meta["z_dim"] == 8 and meta["image_shape"] == [1, 16, 16] and meta["noise"] == "normal"
        assert meta["num_classes"] == (10 if kind == "conditional" else 0)
        assert ex.input_names == (["z", "labels"] if kind == "conditional" else ["z"])
    for batch in (1, 5):  # neither is the batch of 2 the graph was traced/exported with
        x = _inputs(ex, batch, seed=batch)
        with torch.no_grad():
            want = ex.module(*x)
        got = _run_exported(path, fmt, ex.input_names, x)
        assert got.shape == want.shape and got.shape[0] == batch
        assert (got - want).abs().max().item() <= 1e-4


def test_export_uses_the_ema_generator(runs):
    ex = exportable(runs["dcgan"])
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ex.module(z), gankit.load(runs["dcgan"]).generate(z))


def test_export_cli_and_errors(runs, tmp_path, capsys):
    out = tmp_path / "g.pt"
    assert main(["export", str(runs["conditional"]), "--format", "torchscript", "--out", str(out)]) == 0
    assert "inputs z, labels" in capsys.readouterr().out and out.is_file()
    assert main(["export", str(runs["mlp"]), "--format", "tflite", "--out", str(out)]) == 2
    assert main(["export", str(tmp_path), "--format", "onnx", "--out", str(out)]) == 2  # not a run
    with pytest.raises(GankitError, match="folder"):
        export_generator(runs["mlp"], "torchscript", tmp_path)


@pytest.mark.slow
def test_documented_numpy_snippet_draws_samples(runs, tmp_path, monkeypatch):
    """The README's numpy + onnxruntime example runs as written against an exported conditional generator."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    root = Path(__file__).resolve().parent.parent
    blocks = [
        b.split("\n", 1)[1]
        for f in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
        if f.is_file()
        for b in f.read_text().split("```python")[1:]
    ]
    snippet = next(code for code in (b.split("```")[0] for b in blocks) if "onnxruntime" in code)
    assert "gankit" not in snippet and "torch" not in snippet  # it must work without either
    export_generator(runs["conditional"], "onnx", tmp_path / "g.onnx")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README snippet", "exec"), {})
    from PIL import Image

    assert Image.open(tmp_path / "row.png").size == (16 * 16, 16)
