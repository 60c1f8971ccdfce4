"""`gankit sweep` runs a grid once and resumes it; `gankit compare` reports the runs side by side."""

from __future__ import annotations

import json

import pytest

from gankit.cli import main
from gankit.report import md_escape
from gankit.sweep import parse_grid, run_name
from gankit.core.errors import GankitError


def _sets(overrides: dict) -> list[str]:
    args = []
    for k, v in overrides.items():
        args += ["--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
    return args


def test_sweep_runs_skips_resumes_and_compares(tmp_path, tiny_overrides, capsys):
    out = tmp_path / "sweep"
    tiny = {k: v for k, v in tiny_overrides.items() if k != "model.z_dim"}  # the grid sets it
    argv = [
        "sweep",
        "--grid",
        "model.z_dim=4,8",
        "--grid",
        "loss.name=hinge",
        "--out",
        str(out),
        "--steps",
        "2",
        *_sets(tiny),
    ]
    assert main(argv) == 0
    names = ["model.z_dim=4,loss.name=hinge", "model.z_dim=8,loss.name=hinge"]
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in sweep["runs"]] == names
    assert [r["overrides"] for r in sweep["runs"]] == [
        {"model.z_dim": 4, "loss.name": "hinge"},
        {"model.z_dim": 8, "loss.name": "hinge"},
    ]
    assert all(r["status"] == "done" and r["step"] == 2 for r in sweep["runs"])
    mtimes = {n: (out / n / "summary.json").stat().st_mtime_ns for n in names}
    capsys.readouterr()

    first = [{k: r[k] for k in ("step", "epoch", "stopped_by")} for r in sweep["runs"]]
    assert first == [{"step": 2, "epoch": 0.25, "stopped_by": "steps"}] * 2

    # Again: both finished runs are skipped, untouched, and sweep.json still lists what they did (#31).
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("finished, skipped") == 2
    assert {n: (out / n / "summary.json").stat().st_mtime_ns for n in names} == mtimes
    again = json.loads((out / "sweep.json").read_text())["runs"]
    assert [{k: r.get(k) for k in ("step", "epoch", "stopped_by")} for r in again] == first

    # README's `gankit report runs/sweep1/* --out sweep1.html`: the glob brings sweep.json along; it is left out
    # with a note, and so is a folder that is not a run (here a compare report inside the sweep)
    (out / "report").mkdir()
    html = tmp_path / "sweep1.html"
    assert main(["report", *sorted(str(p) for p in out.iterdir()), "--out", str(html)]) == 0
    std = capsys.readouterr()
    assert f"note: {out / 'sweep.json'} is not a run folder; left out" in std.err
    assert f"note: {out / 'report'} is not a run folder; left out" in std.err and "wrote" in std.out
    page = html.read_text()
    assert all(n in page for n in names)
    assert main(["report", str(out), "--out", str(tmp_path / "sweep2.html")]) == 0  # the sweep folder itself
    (out / "report").rmdir()

    # A run that stopped before its summary is resumed from its checkpoint, not restarted.
    (out / names[1] / "summary.json").unlink()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "finished, skipped" in err and "resuming" in err
    assert (out / names[1] / "summary.json").exists()
    rerun = json.loads((out / "sweep.json").read_text())["runs"]
    assert [{k: r.get(k) for k in ("status", "step", "stopped_by")} for r in rerun] == [
        {"status": "done", "step": 2, "stopped_by": "steps"}
    ] * 2  # the skipped run's numbers too

    report = tmp_path / "report"
    assert main(["compare", str(out), "--out", str(report)]) == 0
    assert "summary.md" in capsys.readouterr().out
    for f in ["report.html", "losses.png", "samples.png", "summary.md"]:
        assert (report / f).stat().st_size > 0, f
    md = (report / "summary.md").read_text()
    for n in names:  # names and values are escaped for markdown (gankit.report.md_escape): z_dim shows as z\_dim
        assert f"| {md_escape(n)} | {md_escape('model.z_dim=')}" in md
    assert (
        md_escape("model.z_dim") in md.splitlines()[2] and "loss.name" not in md.splitlines()[2]
    )  # only z_dim differs


def test_sweep_refuses_a_changed_config(tmp_path, tiny_overrides, capsys):
    out = tmp_path / "s"
    base = [
        "sweep",
        "--grid",
        "model.g_channels=4",
        "--out",
        str(out),
        "--steps",
        "1",
        *_sets({k: v for k, v in tiny_overrides.items() if k != "model.g_channels"}),
    ]
    assert main(base) == 0
    (out / "model.g_channels=4" / "summary.json").unlink()  # pretend it was interrupted
    capsys.readouterr()
    assert main([*base, "--set", "optim.lr_g=0.001"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr_g" in err and "another --out" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "spec, match",
    [
        ("optim.name", "expected KEY=V1,V2"),
        ("=1,2", "the key is empty"),
        ("model.z_dim=1,,2", "a value is empty"),
        ("model.z_dim=", "a value is empty"),
        ("model.z_dim=4,4", "repeated"),
    ],
)
def test_bad_grid_spec_is_a_one_line_error(spec, match):
    with pytest.raises(GankitError, match=match):
        parse_grid([spec])


def test_grid_values_are_typed_and_lists_survive():
    grid = parse_grid(["optim.lr_g=1e-4,2e-4", "model.g_hidden=[64,64],[128]", "model.g_batchnorm=true,false"])
    assert grid == {"optim.lr_g": [1e-4, 2e-4], "model.g_hidden": [[64, 64], [128]], "model.g_batchnorm": [True, False]}
    assert run_name({"model.g_hidden": [64, 64], "data.dir": "a b/c"}) == "model.g_hidden=64-64,data.dir=a_b_c"


def test_unknown_grid_key_fails_before_training(tmp_path, capsys):
    assert main(["sweep", "--grid", "optim.nme=adam,sgd", "--out", str(tmp_path / "x"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "optim.nme" in err and "did you mean 'name'" in err
    assert not (tmp_path / "x").exists()


def test_compare_rejects_a_folder_without_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "config.yaml" in capsys.readouterr().err


def test_sweep_over_config_files(tmp_path, tiny_overrides, capsys):
    import yaml

    from gankit.config import set_dotted

    files = []
    for name, optim in [("fast", {"name": "adam", "lr_g": 1e-3}), ("slow", {"name": "sgd", "lr_g": 1e-2})]:
        d: dict = {"optim": optim}
        for k, v in tiny_overrides.items():
            set_dotted(d, k, v)
        files.append(tmp_path / f"{name}.yaml")
        files[-1].write_text("# a test config\n" + yaml.safe_dump(d))
    out = tmp_path / "by-file"
    assert main(["sweep", *map(str, files), "--out", str(out), "--steps", "1"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [(r["name"], r["config"]) for r in sweep["runs"]] == [("fast", str(files[0])), ("slow", str(files[1]))]
    assert main(["compare", str(out), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "optim.name=adam" in md and "optim.name=sgd" in md
    assert main(["sweep", str(files[0]), "--out", str(tmp_path / "one")]) == 2
    assert "two or more configs" in capsys.readouterr().err


def test_sweep_takes_the_data_flags() -> None:
    from gankit.cli import build_parser
    from gankit.cli.common import overrides

    argv = ["--data", "mnist", "--data-dir", "some/where", "--split", "test", "--steps", "5"]
    for cmd in (["sweep", "--out", "s"], ["train"]):
        args = build_parser().parse_args([*cmd, *argv])
        over = overrides(args)
        assert (over["data.name"], over["data.dir"], over["data.split"], over["train.steps"]) == (
            "mnist",
            "some/where",
            "test",
            5,
        )


# ---------------------------------------------------------------------------------------------------------------------
# the grid is tune's; the runs go on tune's workers


def test_a_sweep_grid_is_the_grid_tune_walks():
    """`sweep --grid K=a,b` expands to the points `tune --sampler grid --param 'K=choice(a,b)'` runs: the same
    expansion, and the same set as Optuna's GridSampler visits."""
    optuna = pytest.importorskip("optuna", reason="optuna is not installed (pip install 'gankit[tune]')")
    from gankit.tune.objective import suggest
    from gankit.tune.space import grid_of, grid_points, read_space

    grid = parse_grid(["optim.name=adam,sgd", "model.z_dim=4,8,16", "loss.name=hinge"])
    space = read_space(
        None, ["optim.name=choice(adam, sgd)", "model.z_dim=choice(4, 8, 16)", "loss.name=choice(hinge)"]
    )
    assert grid_of(space) == grid
    points = grid_points(grid)
    assert points[:2] == [  # first key slowest, as the run folders are numbered
        {"optim.name": "adam", "model.z_dim": 4, "loss.name": "hinge"},
        {"optim.name": "adam", "model.z_dim": 8, "loss.name": "hinge"},
    ]
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid_of(space), seed=0))
    study.optimize(lambda t: float(len({k: suggest(t, k, d) for k, d in space.items()})), n_trials=len(points))
    key = lambda p: json.dumps(p, sort_keys=True)  # noqa: E731
    assert sorted(map(key, (t.params for t in study.trials))) == sorted(map(key, points))


@pytest.mark.slow
def test_two_sweep_workers_survive_a_kill_and_a_rerun_skips_everything(tmp_path, tiny_overrides, capfd):
    """`sweep --workers 2` with real worker processes, the threads split between them; one worker killed by SIGKILL
    mid-run: its run is continued from its checkpoint by a new worker and the sweep completes; the same command again
    trains nothing."""
    import os
    import signal
    import threading
    import time

    from gankit.config.layering import resolve
    from gankit.workers import threads_per_worker

    out = tmp_path / "sw"
    tiny = {k: v for k, v in tiny_overrides.items() if k not in ("model.z_dim", "train.threads")}
    argv = ["sweep", "--grid", "model.z_dim=4,8,12", "--workers", "2", "--steps", "24", "--out", str(out)]
    argv += _sets({**tiny, "train.checkpoint_every": 6})
    # The command runs in a thread of this process (what a terminal's Ctrl-C does is tests/test_workers.py's
    # subject); its workers are real processes, and one of them is killed.
    ended: dict[str, int] = {}
    command = threading.Thread(target=lambda: ended.setdefault("rc", main(argv)), daemon=True)
    command.start()
    killed, t0 = None, time.monotonic()
    while killed is None and time.monotonic() - t0 < 150 and command.is_alive():
        for run in sorted(out.glob("model.z_dim=*")):
            ck = run / "checkpoints"
            latest = (ck / "latest").read_text().strip() if (ck / "latest").is_file() else ""
            if latest >= "step-0000006" and not (ck / "final").exists() and (run / ".lock").exists():
                try:
                    pid = json.loads((run / ".lock").read_text())["pid"]
                    assert pid != os.getpid()  # a worker process, never this one
                    os.kill(pid, signal.SIGKILL)
                except (OSError, ValueError, KeyError):
                    continue
                killed = run.name
                break
        time.sleep(0.02)
    command.join(timeout=240)
    text = capfd.readouterr().err  # (the workers' lines too: they write to this process's stderr)
    assert killed is not None, text
    assert ended.get("rc") == 0, text
    assert "was killed by SIGKILL" in text and f"{killed}: resuming" in text, text
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    assert [r["name"] for r in runs] == ["model.z_dim=4", "model.z_dim=8", "model.z_dim=12"]
    assert [(r["status"], r["step"], r["stopped_by"]) for r in runs] == [("done", 24, "steps")] * 3, runs
    for r in runs:  # each worker trained with its share of the cores (the killed run's retry may have had more)
        if r["name"] != killed:
            assert resolve(file=out / r["name"] / "config.yaml").train.threads == threads_per_worker(2)
    assert sorted(p.name for p in out.iterdir()) == sorted([*(r["name"] for r in runs), "sweep.json"])
    metrics = [json.loads(line) for line in (out / killed / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "step" in m] == sorted({m["step"] for m in metrics if "step" in m})

    stamps = {r["name"]: (out / r["name"] / "summary.json").stat().st_mtime_ns for r in runs}
    assert main(argv) == 0  # the same command again: no worker starts when nothing is left
    assert capfd.readouterr().err.count("finished, skipped") == 3
    assert {n: (out / n / "summary.json").stat().st_mtime_ns for n in stamps} == stamps
    assert json.loads((out / "sweep.json").read_text())["runs"] == runs
