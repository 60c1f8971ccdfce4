"""Hostile and tricky YAML (issue 14 items 1, 8, 9, 10): refused quickly with one line naming the file and line, and
strings that look like numbers survive a save and a reload."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gankit.config import Config, parse_set, read_yaml
from gankit.config.layering import resolve
from gankit.config import dump_yaml as dump_config
from gankit.core.errors import GankitError
from gankit.core.yamlio import (
    MAX_BYTES,
    MAX_DEPTH,
    dump_yaml,
    load_yaml_file,
    load_yaml_text,
)


# "Refused at once" is shown by what refuses: the anchor, the depth or the file type is named before anything is
# expanded or read. No test here times itself (a busy machine is slow, not wrong); a hang (reading /dev/zero forever,
# waiting on a FIFO, expanding an alias bomb) is stopped by pytest-timeout (pyproject.toml: timeout = 300).


def one_line_error(call, *needles: str) -> str:
    with pytest.raises(GankitError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def write(tmp: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# refused input


def test_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    text = billion_laughs(9)
    assert len(text) < 700  # the 0.5 KB file
    p = write(tmp_path, text)
    one_line_error(lambda: read_yaml(p), "c.yaml", "line 1", "anchors (&a) are not allowed")


def test_aliases_and_anchors_are_refused_alone(tmp_path: Path) -> None:
    one_line_error(
        lambda: load_yaml_text("train:\n  steps: *n\n", "config file c.yaml"),
        "config file c.yaml, line 2",
        "aliases (*n) are not allowed",
    )
    one_line_error(lambda: load_yaml_text("train: &t\n  steps: 3\n", "x"), "anchors (&t) are not allowed")


@pytest.mark.parametrize(
    "text",
    [
        "[" * 200 + "]" * 200,
        "{a: " * 200 + "1" + "}" * 200,
        "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * 40 + "v: 1\n",
    ],
)
def test_deep_nesting_is_refused_without_a_traceback(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, text)
    one_line_error(lambda: read_yaml(p), "c.yaml, line", f"nested more than {MAX_DEPTH} levels deep")


def test_nesting_at_the_limit_is_read() -> None:
    assert load_yaml_text("[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH, "x") is not None


def test_very_deep_nesting_is_refused_quickly() -> None:
    one_line_error(lambda: load_yaml_text("[" * 30_000 + "]" * 30_000, "x"), "nested more than")


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "train:\n  steps: 2\nmodel:\n  z_dim: 8\ntrain:\n  epochs: 100\n")
    one_line_error(lambda: read_yaml(p), "c.yaml", "'train' is given twice", "lines 1 and 5")
    one_line_error(
        lambda: load_yaml_text("train: {steps: 2, steps: 3}\n", "x"), "'steps' is given twice", "lines 1 and 1"
    )
    # the same key in different sections is fine
    assert load_yaml_text("a:\n  name: x\nb:\n  name: y\n", "x") == {"a": {"name": "x"}, "b": {"name": "y"}}


def test_python_tags_are_refused_by_name(tmp_path: Path) -> None:
    p = write(tmp_path, "seed: 1\nmodel: !!python/object/apply:os.system ['touch pwned']\n")
    msg = one_line_error(lambda: read_yaml(p), "c.yaml, line 2", "tag '!!python/object/apply:os.system' is not allowed")
    assert "indentation" not in msg
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    one_line_error(lambda: load_yaml_text("a: !!binary aGk=\n", "x"), "tag '!!binary' is not allowed")


def test_dev_zero_is_refused_not_read_forever() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    one_line_error(lambda: read_yaml("/dev/zero"), "/dev/zero is a device, not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    one_line_error(lambda: read_yaml(fifo), "c.yaml is a FIFO (named pipe), not a regular file")


def test_oversize_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    p.write_text("# padding\n" * (MAX_BYTES // 10 + 1))
    one_line_error(lambda: read_yaml(p), "big.yaml is larger than")
    p.write_text("# padding\n" * (MAX_BYTES // 20))  # half the limit: read
    assert read_yaml(p) == {}


def test_missing_directory_and_binary_files(tmp_path: Path) -> None:
    one_line_error(lambda: read_yaml(tmp_path / "nope.yaml"), "nope.yaml does not exist")
    one_line_error(lambda: read_yaml(tmp_path), "is a folder")
    (tmp_path / "b.yaml").write_bytes(b"a: \xff\xfe\n")
    one_line_error(lambda: read_yaml(tmp_path / "b.yaml"), "b.yaml: not a text file")
    (tmp_path / "z.yaml").write_bytes(b"a: 1\n\x00\x00")
    one_line_error(lambda: read_yaml(tmp_path / "z.yaml"), "z.yaml: not valid YAML at line 2")
    one_line_error(lambda: load_yaml_file(tmp_path / "nope.yaml", what="run config"), "run config ")


# ---------------------------------------------------------------------------------------------------------------------
# scalars: YAML 1.2 numbers, and strings kept strings


@pytest.mark.parametrize(
    "text, value",
    [
        ("2e-4", 2e-4),
        ("1e3", 1000.0),
        ("1.5E+3", 1500.0),
        ("-1.5e-3", -1.5e-3),
        (".5", 0.5),
        ("1.", 1.0),
        ("010", 10),
        ("0x10", 16),
        ("0o17", 15),
        ("1_000", 1000),
        ("-7", -7),
        ("true", True),
        ("False", False),
        ("yes", True),
        ("off", False),
        ("~", None),
        ("null", None),
        ("", None),
        ("2001-12-14", "2001-12-14"),
        ("1:30", "1:30"),
        ("'1e3'", "1e3"),
        ("e3", "e3"),
        ("1e", "1e"),
        ("0x_", "0x_"),
        ("0x", "0x"),
        ("-0b", "-0b"),
        ("0o8", "0o8"),
        ("1e5.0", "1e5.0"),
    ],
)
def test_scalar_resolution(text: str, value: object) -> None:
    got = load_yaml_text(f"v: {text}\n", "x")["v"]
    assert got == value and type(got) in (type(value), *type(value).__subclasses__())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert got.yaml_text == text  # the user's own spelling, for string fields


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789eE.+-_xXobOB~nulltrue:", max_size=8))
def test_number_like_scalars_load_or_give_one_line_error(s: str) -> None:
    """Whatever a number-like plain scalar is, reading it gives a value (never a ValueError from int()/float())."""
    try:
        load_yaml_text(f"v: {s}\n", "x")
    except GankitError as e:
        assert "\n" not in str(e)


def test_special_floats() -> None:
    d = load_yaml_text("a: .inf\nb: -.inf\nc: .nan\n", "x")
    assert d["a"] == math.inf and d["b"] == -math.inf and math.isnan(d["c"])


TRICKY = [
    "1e3",
    "2e-4",
    "1.5E+3",
    "true",
    "True",
    "yes",
    "no",
    "on",
    "off",
    "null",
    "Null",
    "~",
    "",
    " ",
    " x",
    "x ",
    "- a",
    ": b",
    "a: b",
    "#c",
    "0x10",
    "0o17",
    "0b11",
    "010",
    "1_000",
    "1:30",
    ".inf",
    ".nan",
    "-.inf",
    "12",
    "-0",
    "2001-12-14",
    "2001-12-14 12:00:00",
    "<<",
    "=",
    "*x",
    "&x",
    "!x",
    "!!str",
    "%YAML",
    "[1]",
    "{a: 1}",
    "'q'",
    '"q"',
    "a\nb",
    "a\n",
    "\n",
    "\t",
    "x\x85y",
    "\u2028",
    "\ufeffx",
    "é",
    "@",
    "`",
    "|",
    ">",
    "?",
    "---",
    "...",
    "a #b",
    "a  ",
    "1e999",
    "NaN",
    "inf",
    "0.",
    "+1",
    "+.5",
]


@pytest.mark.parametrize("s", TRICKY)
def test_tricky_strings_round_trip(s: str) -> None:
    back = load_yaml_text(dump_yaml({"s": s, "l": [s]}), "x")
    assert back == {"s": s, "l": [s]} and type(back["s"]) is str


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.sampled_from(TRICKY), st.text(), st.text(alphabet="0123456789eE.+-_xob:~ \n#'\"[]{},&*!?|>", max_size=8)
    )
)
def test_any_string_round_trips(s: str) -> None:
    """dump -> load is the identity for every string, as a value and as a key."""
    tree = {"v": s, "w": {s: [s, {"k": s}]}}  # s as a key one level down, so it never collides with "v"
    text = dump_yaml(tree)
    back = load_yaml_text(text, "x")
    assert back == tree, text
    assert type(back["v"]) is str


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10))
TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), TREES, max_size=4))
def test_plain_trees_round_trip_exactly(d: dict) -> None:
    back = load_yaml_text(dump_yaml(d), "x")
    assert back == d

    def same_types(a: object, b: object) -> None:
        assert isinstance(b, type(a)) and isinstance(a, bool) == isinstance(b, bool), (a, b)
        if isinstance(a, dict):
            for k in a:
                same_types(a[k], b[k])
        elif isinstance(a, list):
            for x, y in zip(a, b):
                same_types(x, y)

    same_types(d, back)


def test_dump_is_block_style_in_the_given_order() -> None:
    assert dump_yaml({"b": {"y": [1, 2], "x": "1e3"}, "a": None}) == "b:\n  y:\n  - 1\n  - 2\n  x: '1e3'\na: null\n"


# ---------------------------------------------------------------------------------------------------------------------
# configs: a data folder named like a number


def test_numeric_folder_name_round_trips_through_a_saved_config(tmp_path: Path) -> None:
    cfg = resolve(overrides={"data.dir": "1e3", "data.cache_dir": "0x10", "train.device": "true", "train.steps": 2})
    assert cfg.data.dir == "1e3"
    text = dump_config(cfg)
    assert "dir: '1e3'" in text
    saved = write(tmp_path, text, "config.yaml")
    again = Config.from_dict(read_yaml(saved))
    assert again == cfg
    assert again.data.dir == "1e3" and again.data.cache_dir == "0x10" and again.train.device == "true"


@pytest.mark.parametrize(
    "written, meant",
    [("1e3", "1e3"), ("0x10", "0x10"), ("010", "010"), ("2e-4", "2e-4"), ("'1e3'", "1e3"), ("12", "12")],
)
def test_unquoted_number_in_a_string_field_is_taken_as_written(tmp_path: Path, written: str, meant: str) -> None:
    """Type-directed: `dir: 1e3` in a user's file means the folder '1e3', not '1000.0'; number fields stay numbers."""
    p = write(tmp_path, f"data:\n  dir: {written}\noptim:\n  lr_g: 2e-4\ntrain:\n  steps: 1e3\n")
    cfg = resolve(file=p)
    assert cfg.data.dir == meant
    assert cfg.optim.lr_g == 2e-4 and type(cfg.optim.lr_g) is float
    assert cfg.train.steps == 1000 and type(cfg.train.steps) is int


def test_set_reads_numbers_and_keeps_text_for_string_fields() -> None:
    assert parse_set("optim.lr_g=2e-4") == ("optim.lr_g", 2e-4)
    assert parse_set("train.steps=1_000") == ("train.steps", 1000)
    key, value = parse_set("data.dir=1e3")
    assert resolve(overrides={key: value}).data.dir == "1e3"
    assert parse_set("data.dir=*x") == ("data.dir", "*x")  # refused as YAML: the text as given
    assert parse_set("data.dir=a: b: c")[1] == "a: b: c"


def test_bools_and_nulls_are_not_strings_in_string_fields() -> None:
    one_line_error(lambda: resolve(base={"data": {"dir": True}}), "data.dir: expected str or null, got True")


def test_run_on_a_folder_named_like_a_number_samples_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14 item 8 end to end: `--data-dir 1e3` trains, and the saved config still says '1e3' for sample/resume."""
    from PIL import Image

    from gankit.cli import main
    from gankit.training.rundir import load_run_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "1e3").mkdir()
    for i in range(8):
        Image.new("RGB", (16, 16), (i * 30, 10, 200 - i * 20)).save(tmp_path / "1e3" / f"{i}.png")
    small = [
        "--set",
        "data.image_size=16",
        "--set",
        "model.g_channels=8",
        "--set",
        "model.d_channels=8",
        "--set",
        "model.z_dim=8",
        "--set",
        "train.threads=1",
        "--set",
        "train.batch_size=4",
        "--no-progress",
    ]
    assert main(["train", "--data", "folder", "--data-dir", "1e3", "--out", "run", "--steps", "2", *small]) == 0
    assert "dir: '1e3'" in (tmp_path / "run" / "config.yaml").read_text()
    assert load_run_config(tmp_path / "run").data.dir == "1e3"
    assert main(["sample", "run", "--n", "4", "--out", "g.png"]) == 0 and (tmp_path / "g.png").is_file()
    assert main(["train", "--resume", "run", "--steps", "3"]) == 0
