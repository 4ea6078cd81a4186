"""Plain Optuna studies under `metered()` form one comparison, and the reports read it as
a user would: `figures`, `show` and the dashboard on a real SQLite store (issue 23: 7, 8)."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.trial import TrialState

import tuning_energy
from tuning_energy.analysis import studies_info, trials_table
from tuning_energy.cli import main
from tuning_energy.errors import ConfigError

SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}


def quad(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10.0, 10.0)
    sum(i * i for i in range(5000))
    if trial.number == 2:  # one pruned trial per study: it has energy, not a final value
        trial.report((x - 2.0) ** 2, 0)
        raise optuna.TrialPruned()
    return (x - 2.0) ** 2


def _run(url: str, name: str, sampler, n: int = 5, **kw) -> optuna.Study:
    study = optuna.create_study(storage=url, study_name=name, direction="minimize",
                                sampler=sampler, load_if_exists=True)
    # target 1e-9: no seed of either strategy gets there
    study.optimize(tuning_energy.metered(quad, meter="estimate", target=1e-9, **kw),
                   n_trials=n)
    return study


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """quad-tpe-s0, quad-random-s0, quad-tpe-s1, quad-random-s1, as optuna-examples names
    studies, and one study named otherwise that joins `quad` by keyword arguments."""
    url = f"sqlite:///{tmp_path_factory.mktemp('metered') / 'quad.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for seed in (0, 1):
        for strategy, cls in SAMPLERS.items():
            _run(url, f"quad-{strategy}-s{seed}", cls(seed=seed))
    _run(url, "my-experiment", optuna.samplers.RandomSampler(seed=7), comparison="quad",
         strategy="random", seed=2)
    return url


def test_studies_named_comparison_strategy_seed_form_one_comparison(store):
    info = studies_info(store).set_index("study")
    assert set(info["comparison"]) == {"quad"}
    assert info.loc["quad-tpe-s1", "strategy"] == "tpe" and info.loc["quad-tpe-s1", "seed"] == 1
    assert info.loc["quad-random-s0", "strategy"] == "random"
    # keyword arguments name what the study's name does not say
    assert info.loc["my-experiment", ["strategy", "seed"]].tolist() == ["random", 2]
    table = trials_table(store)  # each study pruned a trial: Optuna's default pruner is on
    assert table.groupby("strategy")["seed"].unique().map(sorted).to_dict() == \
        {"random+median": [0, 1, 2], "tpe+median": [0, 1]}


def test_a_name_without_the_pattern_is_its_own_comparison(storage_url):
    _run(storage_url, "plain", optuna.samplers.TPESampler(seed=0), n=2)
    info = studies_info(storage_url).iloc[0]
    assert (info["comparison"], info["strategy"], info["seed"]) == ("plain", "tpe", 0)


@pytest.mark.parametrize("kw, field", [({"comparison": ""}, "comparison"),
                                       ({"strategy": 3}, "strategy"), ({"seed": "0"}, "seed")])
def test_bad_names_are_refused_by_field(kw, field):
    with pytest.raises(ConfigError, match=rf"metered\({field}="):
        tuning_energy.metered(quad, **kw)


@pytest.fixture(scope="module")
def report(store, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("figures")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["figures", "--storage", store, "--out", str(out)]) == 0
    leaked = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not leaked, leaked  # scipy's `h /= ties` on tied (never-reached) seeds
    return (out / "report.md").read_text()


def test_the_report_compares_the_strategies_of_a_metered_comparison(report):
    assert "## Comparison `quad`" in report and "nothing to compare" not in report
    assert "strategies random, tpe; seeds 0, 1, 2" in report


def test_the_report_claims_nothing_its_data_does_not_show(report):
    # a plain objective records no model size: it may search its model
    assert "The model is the same in every trial" not in report
    # no seed reached the target: no strategy "tends to need less energy"
    assert "tends to need less energy" not in report
    assert "random+median vs tpe+median: neither reached the target in any seed" in report


def test_the_setup_line_of_a_metered_store_says_what_it_knows(report):
    setup = report.split("## Setup")[1].split("## Comparison")[0]
    assert "None" not in setup and "?" not in setup
    assert "searched: x;" in setup and "5 (as run) trials per study" in setup


def test_energy_axes_take_the_unit_of_the_data(store):
    from tuning_energy.analysis import tidy
    from tuning_energy.report.findings import analyse, make_figures

    c = analyse(tidy(trials_table(store)), "quad")
    figs = make_figures(c)
    assert figs["energy-to-target"].axes[0].get_ylabel().startswith(
        "energy to reach the target (J)")
    assert figs["best-so-far"].axes[0].get_xlabel().endswith("(J)")
    texts = [t.get_text() for f in figs.values() for t in f.findobj(
        lambda a: hasattr(a, "get_text"))]
    assert not any("kJ" in t for t in texts)  # a quarter joule is not "0.000250 kJ"


def test_the_pareto_footer_names_the_pruned_trials(store):
    from tuning_energy.analysis import tidy
    from tuning_energy.report.figures import fig_pareto

    fig = fig_pareto(tidy(trials_table(store, "quad-tpe-s0")))
    footer = " ".join(t.get_text() for t in fig.texts)
    assert "not shown: 1 pruned (stopped early: no final value)" in footer
    assert "without accuracy or energy" not in footer


def test_the_dashboard_writes_the_notes_of_metered_studies(store):
    from optuna_dashboard._note import get_note

    from tuning_energy.report.dashboard import open_server

    study = optuna.load_study(study_name="quad-tpe-s0", storage=store)
    assert get_note(study) == ""  # nothing of ours ends a plain Optuna study
    server = open_server(store, port=0)
    server.server_close()
    note = get_note(study)
    assert "## Energy summary: quad-tpe-s0" in note and "estimate-cpu-tdp" in note


def test_show_counts_failed_trials(storage_url, capsys):
    def fails(trial):
        trial.suggest_float("x", 0, 1)
        raise RuntimeError("no")

    study = optuna.create_study(storage=storage_url, study_name="f-random-s0")
    study.optimize(tuning_energy.metered(fails, meter="estimate"), n_trials=5,
                   catch=(RuntimeError,))
    assert all(t.state == TrialState.FAIL for t in study.trials)
    assert main(["show", "--storage", storage_url]) == 0
    out = capsys.readouterr().out.splitlines()
    header = out[0].split()
    row = dict(zip(header, out[1].split(), strict=False))
    assert row["trials"] == "0" and row["failed"] == "5"


def test_one_absolute_target_is_refused_for_several_comparisons(storage_url, tmp_path, capsys):
    for name in ("loss-tpe-s0", "cost-tpe-s0"):
        _run(storage_url, name, optuna.samplers.TPESampler(seed=0), n=2)
    out = str(tmp_path / "figs")
    assert main(["figures", "--storage", storage_url, "--out", out, "--target", "1.0"]) == 2
    err = capsys.readouterr().err
    assert "--target = 1.0: the store holds 2 comparisons (cost, loss)" in err
    assert "--studies" in err and not (tmp_path / "figs" / "report.md").exists()
    assert main(["figures", "--storage", storage_url, "--out", out, "--target", "1.0",
                 "--studies", "loss-"]) == 0
    assert "## Comparison `loss`" in (tmp_path / "figs" / "report.md").read_text()
