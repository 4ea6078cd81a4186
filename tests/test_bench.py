"""Smoke tests of the benchmarks: bench/run.py runs cheap versions of them and writes their files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _rows(out: Path) -> list[dict]:
    """The rows of the results.json in `out` (it also records the run: time, machine)."""
    data = json.loads((out / "results.json").read_text())
    assert set(data) == {"run", "results"} and set(data["run"]) >= {"quick", "wall_s", "machine"}
    return data["results"]


def test_quick_storage_benchmark_writes_results_json_and_markdown(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "storage_overhead",
         "--repeats", "2", "--trial-s", "2.0", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "repeats" in proc.stdout  # each benchmark says what it compares and how often
    results = _rows(tmp_path)
    assert [r["name"] for r in results] == ["storage_overhead"]
    (r,) = results
    assert set(r) == {"name", "value", "unit", "goal", "better", "detail"}
    assert r["better"] == "lower" and r["goal"] == 0.01
    assert isinstance(r["value"], float) and r["value"] > 0
    assert r["detail"]["repeats"] == 2
    assert r["detail"]["median_trial_s"] == 2.0
    assert "not measured" in r["detail"]["trial_s_from"]
    # where the recording time goes, and the trial length from which it meets the goal
    assert set(r["detail"]["after_parts_ms"]) == {"ask", "parameters", "attrs", "tell"}
    assert all(v > 0 for v in r["detail"]["after_parts_ms"].values())
    assert r["detail"]["trial_s_meeting_goal"] > 0
    if r["value"] > r["goal"]:  # a missed goal says why in RESULTS.md
        assert "- **storage_overhead**: met from trials of" in (tmp_path / "RESULTS.md").read_text()
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| storage_overhead |" in md and "## Machine" in md and "torch" in md


def test_unknown_benchmark_name_is_refused_with_the_allowed_names(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--only", "nope", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "storage_overhead" in proc.stderr
    assert not (tmp_path / "results.json").exists()


def _run_bench(tmp_path, *args, timeout=180):
    """bench.run in a subprocess whose working directory is an empty folder (so that a
    tool writing files there, e.g. CodeCarbon's emissions.csv, would be seen)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "bench.run", *args, "--out",
                           str(tmp_path / "out")], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc, cwd


def test_quick_scaling_rows_table_and_figure(tmp_path):
    # --trial-s 0.1: a goal of 5 ms that every proposal misses, to see the reasons given
    proc, _ = _run_bench(tmp_path, "--quick", "--only", "propose_scaling", "--sizes", "8,24",
                         "--strategies", "bayes,tpe", "--repeats", "3", "--trial-s", "0.1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    results = _rows(out)
    # the rows are named after the largest size (propose_overhead_bayes_256 in make bench)
    assert [r["name"] for r in results] == ["propose_overhead_bayes_24", "propose_overhead_tpe_24",
                                            "propose_bayes_24_vs_tpe"]
    versus = results.pop()  # what the user pays as the study grows: bayes against tpe
    assert versus["goal"] == 1.0 and versus["better"] == "lower"
    assert versus["value"] == pytest.approx(versus["detail"]["bayes_wall_ms"]
                                            / versus["detail"]["tpe_wall_ms"], rel=1e-3)
    for r in results:
        assert r["goal"] == 0.05 and r["better"] == "lower"
        assert isinstance(r["value"], float) and r["value"] > 0
        assert r["detail"]["median_trial_s"] == 0.1
        assert "estimate-cpu-tdp-tree" in r["detail"]["energy_method"]
        assert "ESTIMATE" in r["detail"]["energy_method"]
    table = results[0]["detail"]["table"]
    assert {"bayes", "tpe", "storage round trip", "bayes (refitting proposal)"} <= set(table)
    for line in table.values():
        assert set(line) == {"8", "24"}
        for cell in line.values():
            assert cell["wall_ms"] > 0 and cell["energy_j"] > 0 and cell["cpu_ms"] > 0
    # bayes: the average over a refit cycle lies between its two kinds of proposal
    bayes = results[0]["value"] * 0.1 * 1000
    assert table["bayes (refitting proposal)"]["24"]["wall_ms"] >= bayes
    before = results[0]["detail"]["before"]  # bayes before FastGP and the cap, side by side
    assert "bayes before: skopt's GP variance, kernel fit on every trial" in table
    assert before["ratio_before_by_wall_time"] > 0 and before["ratio_now_by_wall_time"] > 0
    png = (out / "propose-scaling.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    md = (out / "RESULTS.md").read_text()
    assert "| propose_overhead_bayes_24 |" in md and "| propose_overhead_tpe_24 |" in md
    assert "## Goals missed, and why" in md
    assert "- **propose_overhead_bayes_24**: met from trials of " in md
    assert "![propose-scaling.png](propose-scaling.png)" in md


def test_meters_side_by_side_rows_and_readings(tmp_path):
    pytest.importorskip("codecarbon")  # the `crosscheck` extra, which `make test` installs
    proc, cwd = _run_bench(tmp_path, "--quick", "--only", "meter_vs_codecarbon", "--repeats",
                           "1", "--trial-s", "2.0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(cwd.iterdir()) == []  # CodeCarbon (and Zeus) wrote no file
    results = {r["name"]: r for r in _rows(tmp_path / "out")}
    assert set(results) == {"meter_vs_codecarbon", "meter_vs_zeus"}
    cc = results["meter_vs_codecarbon"]
    assert cc["goal"] == 0.01 and cc["better"] == "lower" and cc["value"] > 0
    assert {"ours (estimate)", "codecarbon start_task + stop_task",
            "codecarbon start + stop"} <= set(cc["detail"]["window_us"])
    busy = cc["detail"]["readings_same_window"]
    assert busy["ours_method"].startswith("estimate-cpu-tdp-tree")
    assert busy["codecarbon_method"].startswith("codecarbon-")
    (w,) = busy["windows"]
    assert w["ours_j"] > 0 and w["codecarbon_j"] > 0
    assert w["ours_over_codecarbon"] == pytest.approx(w["ours_j"] / w["codecarbon_j"], rel=0.01)
    zeus = results["meter_vs_zeus"]
    assert zeus["goal"] is None
    if zeus["value"] is None:  # not installed, or refused: the reason is given
        assert zeus["detail"]["zeus"]["why_not"]
    else:
        assert zeus["detail"]["zeus"]["measures"]  # what it measures here (maybe nothing)
        if not zeus["detail"]["zeus"]["gpu_indices"] and not zeus["detail"]["zeus"]["cpu_indices"]:
            assert w["zeus_j"] is None  # measured nothing: None, never 0


@pytest.mark.parametrize("args, says", [
    (["--sizes", "16,x"], "positive integers"),
    (["--sizes", "0,16"], "positive integers"),
    (["--strategies", "bayes,grid"], "grid"),
    # the largest size names the rows: 64 would give a second propose_overhead_bayes_64
    (["--sizes", "16,64", "--only", "propose_overhead_bayes_64"], "propose_overhead_bayes_64"),
])
def test_bad_scaling_options_are_refused_with_what_is_allowed(tmp_path, capsys, args, says):
    from bench.run import main

    with pytest.raises(SystemExit) as exc:
        main(["--only", "propose_scaling", *args, "--out", str(tmp_path)])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert says in err and args[0] in err
    if args[0] == "--strategies":
        assert "bayes-eips" in err  # the allowed values
    assert not (tmp_path / "results.json").exists()


def test_synthetic_stores_hold_n_finished_trials_with_energy_and_two_values(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from bench.scaling import fill_stores
    from tuning_energy.config import load_config
    from tuning_energy.search.strategies import distributions
    from tuning_energy.store.storage import open_storage

    space = distributions(load_config(ROOT / "studies" / "default.toml").search_space)
    urls = fill_stores(tmp_path, space, (3, 7), with_mo=True)
    assert set(urls) == {3, 7}
    for n, by_use in urls.items():
        for use, url in by_use.items():
            study = optuna.load_study(study_name="single", storage=open_storage(url))
            trials = study.get_trials(states=(TrialState.COMPLETE,))
            assert len(trials) == n, (use, n)
            assert all(t.user_attrs["energy_j"] > 0 and set(t.params) == set(space)
                       for t in trials)
        mo = optuna.load_study(study_name="mo", storage=open_storage(by_use["propose"]))
        assert len(mo.directions) == 2
        assert all(len(t.values) == 2 and t.values[1] == t.user_attrs["energy_j"]
                   for t in mo.get_trials())
    # the smaller store holds the first points of the larger one (one sequence, grown)
    small = optuna.load_study(study_name="single", storage=open_storage(urls[3]["propose"]))
    large = optuna.load_study(study_name="single", storage=open_storage(urls[7]["propose"]))
    assert [t.params for t in small.trials] == [t.params for t in large.trials[:3]]


def test_the_before_side_is_skopts_gp_uncapped_and_is_restored():
    """propose_scaling's "bayes before" must time skopt's own predict and the kernel fit on
    every trial, and leave the shipped FastGP as it was."""
    from skopt.learning import GaussianProcessRegressor

    from bench.common import make_context
    from bench.gp_before import before_config, skopt_variance
    from tuning_energy.search.skopt_gp import FastGP

    ours = FastGP.predict
    assert ours is not GaussianProcessRegressor.predict
    with skopt_variance():
        assert FastGP.predict is GaussianProcessRegressor.predict
    assert FastGP.predict is ours
    ctx = make_context(quick=True)
    assert ctx.config.strategy.bayes.gp_fit_max_points == 64
    assert before_config(ctx.config).strategy.bayes.gp_fit_max_points == 0


def test_quick_search_share_of_the_default_study(tmp_path):
    """What the user pays for the search itself: (proposing + storage) / charged energy of
    the default bayes study's trials, as its summary counts them."""
    proc, _ = _run_bench(tmp_path, "--quick", "--only", "search_share_default_bayes",
                         "--trial-s", "2.0", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (r,) = _rows(tmp_path / "out")
    assert r["name"] == "search_share_default_bayes"
    assert r["goal"] == 0.02 and r["better"] == "lower"
    d = r["detail"]
    assert d["n_trials"] == 10 and d["proposing_j"] > 0 and d["storage_j"] > 0
    assert d["charged_j"] == pytest.approx(d["training_j"] + d["proposing_j"] + d["storage_j"],
                                           rel=1e-3)
    assert r["value"] == pytest.approx((d["proposing_j"] + d["storage_j"]) / d["charged_j"],
                                       rel=1e-2)


def test_committed_results_md_is_what_its_results_json_renders(tmp_path):
    """Every number about the committed run comes from bench/results.json: `--render-only`
    (make bench-render) writes the committed RESULTS.md again from it, running nothing."""
    (tmp_path / "results.json").write_bytes((ROOT / "bench" / "results.json").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--render-only", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (tmp_path / "RESULTS.md").read_text()
    assert md == (ROOT / "bench" / "RESULTS.md").read_text(), \
        "bench/RESULTS.md is stale: run `make bench-render` (python -m bench.run --render-only)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RESULTS.md", "results.json"]
    # the scaling table: CPU ms per proposal of every strategy at every size, from the row
    from bench.render import fmt

    scaling = next(r for r in _rows(tmp_path) if isinstance(r["detail"].get("table"), dict))
    assert "## Cost as the study grows" in md and "## Machine" in md
    sizes = [str(n) for n in scaling["detail"]["sizes"]]
    for label, per in scaling["detail"]["table"].items():
        assert f"| {label} | {' | '.join(fmt(per[n]['cpu_ms']) for n in sizes)} |" in md


def test_render_only_without_results_json_says_where_it_looked(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--render-only", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "--render-only" in proc.stderr and str(tmp_path) in proc.stderr
    assert not (tmp_path / "RESULTS.md").exists()


def test_an_older_results_json_renders_without_the_run_it_does_not_record(tmp_path):
    """A bare list of rows (results.json before it recorded the run): no machine and no run
    time are made up."""
    from bench.common import row
    from bench.render import load, render_markdown

    (tmp_path / "results.json").write_text(json.dumps(
        [row("storage_overhead", 0.5, "ratio to trial time", 0.01, "lower",
             {"compares": "recording / trial", "why_missed": "slow disk"})]))
    md = render_markdown(*load(tmp_path / "results.json"))
    assert "## Machine" not in md and " s. Every value" not in md
    assert "- **storage_overhead**: slow disk" in md
    assert "- **storage_overhead**: recording / trial" in md


#: what a run's number looks like in prose: a decimal, or a count with a unit of time,
#: energy or power, a factor or a share
RUN_NUMBER = re.compile(r"\d+\.\d+|\b\d[\d,]*\s?(?:ms|us|µs|s|J|W|x|%)(?![\w-])")


@pytest.mark.parametrize("doc", ["bench/README.md", "docs/benchmarks.md"])
def test_benchmark_prose_types_no_number_of_a_run(doc):
    """The values of a run are in RESULTS.md, rendered from results.json; the prose that
    explains the benchmarks types none of them (a rerun would leave them stale)."""
    text = (ROOT / doc).read_text()
    assert RUN_NUMBER.findall(text) == []
    assert "RESULTS.md" in text or "results/benchmarks.md" in text
