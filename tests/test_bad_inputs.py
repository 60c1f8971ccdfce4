"""The bad-input corpus, generated here into tmp folders (no binary files in the repository): every case goes through
the command line and must end with exit code 2, one stderr line ``gankit: error: ...`` naming the thing, no traceback,
and nothing the user already had overwritten or half-written."""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings, strategies as st
from PIL import Image

from gankit.training import checkpoint
from gankit.cli import main
from gankit.config import Config
from gankit.config.layering import resolve
from gankit.data.cifar import parse_batch, safe_unpickle
from gankit.data.idx import read_idx
from gankit.core.errors import GankitError

SMALL = [
    "--set",
    "data.image_size=16",
    "--set",
    "model.g_channels=8",
    "--set",
    "model.d_channels=8",
    "--set",
    "train.threads=1",
    "--no-progress",
]
TINY = [*SMALL, "--set", "train.batch_size=4"]


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str, alone: bool = True) -> str:
    """Run the CLI; assert exit code 2 and a one-line error as the last stderr line (the only line when ``alone``;
    a resume first says which checkpoint it resumes from) containing every needle."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert lines and lines[-1].startswith("gankit: error: ") and "Traceback" not in err, err
    assert len(lines) == 1 or not alone, err
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    return lines[-1]


def png_bytes(size: int = 20, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return buf.getvalue()


def image_folder(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"ok{i}.png").write_bytes(png_bytes(color=(i * 40, 10, 10)))
    return root


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(">u1").tobytes()


def mnist_dir(root: Path, images: bytes | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train-images-idx3-ubyte").write_bytes(images or idx_bytes(np.zeros((8, 28, 28))))
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(8)))
    return root


# ---------------------------------------------------------------------------------------------------------------------
# data


def case_corrupt_image(tmp: Path) -> tuple[list[str], str]:
    d = image_folder(tmp / "imgs")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return ["--data", "folder", "--data-dir", str(d)], "broken.png"


def case_truncated_image(tmp: Path) -> tuple[list[str], str]:
    d = image_folder(tmp / "imgs")
    data = png_bytes(64)
    (d / "cut.png").write_bytes(data[: len(data) // 2])
    return ["--data", "folder", "--data-dir", str(d)], "cut.png"


def case_truncated_jpeg(tmp: Path) -> tuple[list[str], str]:
    d = image_folder(tmp / "imgs")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (d / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return ["--data", "folder", "--data-dir", str(d)], "cut.jpg"


def case_text_with_image_extension(tmp: Path) -> tuple[list[str], str]:
    d = image_folder(tmp / "imgs")
    (d / "notes.jpg").write_text("these are my notes, not a photo\n")
    return ["--data", "folder", "--data-dir", str(d)], "notes.jpg"


def case_empty_folder(tmp: Path) -> tuple[list[str], str]:
    (tmp / "empty").mkdir()
    return ["--data", "folder", "--data-dir", str(tmp / "empty")], "no images in"


def case_missing_data_dir(tmp: Path) -> tuple[list[str], str]:
    return ["--data", "folder", "--data-dir", str(tmp / "nowhere")], "nowhere"


def case_missing_mnist_dir(tmp: Path) -> tuple[list[str], str]:
    return ["--data", "mnist", "--data-dir", str(tmp / "nowhere")], "nowhere"


def case_mnist_missing_files(tmp: Path) -> tuple[list[str], str]:
    (tmp / "m").mkdir()
    return ["--data", "mnist", "--data-dir", str(tmp / "m")], "train-images-idx3-ubyte.gz"


def case_idx_wrong_magic(tmp: Path) -> tuple[list[str], str]:
    d = mnist_dir(tmp / "m", images=b"\x12\x34" + idx_bytes(np.zeros((8, 28, 28)))[2:])
    return ["--data", "mnist", "--data-dir", str(d)], "train-images-idx3-ubyte: bad IDX magic number"


def case_idx_truncated(tmp: Path) -> tuple[list[str], str]:
    d = mnist_dir(tmp / "m", images=idx_bytes(np.zeros((8, 28, 28)))[:-100])
    return ["--data", "mnist", "--data-dir", str(d)], "train-images-idx3-ubyte: IDX body has"


def case_idx_truncated_gzip(tmp: Path) -> tuple[list[str], str]:
    d = mnist_dir(tmp / "m")
    (d / "train-images-idx3-ubyte").unlink()
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((8, 28, 28))))[:-20])
    return ["--data", "mnist", "--data-dir", str(d)], "train-images-idx3-ubyte.gz"


def case_cifar_wrong_shape(tmp: Path) -> tuple[list[str], str]:
    d = tmp / "c"
    d.mkdir()
    batch = {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}
    (d / "test_batch").write_bytes(pickle.dumps(batch, protocol=3))
    return [
        "--data",
        "cifar10",
        "--split",
        "test",
        "--data-dir",
        str(d),
    ], "test_batch: expected b'data' as uint8 (N, 3072)"


def case_pairs_unmatched(tmp: Path) -> tuple[list[str], str]:
    for side, names in (("A", ["cat", "dog", "owl"]), ("B", ["cat", "dog", "emu"])):
        (tmp / "p" / side).mkdir(parents=True)
        for n in names:
            (tmp / "p" / side / f"{n}.png").write_bytes(png_bytes(32))
    return ["--data", "paired", "--data-dir", str(tmp / "p"), "--set", "data.image_size=32"], "owl.png"


def _unpaired(tmp: Path, a: int, b: int | None) -> list[str]:
    """A/ with ``a`` images and B/ with ``b`` (None: no B/ folder), for CycleGAN's unpaired reader."""
    for side, n in (("A", a), ("B", b)):
        if n is not None:
            image_folder(tmp / "u" / side, n) if n else (tmp / "u" / side).mkdir(parents=True)
    return ["--data", "unpaired", "--data-dir", str(tmp / "u"), "--set", "model.patch=16"]


def case_unpaired_missing_b(tmp: Path) -> tuple[list[str], str]:
    return _unpaired(tmp, 6, None), "B/ does not"


def case_unpaired_no_domains(tmp: Path) -> tuple[list[str], str]:
    image_folder(tmp / "u", 6)  # images, but not in A/ and B/
    return ["--data", "unpaired", "--data-dir", str(tmp / "u"), "--set", "model.patch=16"], "has no A/ and B/"


def case_unpaired_empty_domain(tmp: Path) -> tuple[list[str], str]:
    return _unpaired(tmp, 6, 0), "holds no images"


def case_unpaired_unreadable(tmp: Path) -> tuple[list[str], str]:
    args = _unpaired(tmp, 6, 5)
    (tmp / "u" / "B" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return args, "broken.png"


# ---------------------------------------------------------------------------------------------------------------------
# configs


def _yaml(tmp: Path, text: str) -> str:
    (tmp / "c.yaml").write_text(text)
    return str(tmp / "c.yaml")


def _fifo(path: Path) -> list[str]:
    os.mkfifo(path)  # reading it would wait for a writer that never comes
    return [str(path)]


def yaml_case(text: str, needle: str) -> Callable[[Path], tuple[list[str], str]]:
    return lambda tmp: ([_yaml(tmp, text)], needle)


CONFIGS = {
    "typo-section": yaml_case("trian:\n  steps: 3\n", "unknown config key 'trian' (did you mean 'train'"),
    "typo-key": yaml_case(
        "train:\n  batchsize: 8\n", "unknown config key 'train.batchsize' (did you mean 'batch_size'"
    ),
    "wrong-type": yaml_case("train:\n  batch_size: lots\n", "train.batch_size: expected int, got 'lots'"),
    "zero-batch": yaml_case("train:\n  batch_size: 0\n", "train.batch_size must be > 0, got 0"),
    "negative-batch": yaml_case("train:\n  batch_size: -4\n", "train.batch_size must be > 0, got -4"),
    "negative-lr": yaml_case("optim:\n  lr_g: -2e-4\n", "optim.lr_g must be > 0"),
    "unknown-model": yaml_case("model:\n  name: dcgna\n", "unknown model 'dcgna' (did you mean 'dcgan'"),
    "unknown-loss": yaml_case("loss:\n  name: hinje\n", "unknown loss 'hinje' (did you mean 'hinge'"),
    "not-yaml": yaml_case("model:\n  z_dim: [1\n", "not valid YAML"),
    "python-tag": yaml_case(
        "model: !!python/object/apply:os.system ['touch pwned']\n",
        "line 1: tag '!!python/object/apply:os.system' is not allowed",
    ),
    "alias-bomb": yaml_case(
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
        "line 1: anchors (&a) are not allowed",
    ),
    "deep-nesting": yaml_case("model:\n  g_hidden: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 32 levels"),
    "duplicate-section": yaml_case(
        "train:\n  steps: 2\nmodel:\n  z_dim: 8\ntrain:\n  epochs: 100\n", "'train' is given twice (lines 1 and 5)"
    ),
    "config-is-a-device": lambda tmp: (["/dev/zero"], "/dev/zero is a device, not a regular file"),
    "config-is-a-fifo": lambda tmp: (_fifo(tmp / "c.yaml"), "c.yaml is a FIFO (named pipe), not a regular file"),
    "missing-config": lambda tmp: ([str(tmp / "nope.yaml")], "nope.yaml does not exist"),
    "unknown-model-flag": lambda tmp: (["--model", "dcgna"], "unknown model 'dcgna' (did you mean 'dcgan'?)"),
    "bad-set": lambda tmp: (["--set", "train.steps"], "expected key=value"),
    "negative-mbstd": lambda tmp: (["--set", "model.d_mbstd=-1"], "model.d_mbstd=-1: use 0 (off)"),
    "negative-gp-weight": lambda tmp: (["--set", "loss.gp_weight=-1"], "loss.gp_weight must be >= 0, got -1.0"),
    # pix2pix has no model.d_batchnorm: its own refusal, not the GAN's advice to set that key
    "pix2pix-gradient-penalty": lambda tmp: (
        ["--model", "pix2pix", "--set", "model.patch=16", "--set", "loss.name=wgan-gp"],
        "loss.name=wgan-gp is not supported by pix2pix",
    ),
}

DATA = {
    f.__name__.removeprefix("case_"): f
    for f in [
        case_corrupt_image,
        case_truncated_image,
        case_truncated_jpeg,
        case_text_with_image_extension,
        case_empty_folder,
        case_missing_data_dir,
        case_missing_mnist_dir,
        case_mnist_missing_files,
        case_idx_wrong_magic,
        case_idx_truncated,
        case_idx_truncated_gzip,
        case_cifar_wrong_shape,
        case_pairs_unmatched,
        case_unpaired_missing_b,
        case_unpaired_no_domains,
        case_unpaired_empty_domain,
        case_unpaired_unreadable,
    ]
}


@pytest.mark.parametrize("case", [*DATA, *CONFIGS])
def test_bad_training_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    args, needle = {**DATA, **CONFIGS}[case](tmp_path)
    out = tmp_path / "run"
    small = TINY if case in DATA else SMALL  # the config cases bring their own batch size
    one_error(capsys, ["train", "--out", str(out), "--steps", "2", *small, *args], needle)
    assert not out.exists()  # nothing half-created
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------------------------------
# run folders and outputs


@pytest.fixture(scope="module")
def a_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("bad") / "run"
    assert main(["train", "--out", str(run), "--steps", "2", "--set", "data.limit=16", *TINY]) == 0
    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_on_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(png_bytes())
    one_error(capsys, ["train", "--resume", str(tmp_path / "photos")], "photos is not a gankit run folder")
    one_error(capsys, ["train", "--resume", str(tmp_path / "missing")], "missing does not exist")
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["a.png"]


def test_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    one_error(capsys, ["train", "--out", str(f), "--steps", "2", *TINY], "results.txt is a file")
    assert f.read_text() == "keep me"
    one_error(capsys, ["train", "--out", str(f / "run"), "--steps", "2", *TINY], "results.txt")
    assert f.read_text() == "keep me"


def test_out_is_an_existing_run(a_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(a_run)
    one_error(
        capsys,
        ["train", "--out", str(a_run), "--steps", "2", *TINY],
        "already exists",
        f"--resume {a_run}",
        "nothing was overwritten",
    )
    assert snapshot(a_run) == before


def test_out_is_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("\\begin{document}")
    one_error(capsys, ["train", "--out", str(tmp_path / "mine"), "--steps", "2", *TINY], "choose another --out")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.tex"]


def test_sample_on_a_non_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notrun").mkdir()
    one_error(capsys, ["sample", str(tmp_path / "notrun"), "--out", str(tmp_path / "o" / "g.png")], "not a gankit run")
    assert not (tmp_path / "o").exists()
    one_error(capsys, ["sample", str(tmp_path / "gone"), "--out", str(tmp_path / "g.png")], "gone does not exist")


def test_sample_bad_outputs(a_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_error(capsys, ["sample", str(a_run), "--out", str(tmp_path / "g.jpg")], "g.jpg", ".png or .npy")
    one_error(capsys, ["sample", str(a_run), "--out", str(tmp_path)], "is a folder")
    one_error(capsys, ["sample", str(a_run), "--n", "0", "--out", str(tmp_path / "g.png")], "--n must be > 0")
    one_error(
        capsys,
        ["sample", str(a_run), "--checkpoint", "step-9", "--out", str(tmp_path / "g.png")],
        "no checkpoint 'step-9'",
        "final",
    )


def test_disk_full_while_checkpointing(
    a_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(a_run, run)
    ckdir = run / "checkpoints"
    latest_before = checkpoint.latest_name(ckdir)
    kept = snapshot(ckdir / latest_before)

    def full_disk(path: Path, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_file", full_disk)
    line = one_error(
        capsys,
        ["train", "--resume", str(run), "--steps", "4", "--set", "train.checkpoint_every=1"],
        "cannot write checkpoint file",
        "step-0000003",
        "g.safetensors",
        "No space left on device",
        "disk full",
        f"the earlier checkpoint {latest_before} is intact",
        alone=False,
    )
    assert str(ckdir) in line
    monkeypatch.undo()
    assert checkpoint.latest_name(ckdir) == latest_before and snapshot(ckdir / latest_before) == kept
    assert not [p for p in ckdir.iterdir() if p.name.startswith(".")]
    assert checkpoint.load_latest(ckdir).step == 2
    assert (
        main(["train", "--resume", str(run), "--steps", "3", "--no-progress"]) == 0
    )  # and it resumes once space is back


def test_disk_full_in_the_metrics_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gankit.training.rundir import RunDir as RunWriter

    def full(self: RunWriter, row: dict) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.root / "metrics.jsonl"))

    monkeypatch.setattr(RunWriter, "log", full)
    one_error(
        capsys,
        ["train", "--out", str(tmp_path / "r"), "--steps", "2", "--set", "data.limit=16", *TINY],
        "metrics.jsonl",
        "No space left on device (disk full",
    )


# ---------------------------------------------------------------------------------------------------------------------
# fuzzing: whatever the input, a result or a GankitError, never anything else

SECTIONS = ["seed", "data", "model", "loss", "optim", "train", "trian", "modle"]
KEYS = [
    "name",
    "batch_size",
    "lr_g",
    "z_dim",
    "steps",
    "epochs",
    "image_size",
    "split",
    "g_hidden",
    "channels",
    "max_minutes",
    "noise",
    "d_steps",
    "keep_last",
    "batchsize",
    "on_nan",
    "nan_lr_factor",
    "device",
]
SCALARS = st.one_of(
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(
        [
            "dcgan",
            "mlp",
            "pix2pix",
            "hinge",
            "wgan-gp",
            "2e-4",
            "1e999",
            "-.inf",
            ".nan",
            "train",
            "0x10",
            "1_000",
            "~",
            "yes",
            "2001-12-14",
            "",
            "[",
            "{a: 1}",
            "&x",
            "*x",
            "!!binary aGk=",
        ]
    ),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    doc=st.dictionaries(
        st.sampled_from(SECTIONS),
        st.one_of(SCALARS, st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4)),
        max_size=4,
    ),
    raw=st.one_of(st.none(), st.text(max_size=40)),
    unquote=st.booleans(),
)
def test_fuzzed_yaml_gives_a_config_or_one_line_error(
    tmp_path: Path, doc: dict, raw: str | None, unquote: bool
) -> None:
    """YAML text (well-formed from random sections, with quotes dropped so strings turn into YAML's own scalars, or
    random text) -> resolve() returns a Config or raises GankitError with a one-line message."""
    text = raw if raw is not None else yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if unquote:
        text = text.replace("'", "").replace('"', "")
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = resolve(file=path)
    except GankitError as e:
        assert "\n" not in str(e)
        event("GankitError")
    else:
        assert isinstance(cfg, Config)
        event("Config")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    head=st.one_of(
        st.binary(max_size=4),
        st.sampled_from(
            [b"\x00\x00\x08\x03", b"\x00\x00\x08\x01", b"\x00\x00\x0d\x02", b"\x00\x00\x08\xff", b"\x1f\x8b"]
        ),
    ),
    dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 30), max_size=4),
    body=st.binary(max_size=300),
)
def test_fuzzed_idx_gives_an_array_or_gankit_error(tmp_path: Path, head: bytes, dims: list[int], body: bytes) -> None:
    path = tmp_path / "f-idx3-ubyte"
    path.write_bytes(head + struct.pack(f">{len(dims)}I", *dims) + body)
    try:
        arr = read_idx(path)
    except GankitError as e:
        assert "\n" not in str(e) and "f-idx3-ubyte" in str(e)
    else:
        assert isinstance(arr, np.ndarray) and arr.ndim == path.read_bytes()[3]


_DTYPES = [np.uint8, np.int64, np.float32, np.int8]


@settings(max_examples=200, deadline=None)
@given(
    raw=st.binary(max_size=200),
    rows=st.integers(0, 4),
    cols=st.sampled_from([3072, 1024, 0, 1]),
    dtype=st.sampled_from(_DTYPES),
    labels=st.one_of(
        st.lists(st.integers(-(2**70), 2**70), max_size=5),
        st.lists(st.integers(-1, 11), max_size=5),
        st.text(max_size=3),
        st.none(),
        st.floats(),
    ),
    key_type=st.sampled_from([bytes, str]),
    use_raw=st.booleans(),
)
def test_fuzzed_cifar_batches_give_arrays_or_gankit_error(
    raw: bytes, rows: int, cols: int, dtype: type, labels: object, key_type: type, use_raw: bool
) -> None:
    if use_raw:
        data = raw
    else:
        k = (lambda s: s.encode()) if key_type is bytes else (lambda s: s)
        data = pickle.dumps({k("data"): np.zeros((rows, cols), dtype), k("labels"): labels}, protocol=2)
    try:
        images, y = parse_batch(safe_unpickle(data, "batch"), "batch")
    except GankitError as e:
        # (pickle's own messages can hold a newline, which the reader passes on; the CLI prints errors on one line)
        assert str(e).startswith("batch")
    else:
        assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32) and y.shape == (images.shape[0],)
        assert y.dtype == np.int64 and (len(y) == 0 or (y.min() >= 0 and y.max() <= 9))


def test_corpus_helpers_make_what_they_claim(tmp_path: Path) -> None:
    """Sanity: the good parts of the corpus are good, so each error above is about the bad part."""
    d = image_folder(tmp_path / "imgs")
    assert (
        main(["train", "--data", "folder", "--data-dir", str(d), "--out", str(tmp_path / "r"), "--steps", "1", *TINY])
        == 0
    )
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["step"] == 1
    assert read_idx(mnist_dir(tmp_path / "m") / "train-images-idx3-ubyte").shape == (8, 28, 28)


@pytest.mark.parametrize(
    "args",
    [["--epochs", "nan"], ["--epochs", "inf"], ["--seed", str(2**70)]],
    ids=["epochs-nan", "epochs-inf", "seed-2**70"],
)
def test_non_finite_or_huge_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    one_error(capsys, ["train", "--out", str(tmp_path / "r"), *TINY, "--set", "data.limit=16", *args], args[0][2:])


# ---------------------------------------------------------------------------------------------------------------------
# resume, sample and launch defects of issue #31


@pytest.mark.parametrize(
    "args, key",
    [
        (["--data", "sketch"], "data.name: 'digits' -> 'sketch'"),
        (["--seed", "5"], "seed: 0 -> 5"),
        (["--split", "test"], "data.split"),
        (["--set", "data.holdout=4"], "data.holdout"),
        (["--set", "data.image_size=32"], "data.image_size"),
        (["--set", "model.z_dim=7"], "model.z_dim"),
        (["--set", "loss.name=hinge"], "loss.name"),
        (["--data-dir", "elsewhere"], "data.dir"),
    ],
    ids=["data", "seed", "split", "holdout", "image_size", "z_dim", "loss", "data_dir"],
)
def test_resume_refuses_a_change_of_what_the_checkpoints_mean(
    a_run: Path, capsys: pytest.CaptureFixture[str], args: list[str], key: str
) -> None:
    before = snapshot(a_run)
    one_error(
        capsys,
        ["train", "--resume", str(a_run), "--steps", "4", *args],
        key,
        "would change what its checkpoints mean",
        "start a new run with --out",
    )
    assert snapshot(a_run) == before  # run.json, config.yaml, checkpoints: byte for byte


def test_resume_may_change_budgets_and_side_settings(
    a_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from gankit.config.schema import RESUME_MAY_CHANGE

    assert {"train.steps", "train.threads", "train.keep_last", "train.log_every"} <= RESUME_MAY_CHANGE
    assert not {"data.name", "data.dir", "seed", "data.holdout", "model.z_dim", "train.batch_size"} & RESUME_MAY_CHANGE
    run = tmp_path / "run"
    shutil.copytree(a_run, run)
    assert (
        main(
            [
                "train",
                "--resume",
                str(run),
                "--steps",
                "3",
                "--threads",
                "1",
                "--seed",
                "0",
                "--data",
                "digits",
                "--set",
                "train.log_every=1",
                "--set",
                "train.keep_last=1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((run / "summary.json").read_text())["step"] == 3
    # the Python API: without a config, a resume continues with the run's own; a Config that differs is refused
    import gankit

    own = Config.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    with pytest.raises(GankitError, match="seed: 0 -> 9 would change what its checkpoints mean"):
        gankit.train(own.replace(**{"seed": 9, "train.steps": 4}), resume=str(run))
    assert gankit.train(resume=str(run), **{"train.steps": 4}).step == 4


def test_sample_npy_never_leaves_classes_of_an_earlier_array(
    a_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """X.labels.npy (a conditional sample's classes) is replaced or removed together with X.npy: an unconditional
    sample with --force removes it; without --force an orphan one is refused, as X.npy itself would be."""
    out, labels = tmp_path / "x.npy", tmp_path / "x.labels.npy"
    np.save(out, np.zeros((3, 16, 16, 1), np.uint8))
    np.save(labels, np.arange(3))  # as an earlier `sample` of a conditional run left them
    assert main(["sample", str(a_run), "--n", "4", "--out", str(out), "--force"]) == 0
    assert np.load(out).shape == (4, 16, 16, 1) and not labels.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    out.unlink()
    np.save(labels, np.arange(3))
    one_error(capsys, ["sample", str(a_run), "--n", "4", "--out", str(out)], "x.labels.npy already exists", "--force")
    assert not out.exists() and np.load(labels).tolist() == [0, 1, 2]


_SLOW_SAMPLE = """
import os, sys, time
import gankit.core.io as io
from gankit.cli import main

real = io.os.fsync
def slow(fd):  # hold the write open: the temp file is complete, not yet renamed
    print("writing", flush=True)
    time.sleep(60)
    real(fd)
io.os.fsync = slow
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_sample_writes_leaves_no_temp_file(a_run: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    out = tmp_path / "big.npy"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAMPLE, "sample", str(a_run), "--n", "64", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")])),
        },
    )
    try:
        assert proc.stdout.readline() == "writing\n"
        assert [p for p in tmp_path.iterdir() if p.name.startswith(".big.npy.")]  # the temp file is there now
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err and "terminated by SIGTERM" in err, err
    assert list(tmp_path.iterdir()) == []  # neither big.npy nor .big.npy.<pid>.<random>.part


def test_a_write_removes_temp_files_that_killed_writers_left(tmp_path: Path) -> None:
    import subprocess
    import sys

    from gankit.core.io import atomic_write_bytes

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()  # a PID that is gone (the OS does not reuse it at once)
    stale = tmp_path / f".x.npy.{dead}.abc123.part"  # what SIGKILL during a write leaves
    other = tmp_path / f".x.npy.more.{dead}.abc123.part"  # the temp file of another name (x.npy.more)
    live = tmp_path / f".x.npy.{os.getpid()}.abc123.part"  # a writer still at work
    for p in (stale, other, live):
        p.write_bytes(b"half")
    atomic_write_bytes(tmp_path / "x.npy", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, live.name, "x.npy"])


def test_device_mps_without_mps_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    one_error(
        capsys,
        ["train", "--device", "mps", "--out", str(tmp_path / "r"), "--steps", "1", *TINY],
        "train.device='mps'",
        "no usable MPS",
        "train.device=cpu",
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag", ["--steps", "--epochs", "--max-minutes"])
def test_zero_budget_flags_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    one_error(
        capsys,
        ["train", flag, "0", "--out", str(tmp_path / "r"), *TINY],
        f"{flag} 0",
        "must be > 0",
        "0 means 'not set' in a config file",
        f"omit {flag}",
    )
    assert not (tmp_path / "r").exists()


def test_threads_far_above_the_usable_cores_warn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from gankit.training import loop

    monkeypatch.setattr(loop, "usable_cores", lambda: 1)  # the same check on any machine: 3 threads for 1 core
    try:
        assert (
            main(
                [
                    "train",
                    "--out",
                    str(tmp_path / "r"),
                    "--steps",
                    "1",
                    "--set",
                    "data.limit=16",
                    *TINY,
                    "--set",
                    "train.threads=3",
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(1)
    warnings = [x for x in capsys.readouterr().err.splitlines() if "train.threads=3" in x]
    assert warnings == [
        "warning: train.threads=3 is more than twice the 1 cores this process may use, which makes "
        "every step slower; use --threads 1 (or 0 for that default)"
    ]
    assert main(["train", "--out", str(tmp_path / "r2"), "--steps", "1", "--set", "data.limit=16", *TINY]) == 0
    assert "train.threads" not in capsys.readouterr().err  # 1 thread on 1 core: no warning


def test_default_run_folders_started_in_the_same_second_differ(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime

    from gankit.training.rundir import default_run_dir

    now = datetime(2026, 12, 4, 12, 0, 0)
    first = default_run_dir("dcgan", "digits", tmp_path, now)
    assert first == tmp_path / "20261204-120000-dcgan-digits" and first.is_dir()
    with ThreadPoolExecutor(8) as pool:
        more = list(pool.map(lambda _: default_run_dir("dcgan", "digits", tmp_path, now), range(8)))
    names = {first, *more}
    assert len(names) == 9 and all(p.is_dir() and not any(p.iterdir()) for p in names)
    assert tmp_path / "20261204-120000-dcgan-digits-9" in names


def test_a_default_run_folder_is_removed_when_the_run_fails_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    one_error(
        capsys,
        ["train", "--data", "folder", "--data-dir", str(tmp_path / "none"), "--steps", "1", *TINY],
        "none",
        alone=False,
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# paths a command reads (issue 29's probe): translate's inputs, eval --samples and --inception all open files through
# gankit.data.safety.open_user_file. A FIFO would block a plain open() for ever: a regression hangs until
# pytest-timeout stops it.


def _translate_folder(tmp: Path, run: Path, bad: Callable[[Path], None]) -> list[str]:
    d = image_folder(tmp / "in", n=1)
    bad(d)
    return ["translate", str(run), str(d), "--out", str(tmp / "out")]


def _inception(tmp: Path, make: Callable[[Path], None]) -> list[str]:
    np.save(tmp / "s.npy", np.zeros((4, 8, 8, 1), np.uint8))
    make(tmp / "inception.pt")
    return [
        "eval",
        "--samples",
        str(tmp / "s.npy"),
        "--data",
        "digits",
        "--features",
        "inception",
        "--inception",
        str(tmp / "inception.pt"),
        "--out",
        str(tmp / "out" / "m.json"),
    ]


def _state_dict_zip(p: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(3)}, p)


def _outside(tmp: Path) -> Path:
    secret = tmp / "secret.txt"
    secret.write_text("not yours to read\n")
    return secret


USER_PATHS: dict[str, Callable[[Path, Path], tuple[list[str], tuple[str, ...]]]] = {
    "translate-fifo-in-folder": lambda tmp, run: (
        _translate_folder(tmp, run, lambda d: os.mkfifo(d / "x.png")),
        ("input folder", "1 entry not read", "x.png is a FIFO (named pipe)", "nothing was written"),
    ),
    "translate-link-out-of-folder": lambda tmp, run: (
        _translate_folder(tmp, run, lambda d: (d / "x.png").symlink_to(_outside(tmp))),
        ("x.png is a link to", "secret.txt, outside", "move it out of the folder"),
    ),
    "translate-fifo-named": lambda tmp, run: (
        ["translate", str(run), str(_mkfifo(tmp / "x.png")), "--out", str(tmp / "out")],
        ("input", "x.png is a FIFO (named pipe), not a regular file"),
    ),
    "eval-samples-fifo": lambda tmp, run: (
        ["eval", "--samples", str(_mkfifo(tmp / "s.npy")), "--data", "digits", "--out", str(tmp / "out" / "m.json")],
        ("--samples", "s.npy is a FIFO (named pipe)"),
    ),
    "inception-text-file": lambda tmp, run: (
        _inception(tmp, lambda p: p.write_text("not a network\n")),
        ("--inception", "inception.pt is not a TorchScript file: it is not a zip archive", "expected inception-2015"),
    ),
    "inception-state-dict": lambda tmp, run: (
        _inception(tmp, _state_dict_zip),
        ("inception.pt is not a TorchScript file", "without TorchScript code", "expected inception-2015"),
    ),
    "inception-truncated-zip": lambda tmp, run: (
        _inception(tmp, lambda p: (_state_dict_zip(p), p.write_bytes(p.read_bytes()[:60]))),
        ("inception.pt is not a TorchScript file", "zip archive", "expected inception-2015"),
    ),
    "inception-fifo": lambda tmp, run: (
        _inception(tmp, lambda p: os.mkfifo(p)),
        ("--inception", "inception.pt is a FIFO (named pipe)"),
    ),
}


def _mkfifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("case", USER_PATHS)
def test_bad_user_paths(a_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.png").write_bytes(png_bytes())  # the user's own file in the output folder
    argv, needles = USER_PATHS[case](tmp_path, a_run)
    before = snapshot(tmp_path)
    line = one_error(capsys, argv, *needles)
    assert "miniz" not in line and "PytorchStreamReader" not in line  # gankit's words, not the zip reader's
    assert snapshot(tmp_path) == before  # nothing written, nothing read away
