"""`tuning-energy suite`: every problem x strategy x seed into one real store, resumable,
then figures/suite.json (each problem's compare.json + config_file) and suite.md's table."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from tuning_energy.cli import main
from tuning_energy.config.suite import load_suite
from tuning_energy.errors import ConfigError
from tuning_energy.run.suite import default_suite_storage, suite_studies
from tuning_energy.store.storage import open_storage

from .conftest import tiny_doc


def _toml(doc: dict, prefix: str = "") -> str:
    """A config dict as TOML: scalars first, then each table (nested: [a.b])."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += [f"[{prefix}{k}]", _toml(v, f"{prefix}{k}.")]
    return "\n".join(lines)


def _problems() -> dict[str, dict]:
    """Two tiny problems: the built-in CNN on digits and an own objective."""
    cnn = tiny_doc(name="tinycnn", target_accuracy=0.3, budget={"n_trials": 2})
    own = {"name": "tinyown", "budget": {"n_trials": 2}, "meter": cnn["meter"],
           "strategy": cnn["strategy"],
           "objective": {"function": "tiny_fn:objective", "target": 0.5},
           "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    return {"tinycnn": cnn, "tinyown": own}


FUNCTION = """
def objective(params, ctx):
    return {"accuracy": params["x"]}
"""

SUITE = """
[problems.tinycnn]
config = "tinycnn.toml"
seeds = 2
strategies = ["random", "bayes"]

[problems.tinyown]
config = "tinyown.toml"
seeds = 2
strategies = ["random", "bayes"]
"""


@pytest.fixture
def suite_file(tmp_path):
    for name, doc in _problems().items():
        (tmp_path / f"{name}.toml").write_text(_toml(doc))
    (tmp_path / "tiny_fn.py").write_text(FUNCTION)
    (tmp_path / "suite.toml").write_text(SUITE)
    return tmp_path / "suite.toml"


def _finished(url: str) -> dict[str, int]:
    storage = open_storage(url, create=False)
    return {s.study_name: len(s.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
            for s in (optuna.load_study(study_name=n.study_name, storage=storage)
                      for n in optuna.get_all_study_summaries(storage, False))}


@pytest.mark.slow
def test_a_suite_runs_every_problem_strategy_and_seed_and_writes_one_table(
        suite_file, tmp_path, capsys):
    url = f"journal:///{tmp_path / 'runs' / 'suite.log'}"
    out = tmp_path / "figures"
    argv = ["suite", "--suite", str(suite_file), "--storage", url, "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    studies = _finished(url)
    assert studies == {f"{p}-{s}-s{seed}": 2 for p in ("tinycnn", "tinyown")
                       for s in ("random", "bayes") for seed in (0, 1)}

    result = json.loads((out / "suite.json").read_text())
    assert list(result["problems"]) == ["tinycnn", "tinyown"]
    for name, problem in result["problems"].items():
        assert problem["config_file"].endswith(f"{name}.toml")
        assert problem["config"] == name and problem["seeds"] == [0, 1]
        assert set(problem["strategies"]) == {"random", "bayes"}
        # the same numbers as the problem's own compare.json, written beside suite.md
        own = json.loads((out / "suite" / f"compare-{name}.json").read_text())
        assert {k: v for k, v in problem.items() if k not in ("config_file", "compare_md")} \
            == own
    assert result["problems"]["tinyown"]["target"] == 0.5

    md = (out / "suite.md").read_text()
    header = "| problem | strategy | ratio to bayes | 95% CI | family-wise CI | reached | verdict |"
    assert header in md
    rows = [line for line in md.splitlines() if line.startswith("| tiny")]
    assert [r.split(" | ")[:2] for r in rows] == [["| tinycnn", "random"],
                                                  ["| tinyown", "random"]]
    assert "suite/compare-tinycnn.md" in md

    # resumable: a second run finds every study finished and runs no trial
    capsys.readouterr()
    assert main(argv) == 0
    assert _finished(url) == studies
    assert capsys.readouterr().out.count("0 run now (budget already spent)") == 8


def test_no_run_writes_the_table_from_what_the_store_holds(suite_file, tmp_path):
    url = f"journal:///{tmp_path / 'empty.log'}"
    out = tmp_path / "figures"
    assert main(["suite", "--suite", str(suite_file), "--storage", url, "--out", str(out),
                 "--no-run", "--problems", "tinyown"]) == 0
    result = json.loads((out / "suite.json").read_text())
    assert list(result["problems"]) == ["tinyown"]
    assert "missing" in result["problems"]["tinyown"]
    assert "| tinyown | - | no finished trial yet |" in (out / "suite.md").read_text()


def test_the_suite_runs_seeds_outermost_so_a_stopped_suite_covers_every_problem(suite_file):
    plan = suite_studies(load_suite(suite_file))
    assert plan[:4] == [("tinycnn", "random", 0), ("tinycnn", "bayes", 0),
                        ("tinyown", "random", 0), ("tinyown", "bayes", 0)]
    assert len(plan) == 8


@pytest.mark.parametrize("change, message", [
    (('strategies = ["random", "bayes"]', 'strategies = ["random", "nope"]', 1),
     "unknown strategy"),
    (("[problems.tinyown]", "[problems.other]", 1), "name the problem after its config"),
    (("seeds = 2", "seeds = 0", 1), r"seeds = 0: must be > 0"),
    (('config = "tinyown.toml"', 'config = "missing.toml"', 1), "does not exist"),
])
def test_a_bad_suite_names_the_field(suite_file, change, message):
    suite_file.write_text(SUITE.replace(*change))
    with pytest.raises(ConfigError, match=message):
        load_suite(suite_file)


def test_the_default_store_is_a_journal_in_the_user_data_folder(tmp_path):
    assert default_suite_storage({"XDG_DATA_HOME": str(tmp_path)}) == \
        f"journal:///{tmp_path}/tuning-energy/suite.log"
    assert default_suite_storage({}).endswith("/.local/share/tuning-energy/suite.log")


def test_the_repository_suite_is_valid():
    suite = load_suite("studies/suite.toml")
    assert {"default", "mnist1d", "hgb"} <= {p.name for p in suite.problems}
    for p in suite.problems:
        # the reference, and the target-seeking strategy measured on every problem
        assert {"bayes", "seek", "seek+target", "tpe+median"} <= set(p.strategies), p.name


def test_the_table_reads_ert_ratios_and_the_verdict_when_compare_json_has_them():
    from tuning_energy.report.suite_report import render_suite_md

    # compare.json as issue 21 specifies its ERT part (nulls: not finite / unbounded)
    problem = {
        "config": "p", "config_file": "studies/p.toml", "compare_md": "compare-p.md",
        "seeds": [0, 1, 2, 3, 4], "trials_per_study": 30, "target_text": "target 0.9",
        "energy_method": "rapl", "strategies": {},
        "ert": {"bayes": {"successes": 4, "runs": 5}, "tpe": {"successes": 5, "runs": 5},
                "random": {"successes": 0, "runs": 5}},
        "ert_ratios": {
            "tpe/bayes": {"ratio": 0.25, "ci95": [0.1, 0.5], "ci_familywise": [0.08, 0.6]},
            "random/bayes": {"ratio": None, "ci95": [None, None],
                             "ci_familywise": [None, None]},
            "tpe/random": {"ratio": 0.0, "ci95": [0.0, 0.0], "ci_familywise": [0.0, 0.0]}},
        "verdict": {"goal": 0.3333, "statistic": "ert", "reference": "bayes",
                    "strategy": "tpe", "word": "suggested", "ci_familywise": [0.08, 0.6],
                    "candidates": 2},
    }
    md = render_suite_md({"suite_file": "s.toml", "problems": {"p": problem}})
    assert "| p | tpe | 0.25 | 0.1 to 0.5 | 0.08 to 0.6 | 5/5 | **suggested** " \
           "(family-wise CI 0.08 to 0.6) |" in md
    assert "| p | random | not reached | - | - | 0/5 |  |" in md
    assert "tpe/random" not in md and "Written before ERT" not in md


def test_the_committed_suite_results_cover_the_whole_suite():
    """figures/suite.json holds every problem x strategy x seed of studies/suite.toml, and
    the committed trials every study's whole budget: the committed table is the suite's,
    not a part of it."""
    import pandas as pd

    repo = Path(__file__).resolve().parents[1]
    full = load_suite(repo / "studies" / "suite.toml")
    ran = load_suite(repo / "figures" / "suite" / "suite-as-run.toml")
    assert [(p.name, p.seeds, set(p.strategies)) for p in ran.problems] == \
        [(p.name, p.seeds, set(p.strategies)) for p in full.problems]
    committed = json.loads((repo / "figures" / "suite.json").read_text())["problems"]
    for p in full.problems:
        got = committed[p.name]
        assert got["seeds"] == list(range(p.seeds)), p.name
        assert {s: got["ert"][s]["runs"] for s in got["ert"]} == \
            dict.fromkeys(p.strategies, p.seeds), p.name
        parquet = "compare-trials.parquet" if p.name == "default" else \
            f"suite/{p.name}-trials.parquet"
        trials = pd.read_parquet(repo / "figures" / parquet)
        ended = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
        per_study = ended.groupby("study").size()
        assert len(per_study) == len(p.strategies) * p.seeds, p.name
        short = per_study[per_study != p.config.budget.n_trials]
        assert short.empty, f"{p.name}: studies short of their budget: {dict(short)}"
