"""CycleGAN (issue 28): the nets, the pure losses, the image pool, the unpaired readers, exact resume, translate in
both directions, eval, export and the report, on tiny 16x16 runs of the embedded unpaired set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import gankit
from gankit.cli import main
from gankit.config import Config
from gankit.config.schema import DataConfig
from gankit.config.layering import resolve
from gankit.core.errors import GankitError
from gankit.data import load_dataset
from gankit.data.unpaired import domain_mask, interleave
from gankit.export import exportable, export_generator, read_metadata
from gankit.nets.cyclegan import ResnetGenerator
from gankit.tasks import Translator, load
from gankit.tasks.cyclegan import CycleTranslator, ImagePool, cycle_loss, identity_loss

# pool_size 3 with batches of 2: the pool is full after two steps, so later steps swap fakes (and resume must carry
# the pool's contents).
TINY = {
    "model.name": "cyclegan",
    "data.image_size": 16,
    "data.limit": 48,
    "model.g_channels": 4,
    "model.d_channels": 4,
    "model.g_blocks": 1,
    "model.patch": 16,
    "model.pool_size": 3,
    "train.batch_size": 2,
    "train.threads": 1,
    "train.progress": False,
    "train.log_every": 1,
    "train.checkpoint_every": 3,
    "train.sample_every": 3,
    "optim.lr_decay": "none",
}
# lr_decay none: the linear decay follows the budget (steps / train.steps), so a 3-step run resumed to 6 steps would
# decay on another schedule than a 6-step run, in every gankit family.


def _cfg(**over) -> Config:
    return resolve(overrides={**TINY, **over})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return gankit.train(_cfg(**{"train.steps": 6}), out=str(tmp_path_factory.mktemp("cg") / "run")).dir


def _tensors(run: Path, which: str = "final") -> dict[str, torch.Tensor]:
    ck = run / "checkpoints" / which
    return {
        f"{m}.{k}": v
        for m in ("g", "d", "pool", "optim_g", "optim_d")
        for k, v in load_file(str(ck / f"{m}.safetensors")).items()
    }


def test_generator_shapes_and_defaults():
    g = ResnetGenerator(3, 3, channels=4, blocks=2)
    assert g(torch.zeros(2, 3, 16, 24)).shape == (2, 3, 16, 24)  # fully convolutional, any sides divisible by 4
    with pytest.raises(ValueError):
        g(torch.zeros(1, 3, 18, 16))
    cfg = resolve(overrides={"model.name": "cyclegan"})  # the embedded default and the paper's recipe
    assert (cfg.data.name, cfg.loss.name, cfg.optim.lr_decay, cfg.model.norm) == (
        "sketch_unpaired",
        "lsgan",
        "linear",
        "instance",
    )
    assert (cfg.loss.cycle_weight, cfg.loss.identity_weight, cfg.model.pool_size) == (10.0, 0.5, 50)
    with pytest.raises(GankitError, match="multiple of 4"):
        _cfg(**{"data.image_size": 18})
    with pytest.raises(GankitError, match="not one"):
        resolve(overrides={"model.name": "cyclegan", "data.name": "sketch"})


def test_losses_by_hand():
    x = torch.tensor([[[[0.5, -1.0]]]])
    y = torch.tensor([[[[0.0, 1.0]]]])
    assert cycle_loss(x, y).item() == pytest.approx((0.5 + 2.0) / 2)
    assert identity_loss(y, y).item() == 0.0


def test_pool_fills_then_swaps_half():
    pool = ImagePool(2, (1, 1, 1))
    gen = torch.Generator().manual_seed(0)
    first = pool.query(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1), gen)
    assert first.flatten().tolist() == [1.0, 2.0] and int(pool.count) == 2  # not full yet: stored and passed on
    seen = []
    for i in range(50):
        out = pool.query(torch.full((1, 1, 1, 1), 100.0 + i), gen)
        seen.append(float(out))
    swapped = [v for i, v in enumerate(seen) if v != 100.0 + i]
    assert 10 < len(swapped) < 40  # about half are swapped for an older fake, always one that was stored
    assert all(v in (1.0, 2.0) or 100 <= v < 100 + 50 for v in swapped)
    assert ImagePool(0, (1, 1, 1)).query(first, gen).equal(first)


def test_unpaired_folder_reader(tmp_path):
    for d, n, colour in (("A", 3, (200, 0, 0)), ("B", 5, (0, 0, 200))):
        (tmp_path / d).mkdir()
        for i in range(n):
            Image.new("RGB", (20, 24), colour).save(tmp_path / d / f"{i}.png")
    (tmp_path / "A" / "notes.txt").write_text("not an image")
    data = load_dataset(DataConfig(name="unpaired", dir=str(tmp_path), image_size=16))
    assert data.images.shape == (8, 3, 16, 16) and data.class_names == ["A", "B"]
    assert data.labels.tolist() == [0, 1, 0, 1, 0, 1, 1, 1]  # interleaved, so data.limit keeps both domains
    assert (
        int(data.images[domain_mask(data, 0)][:, 0].min()) == 200
        and int(data.images[domain_mask(data, 1)][:, 2].min()) == 200
    )
    assert interleave(1, 3) == [(0, 0), (1, 0), (1, 1), (1, 2)]
    limited = load_dataset(DataConfig(name="unpaired", dir=str(tmp_path), image_size=16, limit=4))
    assert limited.labels.tolist() == [0, 1, 0, 1]


def test_embedded_set_breaks_the_pairing():
    cfg = _cfg(**{"data.limit": 0})
    train = load_dataset(cfg.data)
    assert len(domain_mask(train, 0)) == len(domain_mask(train, 1)) == 300 and train.images.shape[1] == 3
    a = train.images[domain_mask(train, 0)]
    assert bool((a[:, 0] == a[:, 1]).all())  # sketches: grey, stored as 3 equal channels


def test_resume_is_exact(run, tmp_path):
    """6 steps straight == 3 steps, then a resume for 3 more: every weight, optimizer moment and pooled fake."""
    straight = run
    part = gankit.train(_cfg(**{"train.steps": 3}), out=str(tmp_path / "part")).dir
    pool = load_file(str(part / "checkpoints" / "final" / "pool.safetensors"))
    assert int(pool["0.count"]) == 3 and int(pool["1.count"]) == 3  # full: steps after the resume swap
    gankit.train(_cfg(**{"train.steps": 6}), resume=str(part))
    a, b = _tensors(straight), _tensors(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = lambda r: [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    loss = lambda r: [(x["step"], x["loss/g"]) for x in rows(r) if "loss/g" in x]  # noqa: E731
    assert loss(straight) == loss(part)


def test_fp16_resumes_exactly_with_a_scaler_per_optimizer(tmp_path):
    """Under fp16 each optimizer (both generators, both discriminators) scales its loss through the base class's
    update, with a loss scaler of its own that checkpoints carry: a resume is exact."""
    fp16 = {"train.precision": "fp16", "train.checkpoint_every": 1}
    straight = gankit.train(_cfg(**fp16, **{"train.steps": 2}), out=str(tmp_path / "straight")).dir
    part = gankit.train(_cfg(**fp16, **{"train.steps": 1}), out=str(tmp_path / "part")).dir
    gankit.train(_cfg(**fp16, **{"train.steps": 2}), resume=str(part))
    a, b = _tensors(straight), _tensors(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state = json.loads((straight / "checkpoints" / "final" / "state.json").read_text())
    assert set(state["task"]["scalers"]) == {"g", "d"}


def test_run_outputs_translate_eval_export_report(run, tmp_path, capsys):
    meta = json.loads((run / "run.json").read_text())
    assert meta["recipe"] == "cyclegan" and meta["class_counts"] == [24, 24]
    scores = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "eval/fd_ab" in x]
    assert scores and all(s["eval/cycle_l1_a"] > 0 for s in scores)
    assert (run / "samples" / "step-0000006.png").is_file()
    w, h = Image.open(run / "samples" / "step-0000006.png").size
    assert abs(w / h - 6 / 8) < 0.05  # 8 rows of A | A→B | A→B→A | B | B→A | B→A→B
    assert (run / "checkpoints" / "best").is_dir()

    tr = load(run, want=Translator)
    assert isinstance(tr, CycleTranslator) and tr.direction == "AtoB"
    back = tr.toward("BtoA")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(back.translate(x), translate_with(tr.reverse, x))
    assert not torch.equal(back.translate(x), tr.translate(x))

    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (40, 40), (120, 60, 30)).save(inputs / "x.png")
    for direction in ("AtoB", "BtoA"):
        assert (
            main(["translate", str(run), str(inputs), "--out", str(tmp_path / direction), "--direction", direction])
            == 0
        )
    a, b = (Image.open(tmp_path / d / "x.png") for d in ("AtoB", "BtoA"))
    assert a.size == b.size == (16, 16) and list(a.getdata()) != list(b.getdata())

    assert main(["eval", str(run), "--features", "pixels"]) == 0
    res = json.loads((run / "metrics.json").read_text())
    assert res["n_a"] == res["n_b"] == 50 and res["fd_ab"] > 0 and 0 < res["cycle_l1_a"] < 2
    html = (run / "report.html").read_text()
    assert "FD, A→B vs real B" in html and "cycle L1, A→B→A" in html and "A | A→B | A→B→A" in html

    for direction in ("AtoB", "BtoA"):
        path = export_generator(run, "torchscript", tmp_path / f"{direction}.pt", direction=direction)
        assert read_metadata(path)["direction"] == direction
        ex = exportable(run, direction=direction)
        with torch.no_grad():
            assert (torch.jit.load(str(path))(x) - ex.module(x)).abs().max() <= 1e-5
    capsys.readouterr()


def translate_with(g: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return g.eval()(x)


def test_pix2pix_translator_refuses_btoa():
    tr = Translator(torch.nn.Identity(), Config(), 1, (3, 16, 16), 0, Path("runs/p"))
    assert tr.toward("AtoB") is tr
    with pytest.raises(GankitError, match="one way only"):
        tr.toward("BtoA")
