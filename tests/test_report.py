"""A small real store (2 strategies x 2 seeds x 3 trials, 1 epoch, digits) built through the
`compare` CLI, read back by `trials_table`, and turned into figures and report.md by the
`figures` CLI."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from tuning_energy import analysis as an
from tuning_energy.cli import main
from tuning_energy.report import figures as fg

from .conftest import tiny_doc, write_tiny


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    config = root / "tiny.toml"
    write_tiny(config, target_accuracy=None)
    url = f"sqlite:///{root / 'tiny.db'}"
    assert main(["compare", "--config", str(config), "--seeds", "2", "--strategies",
                 "random,bayes", "--storage", url, "--no-progress",
                 "--out", str(root / "compare")]) == 0
    # a trial that failed after spending energy, finished last in tiny-random-s1
    study = optuna.load_study(study_name="tiny-random-s1", storage=url)
    t = study.ask()
    t.set_user_attr("energy_j", 2.5)
    t.set_user_attr("energy_method", "estimate-cpu-tdp-tree")
    t.set_user_attr("error", "RuntimeError: boom")
    study.tell(t, state=TrialState.FAIL)
    return root, url


def test_trials_table_from_a_real_store(store):
    _, url = store
    df = an.trials_table(url)
    assert len(df) == 2 * 2 * 3 + 1
    assert list(df.columns[:10]) == ["comparison", "study", "strategy", "seed", "trial",
                                     "number", "state", "accuracy", "energy_j", "duration_s"]
    for col in ("param_n_conv", "param_relu", "param_lr", "n_params", "flops_per_sample",
                "epochs_run", "diverged", "propose_s", "avg_power_w", "energy_method"):
        assert col in df.columns, col
    assert "error" not in df.columns  # strings other than the method are not columns
    assert set(df["study"]) == {f"tiny-{s}-s{i}" for s in ("random", "bayes") for i in (0, 1)}
    assert set(df["comparison"]) == {"tiny"}
    assert (df["energy_method"] == "estimate-cpu-tdp-tree").all()
    for _, s in df.groupby("study"):
        assert s["trial"].tolist() == list(range(len(s)))
    fail = df[df["state"] == "FAIL"]
    assert len(fail) == 1 and fail["study"].iloc[0] == "tiny-random-s1"
    assert fail["trial"].iloc[0] == 3 and fail["energy_j"].iloc[0] == 2.5
    assert math.isnan(fail["accuracy"].iloc[0])
    ok = df[df["state"] == "COMPLETE"]
    assert ok["accuracy"].between(0, 1).all() and (ok["energy_j"] > 0).all()
    # a prefix and exact names select studies
    assert set(an.trials_table(url, "tiny-bayes")["strategy"]) == {"bayes"}
    assert set(an.trials_table(url, ["tiny-random-s0"])["study"]) == {"tiny-random-s0"}
    info = an.studies_info(url)
    assert len(info) == 4 and info["hardware"].iloc[0]["cpu_cores"] >= 1


def test_figures_cli_writes_figures_and_report(store):
    root, url = store
    out = root / "figs"
    assert main(["figures", "--storage", url, "--out", str(out)]) == 0
    for stem in ("best-so-far", "energy-to-target", "pareto", "flops", "layers", "prediction"):
        for ext in ("png", "pdf"):
            path = out / f"tiny-{stem}.{ext}"
            assert path.is_file() and path.stat().st_size > 5_000, path
    assert not (out / "tiny-net-vs-gross.png").exists()  # no energy_net_j in this store
    report = (out / "report.md").read_text()
    assert "## Comparison `tiny`" in report
    assert "| strategy | seeds | reached share | median energy to target (J)" in report
    assert "| Kruskal-Wallis H | all |" in report
    assert "| Mann-Whitney U (two-sided) | bayes | random |" in report
    assert "| n_conv | 2 |" in report and "eta² paper FMNIST" in report
    assert "ESTIMATE" in report and "estimate-cpu-tdp-tree" in report
    assert "![tiny pareto](tiny-pareto.png)" in report
    assert "### Energy predicted before training" in report
    assert "| FLOPs x joules per FLOP measured so far (before training) |" in report


def test_figures_cli_with_an_absolute_target_and_errors(store, capsys):
    root, url = store
    out = root / "figs-target"
    assert main(["figures", "--storage", url, "--out", str(out), "--target", "0.5",
                 "--studies", "tiny-"]) == 0
    assert "Target accuracy 0.5000 given with --target." in (out / "report.md").read_text()
    assert main(["figures", "--storage", url, "--out", str(out), "--studies", "nope"]) == 2
    assert "no finished trials" in capsys.readouterr().err
    assert main(["figures", "--storage", f"sqlite:///{root / 'missing.db'}"]) == 2


def _texts(fig) -> str:
    return " ".join(t.get_text() for t in fig.findobj(plt.Text))


def test_every_figure_names_the_energy_method(store):
    _, url = store
    df = an.trials_table(url)
    ett = an.energy_to_target(df, an.target_from_best(df))
    figs = [fg.fig_best_so_far(df, 0.5), fg.fig_energy_to_target(ett), fg.fig_pareto(df),
            fg.fig_flops(df), fg.fig_layers(df), fg.fig_net_vs_gross(df)]
    for fig in figs:
        text = _texts(fig)
        assert "ESTIMATE (estimate-cpu-tdp-tree)" in text
        ax = fig.axes[0]
        if ax.axison:  # units on the value axis
            assert "(" in ax.get_ylabel() or "accuracy" in ax.get_ylabel(), ax.get_ylabel()
        plt.close(fig)
    measured = df.assign(energy_method="rapl")
    fig = fg.fig_pareto(measured)
    assert "energy method: rapl" in _texts(fig) and "ESTIMATE" not in _texts(fig)
    plt.close(fig)


def test_net_vs_gross_figure_when_net_energy_is_there():
    df = pd.DataFrame({"strategy": ["grid", "grid", "bayes"], "energy_j": [100.0, 100.0, 50.0],
                       "energy_net_j": [60.0, 40.0, 10.0], "energy_method": "rapl"})
    fig = fg.fig_net_vs_gross(df)
    assert "50%" in _texts(fig) and "20%" in _texts(fig)  # net share of gross per strategy
    assert fig.axes[0].get_ylabel().endswith("(J)")  # 200 J: not "0.2 kJ"
    plt.close(fig)
    fig = fg.fig_net_vs_gross(df.drop(columns=["energy_net_j"]))
    assert "No idle-corrected energy" in _texts(fig)
    plt.close(fig)


def test_a_whole_grid_runs_to_its_end(tmp_path):
    """The last point of a whole grid used to raise from GridSampler's study.stop()."""
    import io

    from tuning_energy.config import parse_config
    from tuning_energy.run.runner import run_study

    doc = {"name": "whole", "train": {"epochs": 1, "batch_size": 512},
           "budget": {"n_trials": 5}, "meter": {"kind": "estimate", "idle_s": 0},
           "search_space": {"n_conv": {"type": "int", "low": 0, "high": 1}}}
    summary = run_study(parse_config(doc), "grid", 0, f"sqlite:///{tmp_path / 'g.db'}",
                        progress=False, out=io.StringIO())
    assert summary.n_finished == 2 and summary.n_failed == 0  # the grid has 2 points


def test_compare_writes_json_markdown_and_figure(store):
    import json

    root, url = store
    out = root / "compare"
    data = json.loads((out / "compare-tiny.json").read_text())
    assert set(data) >= {"config", "seeds", "trials_per_study", "target", "target_rule",
                         "energy_method", "strategies"}
    assert data["config"] == "tiny" and data["seeds"] == [0, 1]
    assert data["energy_method"] == "estimate-cpu-tdp-tree"
    assert set(data["strategies"]) == {"random", "bayes"}
    for s in data["strategies"].values():
        assert set(s) == {"eta_median_j", "eta_ci95_j", "reached_share",
                          "total_energy_median_j", "best_accuracy_median", "n_unmeasured",
                          "lower_bound", "total_lower_bound"}
        assert s["n_unmeasured"] == 0 and s["lower_bound"] is False  # all measured
        assert s["total_energy_median_j"] > 0 and 0 <= s["reached_share"] <= 1
        if s["reached_share"] <= 0.5:
            assert s["eta_median_j"] is None  # fewer than half reached: no median
    md = (out / "compare-tiny.md").read_text()
    assert "reaches the target for the fewest expected joules" in md or \
        "No strategy reached" in md
    assert set(data["ert"]) == {"random", "bayes"}
    for name, e in data["ert"].items():  # the ERT counts the same seeds as the medians
        assert e["runs"] == 2
        assert e["successes"] == round(data["strategies"][name]["reached_share"] * 2)
    assert (out / "compare-tiny.png").stat().st_size > 10_000
    assert (out / "compare-tiny-ecdf.png").stat().st_size > 10_000
    # The energy predictions against what was measured (the first trial of a study has no
    # FLOPs-based prediction: nothing measured yet).
    pred = data["prediction"]
    assert set(pred) == {"predicted_energy_j", "predicted_energy_epoch1_j"}
    assert pred["predicted_energy_j"]["n"] == 2 * 2 * (3 - 1)
    assert pred["predicted_energy_epoch1_j"]["n"] == 2 * 2 * 3
    assert all(p["median_ape"] >= 0 and 0 <= p["within_25pct"] <= 1 for p in pred.values())
    # Predictions are of the trial's training energy: compare.md's energies add the
    # proposing energy, the prediction error must not.
    raw = an.prediction_error(an.trials_table(url)).set_index("predictor")
    for name, p in pred.items():
        assert p["median_ape"] == pytest.approx(raw.loc[name, "median_ape"])
    assert "## Energy predicted before training" in md
    assert (out / "compare-tiny-prediction.png").stat().st_size > 10_000


def _table_rows(md: str, header_cell: str) -> tuple[list[str], list[list[str]]]:
    """(the headers, the rows' cells) of the markdown table whose header has `header_cell`."""
    lines = md.splitlines()
    i = next(k for k, line in enumerate(lines) if f"| {header_cell} |" in line)
    end = next((k for k in range(i, len(lines)) if not lines[k].startswith("|")), len(lines))
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines[i:end]]
    return cells[0], cells[2:]


def test_report_gives_the_co2_compare_md_gives_with_its_source(store, tmp_path):
    """report.md states the CO2 of the charged energy beside each strategy's search energy
    and for the whole comparison: the number compare.md gives for the same store, with the
    intensity's source and ESTIMATE (its energy is an estimate)."""
    import re

    from tuning_energy.config import parse_config
    from tuning_energy.report.compare_report import write_compare

    _, url = store
    write_compare(url, parse_config(tiny_doc(target_accuracy=None)), tmp_path / "cmp")
    assert main(["figures", "--storage", url, "--out", str(tmp_path / "figs")]) == 0
    md = (tmp_path / "cmp" / "compare-tiny.md").read_text()
    report = (tmp_path / "figs" / "report.md").read_text()
    number = r"(?:≥ )?[0-9.e+-]+"
    in_md = re.search(rf"CO2 of the whole comparison: ({number}) g CO2e", md)
    line = next(x for x in report.splitlines() if x.startswith("CO2 of the charged energy"))
    in_report = re.search(rf": ({number}) g CO2e for the whole comparison", line)
    assert in_md and in_report, (md, line)
    assert in_report.group(1) == in_md.group(1) and float(in_md.group(1)) > 0
    assert "world average (meter.region not set)" in line  # the tiny config names no region
    assert "Like its energy, it is an ESTIMATE (estimate-cpu-tdp-tree)" in line
    # per strategy, beside its search energy; together they make the comparison's CO2
    head, rows = _table_rows(report, "search energy, all seeds (J)")
    k = head.index("CO2, all seeds (g CO2e)")
    assert head[k - 1] == "search energy, all seeds (J)" and len(rows) == 2
    assert sum(float(r[k]) for r in rows) == pytest.approx(float(in_md.group(1)), rel=1e-2)


def test_energy_to_target_counts_the_search_energy_by_hand():
    """Two seeds of one strategy; target 0.9. By hand, with proposing energy included:
    s0: trials (0.5, 10 J + 1 J), (0.95, 20 J + 1 J) -> reached at trial 2: 32 J.
    s1: trials (0.92, 5 J + 0 J) -> 5 J. Median of (32, 5) = 18.5 J."""
    import pandas as pd

    from tuning_energy.report.compare_report import compare_summary

    trials = pd.DataFrame({
        "comparison": "c", "study": ["c-x-s0", "c-x-s0", "c-x-s1"], "strategy": "x",
        "seed": [0, 0, 1], "trial": [0, 1, 0], "state": "COMPLETE",
        "accuracy": [0.5, 0.95, 0.92], "energy_j": [10.0, 20.0, 5.0],
        "propose_energy_j": [1.0, 1.0, 0.0], "energy_method": "rapl",
    })
    result, _ = compare_summary(trials, "c", target=0.9)
    x = result["strategies"]["x"]
    assert x["eta_median_j"] == pytest.approx(18.5)
    assert x["reached_share"] == 1.0
    assert x["total_energy_median_j"] == pytest.approx((32 + 5) / 2)
    assert result["ert"]["x"]["ert_j"] == pytest.approx((32 + 5) / 2)  # both reached: mean
    assert result["energy_method"] == "rapl"


def test_a_co2_that_misses_an_unmeasured_trial_is_a_lower_bound_in_both_reports():
    """A trial without a training-energy measurement is priced on its measured parts only: the
    comparison's CO2 is then "≥" in compare.md and report.md alike, and report.md says the intensity's
    source was not recorded (a table from elsewhere)."""
    import re

    import pandas as pd

    from tuning_energy.report.compare_md import render_compare_md
    from tuning_energy.report.compare_report import compare_summary
    from tuning_energy.report.report import render_report

    trials = pd.DataFrame({
        "comparison": "c", "study": ["c-x-s0", "c-x-s0", "c-x-s1"], "strategy": "x",
        "seed": [0, 0, 1], "trial": [0, 1, 0], "state": "COMPLETE",
        "accuracy": [0.5, 0.95, 0.92], "energy_j": [3.6e6, None, 7.2e6],
        "propose_energy_j": [0.0, 1.0, 0.0], "co2_g": [100.0, None, 200.0],
        "energy_method": "rapl",
    })
    result, c = compare_summary(trials, "c", target=0.9)
    report = render_report([c], pd.DataFrame(), c.trials, "t.csv")
    shown = [re.search(r"(≥ [0-9.]+) g CO2e", text).group(1)
             for text in (render_compare_md(result, c), report)]
    assert shown == ["≥ 300", "≥ 300"]
    assert "carbon intensity its study recorded: not recorded on the studies" in report
    assert "ESTIMATE" not in report  # rapl measured it: no estimate to label


def test_figures_go_to_a_folder_per_store_by_default():
    """`make figures` on the default store must not overwrite `make paper`'s report.md."""
    from tuning_energy.commands import default_figures_dir

    assert default_figures_dir("sqlite:///studies/energy.db") == "figures/energy"
    assert default_figures_dir("sqlite:////tmp/x/paper.db") == "figures/paper"
    assert default_figures_dir("journal:///runs/study.log") == "figures/study"
    assert default_figures_dir("postgresql://u:p@127.0.0.1:5432/db") == "figures/postgresql"


@pytest.mark.parametrize("command", ["study", "compare"])
def test_study_and_compare_read_the_powercap_root_from_the_environment(command, tmp_path,
                                                                        monkeypatch):
    """TUNING_ENERGY_POWERCAP_ROOT is read at the CLI's edge by every command that runs
    studies, not by `study` alone."""
    config = tmp_path / "tiny.toml"
    write_tiny(config, target_accuracy=None)
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("TUNING_ENERGY_POWERCAP_ROOT", str(tmp_path / "powercap"))
    args = ["--strategy", "random"] if command == "study" else \
        ["--seeds", "1", "--strategies", "random", "--out", str(tmp_path / "out")]
    assert main([command, "--config", str(config), "--trials", "1", "--storage", url,
                 "--no-progress", *args]) == 0
    study = optuna.load_study(study_name="tiny-random-s0", storage=url)
    assert study.user_attrs["config"]["meter"]["powercap_root"] == str(tmp_path / "powercap")
