"""Reading and writing YAML that may come from anyone: a user's config, or a run folder someone shared.

A config is a small tree of plain values, so everything YAML offers beyond that is refused before it costs anything:

- aliases and anchors (``&x`` / ``*x``): a 0.5 KB "billion laughs" file expands into gigabytes while it is converted;
- nesting deeper than :data:`MAX_DEPTH`: the composer recurses, so ``[[[[...]]]]`` would end in a RecursionError;
- explicit tags (``!!python/object``, ``!!binary``, even ``!!str``): a config holds plain values only;
- a key given twice in one mapping (``train:`` twice silently kept only the last section);
- files over :data:`MAX_BYTES`, and anything that is not a regular file (``/dev/zero`` reads forever, a FIFO blocks).

Scalars are resolved much as YAML 1.2's core schema reads them: ``2e-4``, ``1e3`` and ``1.5E+3`` are floats (PyYAML's
YAML 1.1 rules read them as strings, which gankit used to patch over after loading); ``010`` is ten, not eight;
``0x10``/``0o17``/``0b11`` are ints; ``.inf``/``.nan`` floats; ``~``/``null``/empty are None; dates stay strings.
Two departures from 1.2, both for files written before: ``yes/no/on/off`` are booleans as in YAML 1.1, and digits
may be grouped with ``_`` (``1_000``).

Numbers keep the text they were written as (``yaml_text``): a string-typed config field given an unquoted number
(``dir: 1e3``) takes that text, ``"1e3"``, rather than ``"1000.0"`` (see ``gankit.config._coerce``).

:func:`dump_yaml` quotes every string that would read back as something else, by these rules *or* by PyYAML's own
YAML 1.1 rules, so a saved ``config.yaml`` reads back exactly here and in any other YAML reader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.representer import SafeRepresenter

from .errors import GankitError
from .io import open_user_file

# A config is a few hundred bytes, a resolved one about 2 KB. PyYAML's pure-Python reader (needed for the checks
# below) slows down steeply with size on its slowest inputs, so far larger files are refused unread
# (docs/notes/code-comments.md).
MAX_BYTES = 64 * 1024
MAX_DEPTH = 32  # nested mappings/lists; a config needs 3


class ScalarInt(int):
    """An int read from YAML that remembers how it was written (``0x10``, ``1_000``)."""

    yaml_text: str


class ScalarFloat(float):
    """A float read from YAML that remembers how it was written (``1e3``, ``.inf``)."""

    yaml_text: str


class RefusedYaml(yaml.MarkedYAMLError):
    """Valid YAML that a config may not use; the message says why without blaming indentation."""


def _refuse(problem: str, node_or_event: Any) -> RefusedYaml:
    return RefusedYaml(problem=problem, problem_mark=node_or_event.start_mark)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag


# ---------------------------------------------------------------------------------------------------------------------
# resolving plain scalars

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$")
_INT = re.compile(r"^[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F][0-9a-fA-F_]*|0o[0-7][0-7_]*|0b[01][01_]*)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_TRUE = {"true", "yes", "on"}


class _Resolver(yaml.resolver.BaseResolver):
    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {}  # none of PyYAML's 1.1 rules


# Order matters: a scalar matching both _INT and _FLOAT ("12") is an int.
_RULES = [
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", _BOOL, list("tTfFyYnNoO")),
    ("tag:yaml.org,2002:int", _INT, list("-+0123456789")),
    ("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789.")),
]
for _tag, _regexp, _first in _RULES:
    _Resolver.add_implicit_resolver(_tag, _regexp, _first)


# ---------------------------------------------------------------------------------------------------------------------
# loading


class _Loader(
    yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, SafeConstructor, _Resolver
):
    """PyYAML's safe loader with the checks above done while composing, before any value is built."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        SafeConstructor.__init__(self)
        _Resolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _refuse(f"aliases (*{event.anchor}) are not allowed in a config; write the value out", event)
        if getattr(event, "anchor", None) is not None:
            raise _refuse(f"anchors (&{event.anchor}) are not allowed in a config; remove it", event)
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!":
            raise _refuse(f"tag '{_short_tag(tag)}' is not allowed in a config; write a plain value", event)
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _refuse(f"nested more than {MAX_DEPTH} levels deep", event)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # cached by node: built once, reused by the base class
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise _refuse(
                        f"key {key!r} is given twice (lines {first_line[key]} and {line}); keep one", key_node
                    )
                first_line[key] = line
            except TypeError:
                continue  # an unhashable key; the base class names it
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        digits = text.replace("_", "")
        sign = -1 if digits.startswith("-") else 1
        body = digits.lstrip("+-")
        base = {"0x": 16, "0o": 8, "0b": 2}.get(body[:2].lower(), 10)
        value = ScalarInt(sign * int(body[2:] if base != 10 else body, base))
        value.yaml_text = text
        return value

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        text = str(self.construct_scalar(node))
        lowered = text.replace("_", "").lower()
        special = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}
        value = ScalarFloat(float(special.get(lowered, lowered)))
        value.yaml_text = text
        return value

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> bool:
        return str(self.construct_scalar(node)).lower() in _TRUE


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _Loader.construct_yaml_bool)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse one YAML document of plain values; ``source`` starts every error message (``"config file c.yaml"``).

    Returns None for an empty document. Raises :class:`GankitError` (one line, with the line number) for invalid YAML
    and for everything refused above."""
    if len(text) > MAX_BYTES:
        raise GankitError(f"{source}: {len(text)} characters is too large for a config (limit {MAX_BYTES})")
    loader = None
    try:
        loader = _Loader(text)  # the reader checks every character here
        return loader.get_single_data()
    except RefusedYaml as e:
        raise GankitError(f"{source}, line {e.problem_mark.line + 1}: {e.problem}") from None
    except yaml.reader.ReaderError as e:
        char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        line = text.count("\n", 0, e.position) + 1
        raise GankitError(
            f"{source}: not valid YAML at line {line} (character {char} is not allowed); is this a text file?"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None)
        why = f" ({' '.join(str(problem).split())})" if problem else ""
        raise GankitError(f"{source}: not valid YAML{at}{why}; check indentation and colons") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_text_file(path: str | Path, what: str = "config file", max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``; anything else is a one-line GankitError.

    Opened with :func:`gankit.core.io.open_user_file`: a FIFO cannot block, a device such as /dev/zero is refused
    before a byte is read, and a file swapped after the check cannot slip in."""
    p = Path(path)
    with open_user_file(p, what) as f:
        try:
            data = f.read(max_bytes + 1)  # to the limit, not st_size: the file may grow while we read
        except OSError as e:
            raise GankitError(f"{what} {p} cannot be read: {e.strerror}") from None
    if len(data) > max_bytes:
        raise GankitError(f"{what} {p} is larger than {max_bytes} bytes; a config is a few KB, is this the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GankitError(f"{what} {p}: not a text file (not UTF-8 at byte {e.start})") from None


def load_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """:func:`load_yaml_text` of :func:`read_text_file`; messages start with ``f"{what} {path}"``."""
    return load_yaml_text(read_text_file(path, what), f"{what} {Path(path)}")


# ---------------------------------------------------------------------------------------------------------------------
# dumping


class _Dumper(yaml.SafeDumper):
    """Quotes a string whenever PyYAML's YAML 1.1 rules or gankit's reader would read it as anything else."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # the same list twice is written twice: the reader refuses aliases

    def represent_str(self, data: str) -> yaml.ScalarNode:
        # Line breaks (\n, NEL, U+2028), tabs and other unprintables are folded or dropped by plain and single-quoted
        # scalars; double quotes escape them, so the text reads back exactly.
        if not all(ch.isprintable() or ch == " " for ch in data) or "\ufeff" in data:
            return self.represent_scalar("tag:yaml.org,2002:str", data, style='"')
        return super().represent_str(data)


_Dumper.add_representer(str, _Dumper.represent_str)
for _tag, _regexp, _first in _RULES:
    _Dumper.add_implicit_resolver(_tag, _regexp, _first)
# Numbers as read (ScalarInt/ScalarFloat) are written as plain numbers; tuples as lists.
_Dumper.add_multi_representer(int, SafeRepresenter.represent_int)
_Dumper.add_multi_representer(float, SafeRepresenter.represent_float)
_Dumper.add_representer(tuple, SafeRepresenter.represent_list)


def dump_yaml(data: Any) -> str:
    """Block-style YAML of plain values (str, int, float, bool, None, lists, dicts), keys in the given order, that
    :func:`load_yaml_text` reads back equal (NaN aside)."""
    # No line folding: long strings stay on one line, where PyYAML's folding has lost trailing spaces before.
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 30)
