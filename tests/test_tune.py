"""`gankit tune` with real components: Optuna on SQLite and on a PostgreSQL server started here, real worker
processes (one of them killed with SIGKILL mid-trial), tiny digits trials, the study report in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gankit.cli import main
from gankit.config.layering import resolve
from gankit.core.errors import GankitError
from gankit.tune.space import Dist, parse_dist, read_space

optuna = pytest.importorskip("optuna", reason="optuna is not installed (pip install 'gankit[tune]')")

ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = """\
data: {name: digits, image_size: 16, limit: 160}
model: {name: dcgan, z_dim: 8, g_channels: 8, d_channels: 8}
train: {batch_size: 16, log_every: 4, threads: 1, keep_last: 2}
"""
EVIL = "st<b>&'x"  # a study (and so study name) that must show as text in the report


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _tune(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gankit", "tune", *args],
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    p.write_text(TINY_YAML)
    return p


def _workers_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """gankit.workers.run_workers as a loop in this process: for tests of what a worker does (sampling, scoring,
    failing a trial, continuing one, the seed runs), which one process shows as well as several; spawning each worker
    would import torch, gankit and Optuna again (about 4 CPU-seconds). The tests of processes (a worker killed,
    Ctrl-C, two workers on one database) keep real ones."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    import gankit.workers

    def run_workers(n, target, args=(), *, threads=0, tick=None, tick_seconds=2.0):
        # one thread, as a worker of a one-core share runs (numpy's BLAS too: the FD's eigh otherwise spins a second
        # thread, which on a busy machine costs more CPU time than the whole trial)
        with threadpool_limits(1):
            codes = [target(i, 1, *args) for i in range(n)]
        if tick is not None:
            tick()
        return [gankit.workers.WorkerExit(i, os.getpid(), int(c or 0)) for i, c in enumerate(codes)], None

    monkeypatch.setattr(gankit.workers, "run_workers", run_workers)


@pytest.fixture
def in_process_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    _workers_here(monkeypatch)


# ---------------------------------------------------------------------------------------------------------------------
# the space


def test_space_file_and_params_parse(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "optim:\n  lr_g: loguniform(1e-5, 1e-3)\nmodel.g_channels: int(8, 32, 8)\n"
        "loss.name: choice(non_saturating, hinge)\ntrain.batch_size: [16, 32]\n"
    )
    space = read_space(f, ["optim.beta1=uniform(0, 0.9)", "loss.name=choice(lsgan)"])
    assert space["optim.lr_g"] == Dist("loguniform", 1e-5, 1e-3)
    assert space["model.g_channels"].grid_values("k") == [8, 16, 24, 32]
    assert space["loss.name"].choices == ("lsgan",)  # --param replaces the file's entry
    assert space["train.batch_size"].choices == (16, 32)
    assert space["optim.beta1"] == Dist("uniform", 0.0, 0.9)
    assert parse_dist("train.augment", 'choice(none, "translation,cutout")').choices == ("none", "translation,cutout")


@pytest.mark.parametrize(
    "name,config",
    [
        ("digits", "cdcgan-digits"),
        ("mnist", "recommended/mnist-conditional"),
        ("cifar10", "recommended/cifar10-32"),
        ("folder", "recommended/folder-64"),
    ],
)
def test_shipped_spaces_fit_their_configs(name: str, config: str) -> None:
    from gankit.tune.space import check_space

    space = read_space(ROOT / "configs" / "spaces" / f"{name}.yaml", [])
    check_space(
        space,
        lambda extra: resolve(
            file=ROOT / "configs" / f"{config}.yaml", overrides={"data.dir": "/nonexistent", **extra}
        ),
    )
    assert len(space) >= 5
    with pytest.raises(GankitError, match="not a single value"):
        parse_dist("model.g_layers", "choice([64, 64], [128])")  # Optuna's choices are scalars
    assert type(parse_dist("k", "choice(1, 2.5, x)").choices[0]) is int  # plain types, stored as JSON by Optuna


BAD = {
    "unknown key": (["--param", "train.batchsize=choice(16, 32)"], "batchsize"),
    "key the model does not read": (["--param", "model.g_hidden=choice(64, 128)"], "g_hidden"),
    "loguniform from 0": (["--param", "optim.lr_g=loguniform(0, 1)"], "low > 0"),
    "empty choice": (["--param", "model.z_dim=choice()"], "empty choice"),
    "grid with a continuous range": (["--sampler", "grid", "--param", "optim.lr_g=uniform(1e-4, 1e-3)"], "grid"),
    "not a distribution": (["--param", "optim.lr_g=between(1, 2)"], "unknown distribution"),
    "bad value in a choice": (["--param", "optim.name=choice(adam, adamm)"], "adamm"),
    "a pruner with two objectives": (
        ["--objective", "fd,params", "--pruner", "median", "--param", "optim.lr_g=loguniform(1e-4, 1e-3)"],
        "does not prune multi-objective",
    ),
    "unknown second objective": (
        ["--objective", "fd,speed", "--param", "optim.lr_g=loguniform(1e-4, 1e-3)"],
        "images_per_s, params",
    ),
    "a base value outside the space": (
        [
            "--enqueue-base",
            "--param",
            "optim.lr_g=loguniform(1e-4, 1e-3)",
            "--param",
            "model.g_channels=choice(16, 32)",
        ],
        "model.g_channels=8 is outside the space's choice(16, 32)",
    ),
    "a base value off an int range's step": (
        ["--enqueue-base", "--param", "model.g_channels=int(4, 16, 3)"],
        "model.g_channels=8 is outside the space's int(4, 16, 3)",
    ),
    "the base queued into a grid": (
        ["--enqueue-base", "--sampler", "grid", "--param", "model.g_channels=choice(8, 16)"],
        "--enqueue-base with --sampler grid",
    ),
    "unreachable server": (
        ["--param", "optim.lr_g=loguniform(1e-4, 1e-3)", "--storage", "postgresql://gankit:s3cret@127.0.0.1:9/none"],
        "cannot open the study storage",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_2(case: str, tiny: Path, tmp_path: Path, capsys) -> None:
    args, needle = BAD[case]
    out = tmp_path / "study"
    rc = main(["tune", str(tiny), "--steps", "4", "--out", str(out), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("gankit: error: ") and needle in err[0], err
    assert "s3cret" not in err[0] and "Traceback" not in err[0]
    assert not (out / "study.json").exists() and not list(out.glob("trial-*"))


def test_read_only_study_folder_is_refused(tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    out.chmod(0o555)
    if os.access(out, os.W_OK):  # root writes anywhere: use a folder the kernel keeps read-only for everyone
        out = Path("/sys/gankit-tune-study")
        if os.access("/sys", os.W_OK) and not _sys_is_read_only():
            pytest.skip("running as root on a machine where /sys is writable: no read-only folder to try")
    rc = main(["tune", str(tiny), "--steps", "4", "--out", str(out), "--param", "optim.lr_g=loguniform(1e-4, 1e-3)"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not writable" in err[0], err
    if out.parent == tmp_path:
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    else:
        assert not out.exists()


def _sys_is_read_only() -> bool:
    try:
        Path("/sys/gankit-probe").mkdir()
    except OSError:
        return True
    Path("/sys/gankit-probe").rmdir()
    return False


# ---------------------------------------------------------------------------------------------------------------------
# workers on SQLite, one killed mid-trial; the report


def _load(study_dir: Path, url: str | None = None):
    from gankit.tune.study import need_optuna

    need_optuna()
    spec = json.loads((study_dir / "study.json").read_text())
    return optuna.load_study(study_name=spec["name"], storage=url or f"sqlite:///{study_dir / 'study.db'}")


def _kill_a_worker_mid_trial(running: Callable[[], bool], study: Path, timeout: float = 150) -> int:
    """SIGKILL the process training a trial once that trial has a checkpoint past step 0 and is not finished."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and running():
        for trial in sorted(study.glob("trial-*")):
            ck = trial / "checkpoints"
            latest = (ck / "latest").read_text().strip() if (ck / "latest").is_file() else ""
            if latest >= "step-0000006" and not (ck / "final").exists() and (trial / ".lock").exists():
                try:
                    pid = json.loads((trial / ".lock").read_text())["pid"]
                except (OSError, ValueError, KeyError):
                    continue
                assert pid != os.getpid()  # a worker process, never this one
                os.kill(pid, signal.SIGKILL)
                return int(trial.name.split("-")[1])
        time.sleep(0.05)
    pytest.fail("no trial reached a checkpoint to kill it at")


@pytest.mark.slow
def test_two_workers_on_sqlite_survive_a_kill_and_report(tiny: Path, tmp_path: Path, capsys) -> None:
    study = tmp_path / EVIL
    args = [
        str(tiny),
        "--out",
        str(study),
        "--trials",
        "2",
        "--workers",
        "2",
        "--steps",
        "24",
        "--eval-every",
        "6",
        "--heartbeat",
        "1",
        "--param",
        "optim.lr_g=loguniform(1e-4, 1e-3)",
        "--param",
        "model.g_channels=choice(8, 16)",
    ]
    # The command runs in a thread of this process (the signals it would pass on are not part of this test), its two
    # workers are real processes, and one of them is killed.
    ended: dict[str, int] = {}
    command = threading.Thread(target=lambda: ended.setdefault("rc", main(["tune", *args])), daemon=True)
    command.start()
    killed = _kill_a_worker_mid_trial(command.is_alive, study)
    command.join(timeout=240)
    out = capsys.readouterr().err
    assert ended.get("rc") == 0, out
    assert "was killed by SIGKILL" in out, out
    s = _load(study)
    states = [t.state.name for t in s.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") >= 2, out
    retry = [t for t in s.trials if t.system_attrs.get("failed_trial") == killed]
    assert retry and retry[0].state.name in ("COMPLETE", "PRUNED"), [
        (t.number, t.state, t.system_attrs) for t in s.trials
    ]
    assert retry[0].user_attrs["resumed_from_step"] >= 6  # continued from the dead trial's checkpoint, not step 0
    folder = study / retry[0].user_attrs["folder"]
    assert folder.name == f"trial-{killed:04d}" and (folder / "summary.json").is_file()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["step"] == 24 or summary["stopped_by"] == "pruned"
    for t in s.trials:  # every finished trial is an ordinary run folder with its own report
        if t.state.name in ("COMPLETE", "PRUNED"):
            run = study / t.user_attrs["folder"]
            assert (run / "config.yaml").is_file() and (run / "report.html").is_file()
            if t.state.name == "PRUNED":
                assert json.loads((run / "summary.json").read_text())["stop_note"].startswith("pruned at step")
    # best.yaml is a complete config that `gankit train` accepts, with the best trial's values
    best = min((t for t in s.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    cfg = resolve(file=study / "best.yaml")
    assert (
        cfg.optim.lr_g == pytest.approx(best.params["optim.lr_g"])
        and cfg.model.g_channels == best.params["model.g_channels"]
    )
    assert cfg.data.holdout == 0 and cfg.train.steps == 24
    # how often the search scored its trials (--eval-every 6) is not part of the recipe
    assert cfg.train.eval_every == resolve(file=tiny).train.eval_every
    html = (study / "report.html").read_text()
    assert "st&lt;b&gt;&amp;&#x27;x" in html and EVIL not in html
    assert f'href="trial-{best.number:04d}/report.html"' in html or best.user_attrs["folder"] in html
    # the same study name with another space is refused (before any worker starts), and nothing of the study changes
    n = len(s.trials)
    capsys.readouterr()
    assert main(["tune", *args[:-1], "model.g_channels=choice(8, 32)"]) == 2
    err = capsys.readouterr().err
    assert "another config or space" in err and len(err.strip().splitlines()) == 1, err
    assert len(_load(study).trials) == n
    # `gankit report STUDY` rewrites the page from the storage
    (study / "report.html").unlink()
    assert main(["report", str(study)]) == 0 and (study / "report.html").is_file()
    _open_in_chromium(study / "report.html")


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_trial_and_the_same_command_continues(
    tiny: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    study = tmp_path / "c"
    args = [
        str(tiny),
        "--out",
        str(study),
        "--trials",
        "1",
        "--steps",
        "24",
        "--eval-every",
        "6",
        "--pruner",
        "none",
        "--param",
        "optim.lr_g=loguniform(1e-4, 1e-3)",
    ]
    proc = _tune(*args)
    ck = study / "trial-0000" / "checkpoints"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 150 and proc.poll() is None:
        if (ck / "latest").is_file() and (ck / "latest").read_text().strip() >= "step-0000006":
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "run the same command to continue" in out and "Traceback" not in out, out
    step = int((ck / "latest").read_text().strip()[5:])
    assert 6 <= step < 24 and not (ck / "final").exists()
    # the same command again: the interrupted trial is queued again and continues from its checkpoint (what the
    # command and a worker do then, shown here in this process)
    _workers_here(monkeypatch)
    assert main(["tune", *args]) == 0, capsys.readouterr().err
    trials = _load(study).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"], capsys.readouterr().err
    assert trials[1].user_attrs["resumed_from_step"] == step and trials[1].user_attrs["folder"] == "trial-0000"
    assert json.loads((study / "trial-0000" / "summary.json").read_text())["step"] == 24


def _open_in_chromium(page: Path) -> None:
    from test_report import _chrome, _open

    browser = _chrome()
    try:
        _open(browser, page)
        svgs = browser.execute_script("return document.querySelectorAll('svg.chart').length")
        rows = browser.execute_script("return document.querySelectorAll('table.sortable tbody tr').length")
        title = browser.execute_script("return document.querySelector('h1').textContent")
        assert svgs >= 4 and rows >= 3 and EVIL in title  # 2 trials finished + the one whose worker was killed
    finally:
        browser.quit()


# ---------------------------------------------------------------------------------------------------------------------
# a real PostgreSQL server


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql); .ci/run installs it")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="gankit-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the server as the package's postgres user
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    (root / "pw").write_text("s3cret\n")
    if as_user:
        shutil.chown(root / "pw", "postgres")
    port = _free_port()
    data = root / "data"
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "gankit",
            "--auth=scram-sha-256",
            f"--pwfile={root / 'pw'}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"postgresql://gankit:s3cret@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_postgresql(postgres: str, tiny: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'gankit[tune-postgres]')")
    wrong = postgres.replace("s3cret", "wrong")
    rc = main(
        [
            "tune",
            str(tiny),
            "--steps",
            "4",
            "--out",
            str(tmp_path / "w"),
            "--storage",
            wrong,
            "--param",
            "optim.lr_g=loguniform(1e-4, 1e-3)",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "password authentication failed" in err and ":wrong@" not in err, err
    assert len(err.strip().splitlines()) == 1
    args = [
        str(tiny),
        "--trials",
        "2",
        "--workers",
        "2",
        "--steps",
        "8",
        "--eval-every",
        "4",
        "--storage",
        postgres,
        "--study-name",
        "pg-study",
        "--param",
        "optim.lr_g=loguniform(1e-4, 1e-3)",
    ]
    # (the command in this process: its two workers are real processes, which is what the database sees)
    assert main(["tune", *args, "--out", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    s = optuna.load_study(study_name="pg-study", storage=postgres)
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in s.trials) >= 2
    assert "s3cret" not in (tmp_path / "a" / "study.json").read_text()
    # a second study in the same database does not mix with the first
    other = optuna.create_study(study_name="another", storage=postgres)
    assert other.trials == [] and len(optuna.load_study(study_name="pg-study", storage=postgres).trials) == len(
        s.trials
    )


def test_a_sampled_value_the_data_cannot_take_fails_that_trial_only(
    tiny: Path, tmp_path: Path, in_process_workers
) -> None:
    """A batch larger than the data is met inside training, not by the space check: that trial fails with its
    message and counts as done; the search carries on; a study where no trial completes says so (exit 1)."""
    out = tmp_path / "study"
    args = ["tune", str(tiny), "--param", "train.batch_size=choice(100000)", "--trials", "2", "--workers", "1"]
    args += ["--steps", "2", "--eval-every", "2", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 1
    import optuna

    study = optuna.load_study(
        study_name=json.loads((out / "study.json").read_text())["name"], storage=f"sqlite:///{out / 'study.db'}"
    )
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(failed) == 2 and all("batch" in t.user_attrs["error"] for t in failed)
    assert not (out / "best.yaml").exists()


def test_enqueue_base_trains_the_base_config_first_and_once(tiny: Path, tmp_path: Path, in_process_workers) -> None:
    """--enqueue-base: trial 0 is the base config's own values of the space's keys, marked in the report; running the
    command again (for more trials) does not queue it a second time; a base value outside the space is refused
    before the existing study is touched."""
    out = tmp_path / "study"
    space = ["--param", "optim.lr_g=loguniform(1e-4, 1e-3)", "--param", "model.g_channels=choice(4, 8, 16)"]
    args = ["tune", str(tiny), *space, "--enqueue-base", "--sampler", "random", "--pruner", "none"]
    args += ["--steps", "2", "--eval-every", "2", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main([*args, "--trials", "1"]) == 0
    base = resolve(file=str(tiny), overrides={}).to_dict()
    trials = _load(out).trials
    assert [t.params for t in trials] == [{"optim.lr_g": base["optim"]["lr_g"], "model.g_channels": 8}]
    assert trials[0].user_attrs.get("base_config") is True
    assert "<td>base config</td>" in (out / "report.html").read_text()

    assert main([*args, "--trials", "2"]) == 0  # the same command for one more trial: sampled, not the base again
    trials = _load(out).trials
    assert len(trials) == 2 and trials[1].state.name == "COMPLETE"
    assert [t.number for t in trials if t.user_attrs.get("base_config")] == [0]

    spec = (out / "study.json").read_text()
    outside = [a.replace("choice(4, 8, 16)", "choice(4, 16)") for a in args]
    assert main([*outside, "--trials", "3"]) == 2
    assert len(_load(out).trials) == 2 and (out / "study.json").read_text() == spec


def test_a_worker_setting_does_not_change_the_study_but_a_budget_does() -> None:
    """Threads, device and the data folder may differ between the runs and machines of one study; the budget and
    what a trial trains may not."""
    from dataclasses import replace

    from gankit.config.layering import resolve
    from gankit.tune.study import StudySpec

    def spec(**overrides: object) -> StudySpec:
        base = resolve(overrides={"train.steps": 5, **overrides}).to_dict()
        return StudySpec(
            name="s",
            folder="f",
            storage="sqlite://",
            config=None,
            flags={},
            space={"optim.lr_g": "x"},
            tune_keys={},
            metric="eval/fd",
            direction="minimize",
            sampler="tpe",
            pruner="median",
            seed=0,
            trials=1,
            heartbeat=10,
            resolved_base=base,
        )

    one = spec(**{"train.threads": 1})
    assert (
        one.fingerprint() == spec(**{"train.threads": 2, "train.device": "cpu", "data.dir": "elsewhere"}).fingerprint()
    )
    assert one.fingerprint() != spec(**{"train.threads": 1, "train.steps": 6}).fingerprint()
    assert one.fingerprint() != spec(**{"train.threads": 1, "optim.lr_d": 1e-3}).fingerprint()
    assert replace(one, space={"optim.lr_g": "y"}).fingerprint() != one.fingerprint()


# ---------------------------------------------------------------------------------------------------------------------
# two processes of one study requeue an interrupted trial once

RACE = """
import sys, time
from pathlib import Path
from gankit.tune.run import queue_base, requeue_interrupted
from gankit.tune.study import need_optuna, open_storage
optuna = need_optuna()
url, me, other = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
store = open_storage(url, heartbeat=1, retry=True)
study = optuna.load_study(study_name="race", storage=store)
study.get_trials(deepcopy=False)
me.touch()
while not other.exists():  # both processes start requeueing at the same moment
    time.sleep(0.001)
requeue_interrupted(study, store, lambda m: None)
queue_base(study, {"x": 0.5}, store, lambda m: None)  # both started with --enqueue-base
"""


def test_two_processes_requeue_each_interrupted_trial_once(tmp_path: Path) -> None:
    """Two `gankit tune` processes starting on one SQLite study both find its interrupted trials; each trial is
    queued again once (a claim in the database), not once per process; with --enqueue-base both, the base config's
    trial is queued once too."""
    from collections import Counter

    from gankit.tune.study import prepare_sqlite

    url = f"sqlite:///{tmp_path / 'study.db'}"
    prepare_sqlite(url)
    study = optuna.create_study(study_name="race", storage=url)
    for _ in range(12):  # interrupted trials: failed, without an error of their own
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    ready = [tmp_path / "a", tmp_path / "b"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, url, str(ready[i]), str(ready[1 - i])],
            env=_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trials = optuna.load_study(study_name="race", storage=url).trials
    queued = Counter(t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs)
    assert queued == Counter(range(12)), queued  # each failed trial once
    assert [t.system_attrs["fixed_params"] for t in trials if t.user_attrs.get("base_config")] == [{"x": 0.5}]
    assert all(t.state.name == "WAITING" for t in trials[12:]) and len(trials) == 25


# ---------------------------------------------------------------------------------------------------------------------
# the best trial on more seeds; the report's axes


def test_two_objectives_and_the_best_trial_on_more_seeds(
    tiny: Path, tmp_path: Path, capsys, in_process_workers
) -> None:
    """--objective fd,params: Optuna's multi-objective search; the report draws the Pareto front, best.yaml is the
    front's trial with the lowest FD. --best-seeds 2: then that trial's parameters train on 2 seeds the search did not
    use, as run folders in STUDY/best-seeds/; the report and `gankit compare` show their mean ± std (n=2); the same
    command again trains nothing more."""
    study = tmp_path / "seeds"
    args = [
        "tune",
        str(tiny),
        "--out",
        str(study),
        "--trials",
        "3",
        "--steps",
        "8",
        "--eval-every",
        "4",
        "--seed",
        "3",
        "--objective",
        "fd,params",
        "--param",
        "optim.lr_g=loguniform(1e-4, 1e-3)",
        "--param",
        "model.g_channels=choice(4, 8, 16)",
        "--best-seeds",
        "2",
        "--no-progress",
    ]
    assert main(args) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    s = _load(study)
    assert [d.name for d in s.directions] == ["MINIMIZE", "MINIMIZE"] and len(s.trials) == 3
    for t in s.trials:  # FD, and G's parameter count, which grows with its width
        assert t.state.name == "COMPLETE" and t.values[0] > 0 and t.values[1] > 100
    by_width = {t.params["model.g_channels"]: t.values[1] for t in s.trials}
    assert sorted(by_width.values()) == [by_width[w] for w in sorted(by_width)]
    best = min(s.best_trials, key=lambda t: t.values[0])
    html = (study / "report.html").read_text()
    assert html.count('class="onfront"') == len(s.best_trials) and html.count('class="chosen"') == 1
    assert "Pareto front" in html and "params" in html
    head = (study / "best.yaml").read_text().splitlines()[0]
    assert f"best trial ({best.number})" in head and "Pareto front" in head
    folders = sorted((study / "best-seeds").iterdir())
    assert [f.name for f in folders] == [f"trial-{best.number:04d}-seed-4", f"trial-{best.number:04d}-seed-5"]
    for f, seed in zip(folders, (4, 5)):
        cfg = resolve(file=f / "config.yaml")
        assert cfg.seed == seed and cfg.optim.lr_g == pytest.approx(best.params["optim.lr_g"]) and cfg.train.steps == 8
        assert json.loads((f / "summary.json").read_text())["step"] == 8
    assert "(n=2;" in err and "the best trial's recipe on 2 new seeds" in err, err
    assert "more seed" in html and "(n=2)" in html and f'href="best-seeds/{folders[0].name}/report.html"' in html
    assert main(["compare", str(study / "best-seeds"), "--out", str(tmp_path / "cmp")]) == 0
    assert "## Over seeds" in (md := (tmp_path / "cmp" / "summary.md").read_text()) and r"\(n=2\)" in md
    stamp = [(f / "summary.json").stat().st_mtime_ns for f in folders]
    assert main(args) == 0  # continued: the study and the seeds are done, nothing trains again
    assert [(f / "summary.json").stat().st_mtime_ns for f in folders] == stamp
    assert "2 done, 0 to train" in capsys.readouterr().err


def test_history_axis_turns_logarithmic_when_scores_span_more_than_10x(tmp_path: Path) -> None:
    """An early trial at FD 400 beside complete trials at 14-20: a linear axis squashes them into one line, so the
    optimization history is drawn on a log axis then, and on a linear one when the scores are close."""
    from gankit.tune.report import render_study, wide_positive

    def page(values: list[float]) -> str:
        s = optuna.create_study()
        dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
        for i, v in enumerate(values):
            s.add_trial(
                optuna.trial.create_trial(
                    params={"x": i / 10}, distributions=dist, value=v, intermediate_values={1: v * 2, 2: v}
                )
            )
        return render_study(tmp_path, s, {"name": "s", "metric": "eval/fd", "space": {}})

    assert wide_positive([400.0, 20.0, 14.0]) and not wide_positive([30.0, 20.0, 14.0])
    assert not wide_positive([-1.0, 400.0]) and not wide_positive([])
    wide, close = page([400.0, 20.0, 14.0, 16.0]), page([30.0, 20.0, 14.0, 16.0])
    history = lambda html: html.split("per trial</text>")[1].split("</svg>")[0]  # noqa: E731
    assert "log scale" in history(wide) and "log scale" not in history(close)
    # ticks of the log axis are 1-2-5 steps, and the close scores keep the linear ticks
    assert ">100<" in history(wide) and ">20<" in history(wide) and ">100<" not in history(close)
