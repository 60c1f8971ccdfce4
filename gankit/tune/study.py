"""A study: its folder, its storage (SQLite in the folder, or a server), its fingerprint, and what every worker needs.

``STUDY/study.json`` holds the :class:`StudySpec`: the base config file, the flags, the space, the objective, the
budget, the held-out part and the feature network that score every trial, and a fingerprint over the parts that
define the search. Optuna's storage holds the trials; the study carries the fingerprint as a user attribute, so a
study name that exists with another space or base config is refused instead of mixing two searches.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config.schema import BUDGET_KEYS, RESUME_MAY_CHANGE, flatten
from ..core.errors import GankitError
from ..core.io import write_json

FINGERPRINT_ATTR = "gankit:fingerprint"
BASE_ATTR = "base_config"  # user attribute of the trial `gankit tune --enqueue-base` queued (the report marks it)
SPEC_FILE = "study.json"
DB_FILE = "study.db"
# the optional second objectives (measured in gankit.tune.objective.SECOND) and which way is better
SECOND_DIRECTIONS = {"images_per_s": "maximize", "params": "minimize"}
SQLITE_TIMEOUT_S = 120  # a worker waits this long for another's write lock before SQLite gives up


def need_optuna() -> Any:
    """Import optuna, or say in one line how to install it (it is an optional extra)."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise GankitError(
            "gankit tune needs Optuna: pip install 'gankit[tune]' (or pip install optuna==5.1.0)"
        ) from None
    import warnings

    # gankit prints its own progress line and says itself why a trial stopped (Optuna would add a traceback to a
    # Ctrl-C'd trial's warning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # Heartbeats and retries are marked experimental; gankit pins the version, so the notes only add noise.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


CLAIMS_TABLE = (
    "gankit_requeued"  # (study name, trial number) of every failed trial queued again, in the study's database
)
# The claim number of the base config's trial (`gankit tune --enqueue-base`): no Optuna trial has a negative number
BASE_CLAIM = -1


class RequeueOnce:
    """Optuna's retry of a failed trial (same parameters, at most 3 times), made once per failed trial across every
    process and machine of the study.

    Two `gankit tune` processes may both find the same trial of a dead worker failed (one when its heartbeat stops,
    the other at its start), and Optuna's callback alone would then queue it twice. Before queueing, this inserts
    (study, trial number) under a primary key in a table of its own in the study's database: the database lets one
    insert through and refuses the others, whatever the timing (SQLite serialises writers; PostgreSQL's unique index
    makes a second insert wait and fail)."""

    def __init__(self, engine: Any = None) -> None:
        self.retry = need_optuna().storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
        self.engine = engine  # the RDBStorage's (sqlalchemy) engine; open_storage sets it once the storage exists

    def __call__(self, study: Any, trial: Any) -> bool:
        """Queue ``trial`` again; False when another process has queued it (or is queueing it) already."""
        if self.engine is not None and not claim_once(self.engine, study.study_name, trial.number):
            return False
        self.retry(study, trial)
        return True


def claim_once(engine: Any, study_name: str, number: int) -> bool:
    """True for exactly one caller per (study, number), in any number of processes on one database: a trial number
    (its requeue), or :data:`BASE_CLAIM` (queueing the base config's trial)."""
    import sqlalchemy

    ddl = (
        f"CREATE TABLE IF NOT EXISTS {CLAIMS_TABLE} (study_name VARCHAR(512) NOT NULL, trial_number INTEGER "
        f"NOT NULL, PRIMARY KEY (study_name, trial_number))"
    )
    try:
        with engine.begin() as con:
            con.execute(sqlalchemy.text(ddl))
    except sqlalchemy.exc.IntegrityError:  # PostgreSQL: another process created the table at the same moment
        pass
    try:
        with engine.begin() as con:
            con.execute(
                sqlalchemy.text(f"INSERT INTO {CLAIMS_TABLE} (study_name, trial_number) VALUES (:s, :n)"),
                {"s": study_name, "n": number},
            )
    except sqlalchemy.exc.IntegrityError:
        return False
    return True


@dataclass
class StudySpec:
    """Everything a worker (on this machine or another) needs to run trials of one study."""

    name: str
    folder: str
    storage: str
    config: str | None  # the base config file
    flags: dict[str, Any]  # dotted overrides from the command line (budget included)
    space: dict[str, Any]  # key -> Dist.to_json()
    tune_keys: dict[str, Any]  # what tune adds to every trial: holdout, eval_every, checkpoint_every, progress
    metric: str  # the validation key that is the score, e.g. eval/fd
    direction: str  # minimize / maximize
    sampler: str
    pruner: str
    seed: int
    trials: int
    heartbeat: int
    reference: dict[str, Any] = field(default_factory=dict)  # held-out images' hash and the feature network
    # "score" (the metric), then an optional second objective (gankit.tune.objective.SECOND): Optuna multi-objective
    objectives: list[str] = field(default_factory=lambda: ["score"])

    @property
    def directions(self) -> list[str]:
        return [self.direction, *(SECOND_DIRECTIONS[o] for o in self.objectives[1:])]

    def fingerprint(self) -> str:
        """What defines the search: base config, flags, space, objective and tune's own keys (not --trials or
        --workers, which may change between runs of the same study)."""
        own = {k: v for k, v in self.tune_keys.items() if k != "data.holdout"}  # chosen from the base config's data
        # Settings of where and how a worker runs (threads, device, data folder, logging) may differ between the
        # machines and runs of one study; what a trial trains and its budget may not.
        side = (RESUME_MAY_CHANGE - {*BUDGET_KEYS, "train.clock"}) | {"train.device", "data.dir", "data.cache_dir"}
        config = {k: v for k, v in flatten(self.resolved_base).items() if k not in side}
        core = {
            "config": config,
            "space": self.space,
            "tune_keys": own,
            "metric": self.metric,
            "direction": self.direction,
        }
        if len(self.objectives) > 1:  # (single-objective studies keep the fingerprint they had before this option)
            core["objectives"] = self.objectives
        return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:16]

    resolved_base: dict[str, Any] = field(default_factory=dict)  # the base config resolved, for the fingerprint

    def save(self) -> None:
        write_json(
            Path(self.folder) / SPEC_FILE,
            {**asdict(self), "storage": redact(self.storage), "fingerprint": self.fingerprint()},
        )

    @property
    def root(self) -> Path:
        return Path(self.folder)


def redact(url: str) -> str:
    """A storage URL without its password (study.json and messages are read by people)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def default_storage(folder: Path) -> str:
    return f"sqlite:///{(folder / DB_FILE).resolve()}"


def prepare_sqlite(url: str) -> None:
    """WAL journal on the study's SQLite file (persistent in the file): readers (the progress line, the report) do
    not block the workers' writes, and concurrent writers wait on the busy timeout instead of failing."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url[len("sqlite:///") :])
    try:
        con = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error as e:
        raise GankitError(f"study database {path}: {e}") from None


def open_storage(url: str, heartbeat: int | None = None, retry: bool = False) -> Any:
    """Optuna's RDBStorage for ``url``; with ``heartbeat`` a worker's trials beat every that many seconds, and a trial
    silent for 3 beats is failed and (``retry``) queued again with the same parameters. Connection problems are one
    line naming the server (without the password)."""
    optuna = need_optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 10}
    extra: dict[str, Any] = {}
    requeue = RequeueOnce()
    if heartbeat:
        extra = {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat}
        if retry:
            extra["heartbeat_stale_trial_callback"] = requeue
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **extra)
        requeue.engine = storage.engine
        return storage
    except ImportError:  # Optuna re-raises the missing driver as an ImportError of its own
        raise GankitError(
            f"--storage {redact(url)}: the database driver is not installed; for PostgreSQL: pip install "
            f"'gankit[tune-postgres]' (psycopg 3, binary)"
        ) from None
    except Exception as e:  # sqlalchemy's OperationalError/ArgumentError: a server that is down, a wrong password
        first = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise GankitError(
            f"--storage {redact(url)}: cannot open the study storage: "
            f"{first[0] if first else type(e).__name__} (check the host, port, user and password)"
        ) from None


def check_writable(folder: Path) -> None:
    """The study folder must take new files (trials, the report); a read-only one is refused before any work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # made and removed: nothing of it stays
            pass
    except OSError as e:
        raise GankitError(f"study folder {folder} is not writable ({e.strerror or e}); choose another --out") from None


def create_or_load(spec: StudySpec, storage: Any, sampler: Any = None, pruner: Any = None) -> Any:
    """The study named ``spec.name`` in ``storage``: created (with the fingerprint) or loaded when its fingerprint
    matches; a study of that name with another fingerprint is refused."""
    optuna = need_optuna()
    fp = spec.fingerprint()
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        try:
            study = optuna.create_study(
                study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner, directions=spec.directions
            )
            study.set_user_attr(FINGERPRINT_ATTR, fp)
        except optuna.exceptions.DuplicatedStudyError:  # another machine created it a moment ago
            study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
    for _ in range(50):  # the creator sets the fingerprint right after creating the study
        have = study.user_attrs.get(FINGERPRINT_ATTR)
        if have is not None:
            break
        import time

        time.sleep(0.1)
    if have != fp:
        raise GankitError(
            f"study {spec.name!r} in {redact(spec.storage)} was made with another config or space "
            f"(fingerprint {have} here {fp}); give another --study-name or --out, or the same "
            f"config, flags and space as before"
        )
    return study
