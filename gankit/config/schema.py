"""Configuration as typed data.

A run's configuration is built in layers — dataclass defaults, then the chosen model's own defaults, then the YAML
file, then command-line flags and ``--set a.b=value`` overrides — and validated once, up front. Anything unknown or
ill-typed is a one-line :class:`GankitError` naming the key. The resolved config is saved as ``config.yaml`` in every
run folder, and a run can be rebuilt from it alone.

The ``model`` and ``loss`` sections hold the keys every family shares; a model family declares its own keys beside
its task (:func:`family_config`), and they join those sections: ``model.g_blocks`` is CycleGAN's, declared in
gankit/tasks/cyclegan.py. This module imports no family (see :class:`FamilyKeys`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

from ..core.errors import GankitError
from ..core.registry import closest
from ..core.yamlio import dump_yaml as dump_plain_yaml
from ..core.yamlio import load_yaml_file, load_yaml_text


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"
    dir: str | None = None  # where the standard files are; None = the cache dir (downloaded on demand)
    split: Literal["train", "test", "all", "val"] = "train"
    image_size: int = 32  # images are resized to image_size x image_size (28 keeps MNIST native)
    image_height: int = 0  # 0 = square; else images are image_size wide and image_height high (pix2pix, paired data)
    channels: int = 0  # 0 = the data set's own; 1 or 3 converts
    download: bool = True  # fetch missing standard files from the official mirrors into cache_dir
    cache_dir: str | None = None  # default: $GANKIT_CACHE or ~/.cache/gankit
    limit: int = 0  # use only the first N images (0 = all); handy for quick tries
    # where decoded images live: ram; memmap = a uint8 cache file under cache_dir, decoded once, read per batch;
    # auto = memmap when the decoded set exceeds 1 GiB or 25% of available memory (folder, mnist-likes, cifar10)
    cache: Literal["ram", "memmap", "auto"] = "auto"
    holdout: int = 0  # keep a fixed random N images (seed 0) of the split out of training, for validation and eval
    # images of another aspect ratio: crop (centre), pad (whole image, bars of pad_value) or stretch; auto = the
    # reader's own (folder: crop, paired: stretch). Folder and paired data.
    resize: Literal["auto", "crop", "pad", "stretch"] = "auto"
    pad_value: int = 0  # 0..255, the bars' gray level with resize=pad
    # paired (image-to-image) data
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    load_size: int = 0  # jitter: resize to load_size, random-crop back to image_size (0 = image_size * 286 / 256)
    jitter: bool = True
    flip: bool = True


# ---------------------------------------------------------------------------------------------------------------------
# keys a model family declares beside its task


@dataclass(frozen=True)
class FamilyKey:
    """One config key a model family declares in its own module (CycleGAN's ``model.g_blocks``, pix2pix's
    ``loss.l1_weight``) rather than in the shared sections below; it is set, type-checked, saved and loaded like the
    shared keys. ``declared_by`` is the family's section dataclass (see :func:`family_config`)."""

    section: str  # "model" or "loss": the sections families extend
    name: str
    type: Any  # as the shared keys' annotations: int, float, bool, str, Literal[...], tuple[T, ...], T | None
    default: Any
    family: str  # the family that declares it (a key of gankit.tasks.TASKS)
    declared_by: type


class FamilyKeys:
    """The keys model families declare, in the order they were declared (the order config.yaml lists them).

    Families declare their keys when gankit imports them (``gankit/tasks/*.py``, found automatically). This module
    imports no family: gankit/__init__.py hands :meth:`discover_with` the function that imports them, and it runs
    the first time the keys are asked for, so ``from gankit.config import Config`` stays light (no torch) until a
    config holding a family's key is read."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], FamilyKey] = {}
        self._discover: Callable[[], None] | None = None

    def discover_with(self, fn: Callable[[], None]) -> None:
        self._discover = fn

    def _discovered(self) -> None:
        fn, self._discover = self._discover, None  # once; a call made while the families import does not recurse
        if fn is not None:
            try:
                fn()
            except BaseException:
                self._discover = fn
                raise

    def add(self, section: str, cls: type, family: str) -> None:
        """Declare every field of dataclass ``cls`` as a key of ``section`` owned by ``family``. A key that is
        already a shared key or another family's is a bug in that family, refused when it is imported."""
        shared = SECTIONS[section]
        hints = typing.get_type_hints(cls)
        keys = []
        for f in dataclasses.fields(cls):
            if f.default is dataclasses.MISSING:
                raise TypeError(f"{cls.__name__}.{f.name}: a family's config key needs a default")
            if f.name in shared.__dataclass_fields__:
                raise ValueError(f"{section}.{f.name} of family '{family}' is a shared key of {shared.__name__}")
            if (section, f.name) in self._items:
                owner = self._items[(section, f.name)].family
                raise ValueError(f"{section}.{f.name} of family '{family}' is declared already by family '{owner}'")
            keys.append(FamilyKey(section, f.name, hints[f.name], f.default, family, cls))
        self._items.update({(k.section, k.name): k for k in keys})

    def section(self, section: str) -> dict[str, FamilyKey]:
        """The declared keys of ``section`` by name, in declaration order (the families are imported first)."""
        self._discovered()
        return {name: k for (sec, name), k in self._items.items() if sec == section}

    def get(self, section: str, name: str) -> FamilyKey | None:
        if (section, name) not in self._items:
            self._discovered()
        return self._items.get((section, name))

    def declarations(self) -> Iterator[tuple[str, type]]:
        """(section, the family's dataclass) for each declared section, in declaration order."""
        self._discovered()
        seen: dict[tuple[str, type], None] = {}
        for k in self._items.values():
            seen.setdefault((k.section, k.declared_by))
        return iter(seen)


FAMILY_KEYS = FamilyKeys()


def family_config(section: str, *, family: str) -> Callable[[type], type]:
    """Class decorator: a model family's own ``model.*`` or ``loss.*`` keys, as a frozen dataclass of typed fields
    with defaults (and comments) like the shared sections, declared next to the family's task::

        @family_config("model", family="cyclegan")
        @dataclass(frozen=True)
        class CycleGANModel:
            g_blocks: int = 6  # residual blocks of each generator

    ``cfg.model.g_blocks`` then reads it, ``--set model.g_blocks=9`` sets it (and, for a model key, the model must
    list it in its ``ModelSpec.fields``), and config.yaml saves it. An optional ``check(self)`` method refuses bad
    values of the section's own keys with a one-line GankitError; it runs with the other value checks on every
    config, on an instance holding the config's values (as :func:`family_section` builds it)."""

    def deco(cls: type) -> type:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"family_config: {cls.__name__} must be a dataclass")
        FAMILY_KEYS.add(section, cls, family)
        return cls

    return deco


def family_section(cls: type, values: Any) -> Any:
    """The family dataclass ``cls`` holding the values that section ``values`` (``cfg.model``, ``cfg.loss``) has for
    its keys: a typed view of a family's own keys."""
    return cls(**{f.name: getattr(values, f.name) for f in dataclasses.fields(cls)})


class _Extensible:
    """A config section that model families extend with keys of their own (``model``, ``loss``). Its dataclass
    fields are the keys every family shares; a family's keys (:func:`family_config`) are held beside them and behave
    the same way: keyword arguments, attributes (``cfg.model.g_blocks``), equality, hashing, repr, to_dict/from_dict
    and YAML. A value never given is the declared default, read when it is asked for."""

    SECTION: ClassVar[str]

    def __init__(self, **values: Any) -> None:
        cls = type(self)
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        own = {k: v for k, v in values.items() if k not in fields}
        for k in own:
            if FAMILY_KEYS.get(cls.SECTION, k) is None:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {k!r}")
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            object.__setattr__(self, f.name, values[f.name] if f.name in values else default)
        object.__setattr__(self, "_family_values", own)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not shared fields: a family's key.
        if not name.startswith("__"):
            own = self.__dict__.get("_family_values", {})
            if name in own:
                return own[name]
            key = FAMILY_KEYS.get(type(self).SECTION, name)
            if key is not None:
                return key.default
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def items(self) -> list[tuple[str, Any]]:
        """(key, value) of every key: the shared ones, then the families' in declaration order."""
        own = self.__dict__.get("_family_values", {})
        shared = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        declared = FAMILY_KEYS.section(type(self).SECTION)
        return shared + [(n, own.get(n, k.default)) for n, k in declared.items()]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.items() == other.items()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(self.items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.items())})"


@dataclass(frozen=True, init=False, repr=False, eq=False)
class ModelConfig(_Extensible):
    """The model keys that more than one family reads; a family's own keys are declared beside its task with
    :func:`family_config` (gankit/tasks/gan.py: ``z_dim``, ``num_classes``, ``g_hidden``, ...; gankit/tasks/pix2pix.py:
    ``norm``, ``patch``; gankit/tasks/cyclegan.py: ``g_blocks``, ``pool_size``). Which keys a model reads is its
    ``ModelSpec.fields``."""

    SECTION = "model"
    name: str = "dcgan"
    # conv models: widths of the first D layer and last G layer; they double with depth up to max_channels
    g_channels: int = 64
    d_channels: int = 64
    max_channels: int = 1024
    g_dropout: float = 0.0  # dropout in G's layers (pix2pix: in the U-Net's decoder)
    init: Literal["dcgan", "default"] = "dcgan"
    spectral_norm_d: bool = False
    spectral_norm_g: bool = False


@dataclass(frozen=True, init=False, repr=False, eq=False)
class LossConfig(_Extensible):
    """The loss keys more than one family reads; a family's own keys are declared beside it (:func:`family_config`;
    the GAN family's ``gp_weight``, ``clip`` and ``instance_noise`` in gankit/tasks/gan.py)."""

    SECTION = "loss"
    name: str = "non_saturating"
    label_smoothing: float = 0.0  # one-sided: real targets become 1 - label_smoothing
    # R1 penalty on real images, (gamma / 2) * E||grad D(x)||^2 (0 = off), with the GAN losses; pix2pix and CycleGAN
    # refuse it (their checks read it)
    r1_gamma: float = 0.0
    r1_every: int = 16  # lazy R1: computed every N-th D update, weighted by N (1 = every update)


# The sections families extend with keys of their own.
SECTIONS: dict[str, type[_Extensible]] = {"model": ModelConfig, "loss": LossConfig}


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    momentum: float = 0.0
    alpha: float = 0.99  # rmsprop smoothing
    rho: float = 0.9  # adadelta
    eps: float = 1e-8
    weight_decay: float = 0.0
    lr_decay: Literal["none", "linear"] = "none"  # linear: constant for the first half, then linearly to 0


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64
    epochs: float = 0  # budget in passes over the data (0 = not set)
    steps: int = 0  # budget in generator updates (0 = not set)
    max_minutes: float = 0  # wall-clock budget (0 = not set); the first budget reached ends training
    # what max_minutes counts: wall-clock time, or this process's CPU time (all its threads; a budget that means the
    # same on a shared or loaded machine, for comparing recipes fairly)
    clock: Literal["wall", "cpu"] = "wall"
    d_steps: int = 1  # discriminator updates per generator update (the 2014 paper's k; WGAN's n_critic)
    log_every: int = 20  # steps between lines in metrics.jsonl
    sample_every: int = 0  # steps between sample grids (0 = once per epoch, at most every preview_seconds)
    preview_seconds: float = (
        30  # with sample_every 0: wall seconds at least between grids (and the scores drawn with them)
    )
    checkpoint_every: int = 1000  # steps between kept checkpoints
    keep_last: int = 3  # numbered checkpoints kept besides `final` and `best`
    ema_half_life: float = 0  # in thousands of images; 0 = no EMA of G
    eval_every: int = 0  # steps between FD evaluations (0 = off)
    on_nan: Literal["stop", "rollback"] = "stop"
    nan_lr_factor: float = 0.5
    nan_max_rollbacks: int = 3
    threads: int = 0  # 0 = the cores this process may use
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    channels_last: bool = True  # memory format for conv models
    progress: bool = True
    # D's inputs: none | a DiffAugment policy such as color,translation,cutout | ada | ada:<policy> (adaptive p)
    augment: str = "none"
    ada_target: float = 0.6  # ADA: the E[sign(D(real))] that p steers toward
    ada_kimg: float = 100.0  # ADA: thousands of real images for p to move by 1
    tensorboard: bool = False  # also write event files under RUN/tensorboard (pip install tensorboard)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast of forward passes; fp16 adds loss scaling (CUDA)
    compile: bool = False  # torch.compile G's and D's forward passes (inductor); checkpoints are unchanged
    tf32: bool = True  # CUDA: TensorFloat-32 matmuls and convolutions (faster, ~10-bit mantissa products)
    sync_bn: bool = False  # several processes on CUDA: BatchNorm -> SyncBatchNorm (statistics over the global batch)
    dist_timeout: float = 10.0  # minutes a collective waits for the other processes before the run fails
    # gradient accumulation: each update sums the gradients of this many micro-batches of batch_size / accumulate
    accumulate: int = 1
    # fine-tuning: start from another run's weights (a checkpoint folder; --init-from RUN resolves it), not its
    # optimizer state or step; which parts; how many of D's first weight layers stay fixed
    init_from: str | None = None
    init_parts: tuple[str, ...] = ("g", "d", "ema")  # the model's networks by name (a GAN's: g, d) and ema
    freeze_d: int = 0


@dataclass(frozen=True)
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @staticmethod
    def from_dict(d: dict[str, Any], where: str = "config") -> "Config":
        return from_dict(Config, d, where)

    def replace(self, **dotted: Any) -> "Config":
        """A copy with dotted keys overridden: ``cfg.replace(**{"train.steps": 5})``."""
        d = self.to_dict()
        for key, value in dotted.items():
            set_dotted(d, key, value)
        return Config.from_dict(d)


# ---------------------------------------------------------------------------------------------------------------------
# dict <-> dataclass, strict


def to_dict(obj: Any) -> Any:
    if isinstance(obj, _Extensible):
        return {k: to_dict(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, list -> tuple)."""
    origin = get_origin(tp)
    bad = GankitError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise GankitError(
                f"{key}: expected {_type_name(tp)}, got {value!r}{closest(str(value), [str(a) for a in get_args(tp)])}"
            )
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except GankitError:
                pass
        raise bad
    if origin is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad
        return tuple(_coerce(v, get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return int(value)  # a plain int, not the YAML reader's ScalarInt
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise GankitError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        # An unquoted number in YAML (`dir: 1e3`, `--set data.dir=1e3`) is taken as written: a folder named 1e3 is
        # meant, never "1000.0". Only numbers read from YAML carry their text; other non-strings are refused.
        text = getattr(value, "yaml_text", None)
        if isinstance(text, str) and not isinstance(value, bool):
            return text
        raise bad
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise GankitError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, key)
    raise TypeError(f"unsupported config type {tp} for {key}")  # a bug in gankit, not user input


def from_dict(cls: type, d: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from ``d``; an unknown key or wrong type is a one-line error naming the key."""
    if not isinstance(d, dict):
        raise GankitError(f"{where}: expected a mapping, got {d!r}")
    hints = key_types(cls)
    names = list(hints)
    prefix = "" if where == "config" else where + "."
    for key in d:
        if key not in names:
            raise GankitError(f"unknown config key '{prefix}{key}'{closest(str(key), names)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in d.items()}
    return cls(**kwargs)


def key_types(cls: type) -> dict[str, Any]:
    """Every key of dataclass ``cls`` and its type: its fields, then (for ``model`` and ``loss``) the keys the
    families declare."""
    hints = typing.get_type_hints(cls)
    out = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    if issubclass(cls, _Extensible):
        out.update({name: k.type for name, k in FAMILY_KEYS.section(cls.SECTION).items()})
    return out


# ---------------------------------------------------------------------------------------------------------------------
# layering


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "train.steps", 5)``; unknown sections are caught later by ``from_dict``."""
    parts = key.split(".")
    node = d
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise GankitError(f"--set {key}: '{p}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_set(item: str) -> tuple[str, Any]:
    """``"optim.lr_g=1e-4"`` -> ``("optim.lr_g", 0.0001)``; values are read as YAML scalars or lists."""
    if "=" not in item:
        raise GankitError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise GankitError(f"--set {item!r}: the key is empty")
    try:
        # YAML 1.2-style numbers: 1e-4 is a float; an unquoted number keeps its text for string fields.
        value = load_yaml_text(raw, f"--set {key}") if raw.strip() else ""
    except GankitError:
        value = raw  # not YAML (or refused, e.g. '*x'): the text as given, type-checked with the rest
    return key, value


BUDGET_KEYS = ("train.steps", "train.epochs", "train.max_minutes")


def budget_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """A budget given as an override replaces the file's budget instead of racing it: the budget keys it does not
    name are set to 0."""
    if not any(k in overrides for k in BUDGET_KEYS):
        return dict(overrides)
    return {**{k: 0 for k in BUDGET_KEYS}, **overrides}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping of sections ({} for an empty file); see gankit.yamlio for what is refused."""
    p = Path(path)
    data = load_yaml_file(p, what="config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GankitError(f"config file {p}: expected a mapping of sections (data, model, loss, optim, train)")
    return data


def dump_yaml(cfg: Config) -> str:
    """The config as YAML that reads back to the same Config (strings that look like numbers are quoted)."""
    return dump_plain_yaml(cfg.to_dict())


def check_values(cfg: Config) -> None:
    """Value checks that types cannot express and that need no registry (names are checked in :mod:`.layering`)."""
    positive = {
        "train.batch_size": cfg.train.batch_size,
        "train.d_steps": cfg.train.d_steps,
        "train.log_every": cfg.train.log_every,
        "train.checkpoint_every": cfg.train.checkpoint_every,
        "train.dist_timeout": cfg.train.dist_timeout,
        "model.g_channels": cfg.model.g_channels,
        "model.d_channels": cfg.model.d_channels,
        "data.image_size": cfg.data.image_size,
        "optim.lr_g": cfg.optim.lr_g,
        "optim.lr_d": cfg.optim.lr_d,
    }
    for key, v in positive.items():
        if not v > 0:
            raise GankitError(f"{key} must be > 0, got {v}")
    non_negative = {
        "train.epochs": cfg.train.epochs,
        "train.steps": cfg.train.steps,
        "train.max_minutes": cfg.train.max_minutes,
        "train.sample_every": cfg.train.sample_every,
        "train.preview_seconds": cfg.train.preview_seconds,
        "train.keep_last": cfg.train.keep_last,
        "train.ema_half_life": cfg.train.ema_half_life,
        "train.eval_every": cfg.train.eval_every,
        "train.threads": cfg.train.threads,
        "model.g_dropout": cfg.model.g_dropout,
        "optim.momentum": cfg.optim.momentum,
        "optim.weight_decay": cfg.optim.weight_decay,
        "loss.label_smoothing": cfg.loss.label_smoothing,
        "data.limit": cfg.data.limit,
        "data.holdout": cfg.data.holdout,
    }
    for key, v in non_negative.items():
        if v < 0:
            raise GankitError(f"{key} must be >= 0, got {v}")
    for key, v in {
        "model.g_dropout": cfg.model.g_dropout,
        "loss.label_smoothing": cfg.loss.label_smoothing,
        "optim.beta1": cfg.optim.beta1,
        "optim.beta2": cfg.optim.beta2,
    }.items():
        if not 0 <= v < 1:
            raise GankitError(f"{key} must be in [0, 1), got {v}")
    if not 0 <= cfg.seed < 2**32:  # derived seeds (seed * 1_000_003 + epoch) must still fit torch's 64 bits
        raise GankitError(f"seed must be in [0, 2**32), got {cfg.seed}")
    if not cfg.optim.eps > 0:
        raise GankitError(f"optim.eps must be > 0, got {cfg.optim.eps}")
    if cfg.model.max_channels < 1:
        raise GankitError(f"model.max_channels must be >= 1, got {cfg.model.max_channels}")
    if not 0 <= cfg.optim.alpha < 1 or not 0 <= cfg.optim.rho <= 1:
        raise GankitError(
            f"optim.alpha must be in [0, 1) and optim.rho in [0, 1], got {cfg.optim.alpha} and {cfg.optim.rho}"
        )
    if cfg.train.nan_max_rollbacks < 0:
        raise GankitError(f"train.nan_max_rollbacks must be >= 0, got {cfg.train.nan_max_rollbacks}")
    if cfg.train.threads > 1024:
        raise GankitError(
            f"train.threads={cfg.train.threads} is not a thread count; use 0 (the cores this process may use) or a small number"
        )
    if cfg.data.image_height < 0:
        raise GankitError(f"data.image_height must be >= 0 (0 = square images), got {cfg.data.image_height}")
    if not 0 <= cfg.data.pad_value <= 255:
        raise GankitError(f"data.pad_value must be a gray level in 0..255, got {cfg.data.pad_value}")
    if cfg.data.channels not in (0, 1, 3):
        raise GankitError(f"data.channels must be 0 (the data set's own), 1 or 3, got {cfg.data.channels}")
    if cfg.loss.r1_gamma < 0 or cfg.loss.r1_every < 1:
        raise GankitError(
            f"loss.r1_gamma must be >= 0 and loss.r1_every >= 1, got {cfg.loss.r1_gamma} and {cfg.loss.r1_every}"
        )
    if not 0 < cfg.train.ada_target < 1 or not cfg.train.ada_kimg > 0:
        raise GankitError(
            f"train.ada_target must be in (0, 1) and train.ada_kimg > 0, got {cfg.train.ada_target} and {cfg.train.ada_kimg}"
        )
    if cfg.train.accumulate < 1 or cfg.train.batch_size % cfg.train.accumulate:
        raise GankitError(
            f"train.accumulate={cfg.train.accumulate} must be >= 1 and divide train.batch_size="
            f"{cfg.train.batch_size} (micro-batches of batch_size / accumulate images)"
        )
    if not cfg.train.init_parts:
        raise GankitError("train.init_parts is empty; name some of g, d, ema (e.g. --init-parts g,d)")
    if cfg.train.freeze_d < 0:
        raise GankitError(f"train.freeze_d must be >= 0, got {cfg.train.freeze_d}")
    if cfg.train.freeze_d and not cfg.train.init_from:
        raise GankitError(
            f"train.freeze_d={cfg.train.freeze_d} freezes layers of a D that was trained elsewhere; "
            f"give --init-from RUN too (or set train.freeze_d=0)"
        )
    if not 0 < cfg.train.nan_lr_factor < 1:
        raise GankitError(f"train.nan_lr_factor must be in (0, 1), got {cfg.train.nan_lr_factor}")
    # The families' own keys: each declared section's check, on its values in this config.
    for section, cls in FAMILY_KEYS.declarations():
        check = getattr(cls, "check", None)
        if check is not None:
            check(family_section(cls, getattr(cfg, section)))


# ---------------------------------------------------------------------------------------------------------------------
# comparing configs

# Keys that change how a run is watched or where its files are, not what it computes.
WATCH_KEYS = frozenset(
    {
        "train.progress",
        "train.threads",
        "train.device",
        "train.log_every",
        "train.sample_every",
        "train.preview_seconds",
        "train.compile",
        "train.dist_timeout",
        "train.checkpoint_every",
        "train.keep_last",
        "data.cache_dir",
        "data.download",
    }
)
# Runs that differ only in these keys are the same run (compare and report leave them out of their tables). The
# data's folder is one of them: the same files read from another path are the same data.
NOT_IDENTITY = WATCH_KEYS | {"data.dir"}
# The one rule of what a continued run (`train --resume`, a re-run sweep) may change: its budget and the settings
# beside the training step (watching, pacing of samples, scores and checkpoints, what to do on NaN). Every other key
# changes what the checkpoints mean - their shapes, the data or its order, the losses - and is refused. data.dir is
# refused too: another folder may hold other images, which no check could tell.
RESUME_MAY_CHANGE = frozenset(
    {
        *BUDGET_KEYS,
        "train.clock",
        *WATCH_KEYS,
        "train.eval_every",
        "train.tensorboard",
        "data.cache",
        "train.on_nan",
        "train.nan_lr_factor",
        "train.nan_max_rollbacks",
    }
)


def resume_change(saved: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first key outside :data:`RESUME_MAY_CHANGE` whose value differs between two config dicts, as
    ``"key: old -> new"``; None when the new config may continue the saved run."""
    a, b = flatten(saved), flatten(new)
    for key in sorted(set(a) | set(b)):
        if key not in RESUME_MAY_CHANGE and _canon(a.get(key)) != _canon(b.get(key)):
            return f"{key}: {a.get(key)!r} -> {b.get(key)!r}"
    return None


def _canon(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value  # a saved list and a built tuple are the same value


def refuse_resume_change(saved: dict[str, Any], new: dict[str, Any], run_dir: Any) -> None:
    """GankitError naming the first key that a continued run may not change (see :data:`RESUME_MAY_CHANGE`)."""
    change = resume_change(saved, new)
    if change:
        raise GankitError(
            f"--resume {run_dir}: {change} would change what its checkpoints mean; a resume may change only the "
            f"budget (--steps/--epochs/--max-minutes) and side settings (logging, previews, evaluation and checkpoint "
            f"pacing, threads, device); start a new run with --out for this change (nothing was written)"
        )


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections -> dotted keys: ``{"train": {"steps": 5}}`` -> ``{"train.steps": 5}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def fmt_value(value: Any) -> str:
    """A config value as short text for run names and tables: lists joined by '-', floats as %g."""
    if isinstance(value, (list, tuple)):
        return "-".join(fmt_value(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
