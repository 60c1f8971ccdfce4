"""`gankit reproduce`: verdicts on hand-made metric tables, every shipped claims file valid, each report end to end at
the smoke budget (embedded digits, 16x16, 3 steps), resuming, workers sharing runs, and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gankit.cli import main
from gankit.core.errors import GankitError
from gankit.reproduce.claims import load_claims, parse_claims, report_ids
from gankit.reproduce.measures import METRICS, measure
from gankit.reproduce.runner import EVAL_FILE, PLAN, plan_jobs, work
from gankit.reproduce.verdict import (
    FAILS,
    HOLDS,
    UNDECIDED,
    VERDICTS,
    best,
    rank,
    same,
    threshold,
)

# ---------------------------------------------------------------------------------------------------------------------
# verdicts on hand-made tables


def test_rank_holds_when_the_gap_exceeds_the_spread():
    v = rank({"a": [10.0, 12.0], "b": [20.0, 21.0]}, ["a", "b"], lower_is_better=True)
    assert v.verdict == HOLDS
    assert v.pairs[0]["gap"] == pytest.approx(9.5) and v.pairs[0]["spread"] == pytest.approx(2.0)


def test_rank_fails_when_the_other_run_is_clearly_better():
    v = rank({"a": [30.0, 31.0], "b": [20.0, 21.0]}, ["a", "b"], lower_is_better=True)
    assert v.verdict == FAILS and "b beats a" in v.reason


def test_rank_undecided_inside_the_seed_spread():
    # gap of the means 2, but one run's seeds lie 6 apart
    v = rank({"a": [10.0, 16.0], "b": [14.0, 16.0]}, ["a", "b"], lower_is_better=True)
    assert v.verdict == UNDECIDED


def test_rank_needs_two_seeds():
    assert rank({"a": [1.0], "b": [9.0]}, ["a", "b"], lower_is_better=True).verdict == UNDECIDED
    assert rank({"a": [1.0, None], "b": [9.0, 9.5]}, ["a", "b"], lower_is_better=True).verdict == UNDECIDED


def test_rank_higher_is_better_and_chains():
    table = {"a": [0.9, 0.95], "b": [0.5, 0.55], "c": [0.1, 0.12]}
    assert rank(table, ["a", "b", "c"], lower_is_better=False).verdict == HOLDS
    assert rank(table, ["a", "c", "b"], lower_is_better=False).verdict == FAILS


def test_best_needs_to_beat_every_other_run():
    table = {"sgd": [5.0, 6.0], "adam": [9.0, 10.0], "rmsprop": [5.5, 6.5]}
    assert best(table, "sgd", ["sgd", "adam"], lower_is_better=True).verdict == HOLDS
    assert best(table, "sgd", ["sgd", "adam", "rmsprop"], lower_is_better=True).verdict == UNDECIDED
    assert best(table, "adam", ["sgd", "adam"], lower_is_better=True).verdict == FAILS


def test_same_holds_within_spread_or_tolerance_and_fails_beyond():
    assert same({"a": [100.0, 104.0], "b": [103.0, 108.0]}, ["a", "b"], tolerance=0.1).verdict == HOLDS
    assert same({"a": [100.0, 101.0], "b": [150.0, 151.0]}, ["a", "b"], tolerance=0.1).verdict == FAILS
    assert same({"a": [100.0], "b": [150.0]}, ["a", "b"]).verdict == UNDECIDED


def test_threshold_all_none_or_some_seeds():
    assert threshold([0.9, 0.95], ">=", 0.8).verdict == HOLDS
    assert threshold([0.5, 0.6], ">=", 0.8).verdict == FAILS
    assert threshold([0.5, 0.9], ">=", 0.8).verdict == UNDECIDED
    assert threshold([0.1, 0.2], "<=", 0.3).verdict == HOLDS
    assert threshold([None, None], "<=", 0.3).verdict == UNDECIDED
    assert threshold([0.1, None], "<=", 0.3).verdict == UNDECIDED  # a seed not measured yet


def test_measures_from_an_evaluation_and_a_log():
    ev = {"fd": 12.5, "label_kl_uniform": 0.0, "nn_pixel_samples": 4.0, "nn_pixel_real": 5.0}
    assert measure("fd", ev, []) == 12.5
    assert measure("class_share", ev, []) == pytest.approx(1.0)
    assert measure("class_share", {"label_kl_uniform": 2.302585}, []) == pytest.approx(0.1, abs=1e-6)  # one of ten
    assert measure("nn_ratio", ev, []) == pytest.approx(0.8)
    assert measure("label_accuracy", ev, []) is None
    rows = [{"step": i, "d/real": 0.0, "d/fake": 0.0} for i in range(10)]
    assert measure("d_gap", {}, rows) == pytest.approx(0.0)
    assert measure("d_real_loss_std", {}, rows) == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------------------------------
# the shipped claims files


def test_every_shipped_claims_file_is_valid():
    assert report_ids() == ["000", "001", "002", "003", "004"]
    for rid in report_ids():
        c = load_claims(rid)
        assert c.report == rid and c.claims and c.not_checkable
        assert len(c.seeds) >= 2  # rankings need a seed spread
        for claim in c.claims:
            assert claim.check.metric in METRICS
            for run in claim.check.runs():
                assert run in c.runs and c.runs[run].config_path.is_file()
            assert claim.quote and claim.their and claim.section
        for u in c.not_checkable:
            assert u.quote and u.why


def _write_claims(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "claims.yaml"
    p.write_text(text)
    return p


BASE = """report: "t"
title: "test <b>claims</b>"
source: none.txt
runs:
  vanilla: {config: 002-vanilla-gan-mnist.yaml}
seeds: [0, 1]
claims:
  - id: c1
    section: "s"
    quote: "q"
    their: "t"
    check: CHECK
"""


@pytest.mark.parametrize(
    "check,needle",
    [
        ("{kind: threshold, metric: fid, run: vanilla, op: '>=', value: 1}", "unknown metric 'fid'"),
        ("{kind: threshold, metric: fd, run: keras, op: '>=', value: 1}", "run 'keras' is not defined"),
        ("{kind: rank, metric: fd, order: [vanilla, nope]}", "run 'nope' is not defined"),
        ("{kind: sorted, metric: fd}", "unknown check kind"),
    ],
)
def test_bad_claims_file_is_one_line_exit_2(tmp_path, capsys, check, needle):
    p = _write_claims(tmp_path, BASE.replace("CHECK", check))
    with pytest.raises(GankitError, match=needle):
        load_claims(p)
    assert main(["reproduce", str(p), "--budget", "smoke", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gankit: error:") and "\n" not in err and needle in err
    assert not (tmp_path / "o").exists()


def test_claims_file_naming_a_config_that_is_not_shipped(tmp_path):
    text = BASE.replace("002-vanilla-gan-mnist.yaml", "002-vanila-gan-mnist.yaml").replace(
        "CHECK", "{kind: threshold, metric: fd, run: vanilla, op: '>=', value: 1}"
    )
    with pytest.raises(GankitError, match="no shipped config '002-vanila-gan-mnist.yaml'.*did you mean"):
        parse_claims(__import__("yaml").safe_load(text), Path("x.yaml"))


def test_unknown_report(capsys):
    assert main(["reproduce", "007", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "unknown report '007'" in err and err.count("\n") == 1


def test_list_names_reports_and_claims(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for rid in report_ids():
        assert out.count(f"\n{rid}  ") + out.startswith(f"{rid}  ") == 1
    assert "sgd-clearest" in out and "parzen-225" in out


def test_missing_data_names_the_files_and_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "empty-cache"))
    assert main(["reproduce", "000", "--budget", "quick", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "fashion-mnist" in err and "train-images-idx3-ubyte.gz" in err and "--data-dir fashion-mnist=DIR" in err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_quick_budget_uses_digits_for_mnist_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "empty-cache"))
    plan = plan_jobs(load_claims("004"), "quick")
    assert {j["data"] for j in plan["jobs"]} == {"digits"}
    assert "embedded" in plan["data"]["mnist"]
    early = next(j for j in plan["jobs"] if j["run"] == "early")
    assert early["overrides"]["train.steps"] == 30 and early["overrides"]["data.image_size"] == 28
    assert "budget_steps" not in plan["used"] and "300 generator updates per run: full" in plan["used"]


def test_a_claims_file_sets_its_own_quick_steps_for_every_run_and_says_so(tmp_path, monkeypatch):
    # 000's convolutional runs would take it past the quick budget's time at 300 steps (issue 26)
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "empty-cache"))
    claims = load_claims("000")
    assert claims.budget_steps == {"quick": 200}
    plan = plan_jobs(claims, "quick", skip_missing=True)
    assert {j["overrides"]["train.steps"] for j in plan["jobs"]} == {200}
    assert {(j["image_size"], j["steps"]) for j in plan["jobs"]} == {(28, 200)}
    assert plan["used"].startswith("28x28, 200 generator updates per run: every run")
    assert "sets 200 steps for the quick budget instead of its 300" in plan["used"]
    # other budgets keep their own steps
    smoke = plan_jobs(claims, "smoke")
    assert {j["steps"] for j in smoke["jobs"]} == {3} and "instead of" not in smoke["used"]


@pytest.mark.parametrize(
    "steps,needle",
    [
        ("{quik: 200}", "budget_steps.quik: not a budget that counts steps (did you mean 'quick'?)"),
        ("{report: 200}", "budget_steps.report: not a budget that counts steps"),
        ("{quick: 0}", "budget_steps.quick: expected a positive whole number, got 0"),
        ("[200]", "budget_steps: expected a mapping"),
    ],
)
def test_bad_budget_steps_is_one_line_exit_2(tmp_path, capsys, steps, needle):
    check = "{kind: threshold, metric: fd, run: vanilla, op: '>=', value: 1}"
    p = _write_claims(tmp_path, BASE.replace("CHECK", check) + f"budget_steps: {steps}\n")
    assert main(["reproduce", str(p), "--budget", "smoke", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gankit: error:") and "\n" not in err and needle in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------------------------
# end to end at the smoke budget


@pytest.fixture(scope="module")
def smoke_dirs(tmp_path_factory):
    return {}


def _reproduce(rid: str, out: Path, *extra: str) -> int:
    return main(["reproduce", rid, "--budget", "smoke", "--out", str(out), "--threads", "1", *extra])


@pytest.mark.slow
@pytest.mark.parametrize("rid", ["000", "001", "002", "003", "004"])
def test_smoke_reproduction_end_to_end(rid, tmp_path_factory, smoke_dirs, capsys):
    out = tmp_path_factory.mktemp(f"r{rid}")
    assert _reproduce(rid, out) == 0
    claims = load_claims(rid)
    data = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in data["claims"]] == [c.id for c in claims.claims]
    for c in data["claims"]:
        assert c["verdict"] in VERDICTS and c["quote"] and c["section"]
        for n in c["numbers"].values():
            assert set(n["seeds"]) == {str(s) for s in claims.seeds}
    # thresholds that hold only for real MNIST at 28x28 are never decided by the smoke budget
    for c in data["claims"]:
        if c["id"].startswith("parzen-"):
            assert c["verdict"] == UNDECIDED and "data digits" in c["reason"]
    html = (out / "report.html").read_text()
    assert "Content-Security-Policy" in html and "smoke" in html
    # the image size and steps used, stated on the page and in claims.json (issue 26)
    assert "<b>Image size and steps used</b>: 16x16, 3 generator updates per run" in html
    assert data["image_size_and_steps"].startswith("16x16, 3 generator updates per run")
    assert set(data["runs"]) == set(claims.used_runs())
    assert all(r["image_size"] == 16 and r["steps"] >= 1 for r in data["runs"].values())
    assert len(data["not_checkable"]) == len(claims.not_checkable)
    smoke_dirs[rid] = out
    capsys.readouterr()


@pytest.mark.slow
def test_rerun_skips_finished_and_resumes_interrupted(smoke_dirs, capsys):
    if "002" not in smoke_dirs:
        pytest.skip("needs the 002 smoke run")
    out = smoke_dirs["002"]
    plan = json.loads((out / PLAN).read_text())
    kept = out / "runs" / plan["jobs"][0]["name"] / EVAL_FILE
    before = kept.stat().st_mtime_ns
    # A run killed after its last checkpoint and before its summary: no summary, no evaluation.
    victim = out / "runs" / plan["jobs"][3]["name"]
    (victim / "summary.json").unlink()
    (victim / EVAL_FILE).unlink()
    assert _reproduce("002", out) == 0
    err = capsys.readouterr().err
    assert f"{plan['jobs'][3]['name']}: resuming" in err and "5 of 6 runs already finished" in err
    assert (victim / EVAL_FILE).is_file() and kept.stat().st_mtime_ns == before


@pytest.mark.slow
def test_out_dir_of_another_report_or_budget_is_refused(smoke_dirs, capsys):
    if "004" not in smoke_dirs:
        pytest.skip("needs the 004 smoke run")
    out = smoke_dirs["004"]
    before = sorted(p.name for p in out.iterdir())
    assert _reproduce("002", out) == 2
    assert "holds report 004 at budget smoke" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_out_dir_holding_something_else_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _reproduce("004", tmp_path) == 2
    assert "not a gankit reproduction" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_worker_skips_a_run_another_worker_holds(tmp_path):
    """Workers share the job list by each job's lock: a job whose lock a live process holds is left to it."""
    from gankit.reproduce.runner import open_out_dir
    from gankit.training.rundir import RunDir

    claims = load_claims("004")
    plan = plan_jobs(claims, "smoke")
    open_out_dir(tmp_path, plan)
    held = plan["jobs"][1]["name"]
    other = RunDir(tmp_path / ".claims" / held, rank=0)
    other.lock()  # "another worker" (this live process) holds it
    try:
        assert work(tmp_path, 1, lambda m: None) == len(plan["jobs"]) - 1
        assert not (tmp_path / "runs" / held).exists()
    finally:
        other.close()
    assert work(tmp_path, 1, lambda m: None) == 1  # released: the next walk takes it
    assert all((tmp_path / "runs" / j["name"] / EVAL_FILE).is_file() for j in plan["jobs"])


# ---------------------------------------------------------------------------------------------------------------------
# the page in a real browser


@pytest.mark.slow
def test_page_opens_in_chromium_and_escapes_user_text(tmp_path):
    from test_report import _chrome, _images_decode, _open

    evil = "<img src=x onerror=alert(1)>"
    p = _write_claims(
        tmp_path,
        BASE.replace('quote: "q"', f'quote: "{evil} said"').replace(
            "CHECK", "{kind: threshold, metric: class_share, run: vanilla, op: '>=', value: 0.5}"
        ),
    )
    out = tmp_path / "out <b>x</b>"
    assert _reproduce(str(p), out) == 0
    html = (out / "report.html").read_text()
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt; said" in html
    browser = _chrome()
    try:
        _open(browser, out / "report.html")
        from selenium.webdriver.common.by import By

        text = browser.find_element(By.TAG_NAME, "body").text
        assert f"{evil} said" in text and "test <b>claims</b>" in text
        assert _images_decode(browser) >= 1  # the run's last sample grid is inlined
    finally:
        browser.quit()


def test_skip_missing_data_leaves_those_claims_undecided(tmp_path, monkeypatch):
    from gankit.reproduce.runner import Measured, judge

    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "empty-cache"))
    claims = load_claims("000")
    plan = plan_jobs(claims, "quick", skip_missing=True)
    assert set(plan["missing"]) == {"mlp_fashion", "conv_fashion", "conv_fashion_less_bn", "cond_fashion"}
    assert {j["run"] for j in plan["jobs"]} == {"mlp", "mlp_bn", "conv", "cond"}
    results = {r["id"]: r for r in judge(claims, plan, Measured())}
    assert results["dense-fashion-decent"]["verdict"] == UNDECIDED
    assert "not run here" in results["dense-fashion-decent"]["reason"]
    assert "not run here" not in results["batchnorm-fixes-dense"]["reason"]  # undecided only for want of numbers


@pytest.mark.slow
def test_interrupted_reproduction_writes_the_page_and_continues(tmp_path, monkeypatch, capsys):
    """SIGINT while the second run trains: that run checkpoints, the page shows what was measured, exit 130; the
    same command again resumes it from its checkpoint and finishes."""
    import signal

    from gankit.core.errors import Interrupted
    from gankit.training import loop

    p = _write_claims(
        tmp_path, BASE.replace("CHECK", "{kind: threshold, metric: class_share, run: vanilla, op: '>=', value: 0.5}")
    )
    real_train = loop.train

    def interrupted_on_seed1(cfg, out=None, resume=None, data=None):
        if out is not None and str(out).endswith("vanilla-seed1"):
            real_train(cfg.replace(**{"train.steps": 1}), out=out)
            (Path(out) / "summary.json").unlink()  # as if the signal came before the end
            raise Interrupted(signal.SIGINT, out, 1)
        return real_train(cfg, out=out, resume=resume, data=data)

    monkeypatch.setattr(loop, "train", interrupted_on_seed1)
    out = tmp_path / "out"
    assert _reproduce(str(p), out) == 130
    data = json.loads((out / "claims.json").read_text())
    assert data["unfinished"] == ["vanilla-seed1"] and (out / "report.html").is_file()
    assert "not finished" in (out / "report.html").read_text().lower()
    monkeypatch.setattr(loop, "train", real_train)
    capsys.readouterr()
    assert _reproduce(str(p), out) == 0
    err = capsys.readouterr().err
    assert "1 of 2 runs already finished" in err and "vanilla-seed1: resuming" in err
    assert json.loads((out / "claims.json").read_text())["unfinished"] == []


def test_a_diverged_seed_leaves_a_ranking_undecided() -> None:
    """Two good seeds of the claimed-better run must not decide a ranking while its third seed diverged."""
    from gankit.reproduce.verdict import UNDECIDED, compare_pair

    assert compare_pair([1.0, 1.1, None], [5.0, 5.2, 5.1], lower_is_better=True)["outcome"] == UNDECIDED
    assert compare_pair([1.0, 1.1, float("nan")], [5.0, 5.2, 5.1], lower_is_better=True)["outcome"] == UNDECIDED
    assert compare_pair([1.0, 1.1, 1.2], [5.0, 5.2, 5.1], lower_is_better=True)["outcome"] != UNDECIDED


# ---------------------------------------------------------------------------------------------------------------------
# what a reproduction cost


def test_cost_adds_up_the_calls_and_estimates_idle_minutes(tmp_path):
    from gankit.reproduce.cost import COST_FILE, describe, read_calls, summarize

    calls = [
        {"cpu_s": 600.0, "wall_s": 900.0, "cores": 2, "load_mean": 8.0},
        {"cpu_s": 120.0, "wall_s": 100.0, "cores": 1, "load_mean": 1.0},
    ]
    s = summarize(calls)
    assert (s["cpu_s"], s["wall_s"], s["idle_estimate_s"], s["cores"]) == (720.0, 1000.0, 420.0, [1, 2])
    assert s["load_mean"] == pytest.approx((900 * 8 + 100 * 1) / 1000, abs=0.05)  # weighted by wall time
    assert describe(summarize(calls[:1])).startswith("10.0 CPU-minutes; about 5.0 minutes on an idle 2-core machine")
    # a damaged ledger is kept aside, not overwritten, and counts as no calls
    (tmp_path / COST_FILE).write_text("{not json")
    assert read_calls(tmp_path) == [] and not (tmp_path / COST_FILE).exists()
    assert [p.read_text() for p in tmp_path.glob(f"{COST_FILE}.damaged-*")] == ["{not json"]


@pytest.mark.slow
def test_cost_counts_the_workers_cpu_time_and_the_page_shows_it(tmp_path, capsys):
    from gankit.report import esc
    from gankit.workers import usable_cores

    p = _write_claims(
        tmp_path, BASE.replace("CHECK", "{kind: threshold, metric: class_share, run: vanilla, op: '>=', value: 0.5}")
    )
    out = tmp_path / "out"
    assert _reproduce(str(p), out, "--workers", "2") == 0
    printed = capsys.readouterr().out
    cost = json.loads((out / "claims.json").read_text())["cost"]
    (call,) = cost["calls"]
    assert (call["workers"], call["threads"], call["cores"]) == (2, 1, min(2, usable_cores()))
    assert call["cpu_s"] > call["cpu_workers_s"] > 0 and call["wall_s"] > 0
    runs = cost["runs"]
    assert set(runs) == {"vanilla-seed0", "vanilla-seed1"}
    assert all(r["train_cpu_s"] > 0 and r["eval_cpu_s"] > 0 for r in runs.values())
    # the runs were trained in the worker processes: their CPU time is inside what the workers are charged
    assert call["cpu_workers_s"] >= sum(r["train_cpu_s"] + r["eval_cpu_s"] for r in runs.values()) - 0.1
    assert cost["idle_estimate_s"] == pytest.approx(call["cpu_s"] / call["cores"], abs=0.1)
    assert f"cost: {cost['summary']}" in printed and "CPU-minutes; about" in cost["summary"]
    html = (out / "report.html").read_text()
    assert esc(cost["summary"]) in html and "vanilla-seed1" in html
    # a call that finds every run finished re-renders the page and adds no call
    assert _reproduce(str(p), out, "--workers", "2") == 0
    assert json.loads((out / "claims.json").read_text())["cost"]["calls"] == cost["calls"]
