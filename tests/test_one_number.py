"""One energy to target, and one estimate label, in every output of the same store.

report.md (`figures`), compare.md / compare.json (`compare`) and the dashboard's study note
are read back as a user reads them, from real SQLite stores.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re

import matplotlib.pyplot as plt
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from tests.conftest import tiny_doc
from tuning_energy import analysis as an
from tuning_energy.cnn import function as cnn_module
from tuning_energy.config import parse_config
from tuning_energy.report import dashboard
from tuning_energy.report import figures as fg
from tuning_energy.report.compare_report import write_compare
from tuning_energy.report.report import write_figures
from tuning_energy.run.runner import run_study

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _row(md: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row that starts with `| first_cell |`."""
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _note_eta(note: str, target: float) -> float:
    m = re.search(rf"\| energy to target {target:.4f} \| \*\*([\d,.]+) J\*\*", note)
    assert m, note
    return _number(m.group(1))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One real bayes study (5 trials) whose first trial fails and second is pruned after
    spending energy; the estimate meter at 4 kW per busy core, so that a trial costs tens
    to hundreds of joules and every output prints enough digits."""
    root = tmp_path_factory.mktemp("one-number")
    url = f"sqlite:///{root / 'energy.db'}"
    config = parse_config(tiny_doc(budget={"n_trials": 5},
                                   meter={"cpu_tdp_w": 4000.0, "cpu_cores": 1}))
    real_fit = cnn_module.fit
    calls = []

    def fit(*args, **kwargs):
        result = real_fit(*args, **kwargs)  # the energy is spent either way
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory (test)")
        if len(calls) == 2:  # as if ctx.report had said stop after the last epoch
            kwargs["on_epoch"].__self__.stop_reason = "pruner (test)"
            return dataclasses.replace(result, stopped_early=True)
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cnn_module, "fit", fit)
        summary = run_study(config, "bayes", 0, url, progress=False, out=io.StringIO())
    return root, url, config, summary.study_name


def test_energy_to_target_is_one_number_in_every_output(store):
    root, url, config, name = store
    study = optuna.load_study(study_name=name, storage=url)
    trials = sorted(study.get_trials(states=COUNTED),
                    key=lambda t: (t.datetime_complete, t.number))
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    target = max(t.values[0] for t in complete)

    # By hand from the stored attrs: training + proposing (+ storage) energy of every
    # finished trial, in finishing order, up to the first trial at the target.
    by_hand = training_only = 0.0
    for t in trials:
        a = t.user_attrs
        by_hand += sum(a[k] for k in ("energy_j", "propose_energy_j", "store_energy_j")
                       if a.get(k) is not None)
        training_only += a["energy_j"]
        if t.state == TrialState.COMPLETE and t.values[0] >= target:
            break
    assert trials[0].user_attrs["energy_j"] > 0 and trials[1].user_attrs["energy_j"] > 0
    assert by_hand - training_only > 0.01 * by_hand  # the proposing energy shows

    write_figures(url, root / "figures", target=target)
    report = (root / "figures" / "report.md").read_text()
    # one seed, which reached the target: its ERT is its energy to target
    assert _number(_row(report, "bayes")[1]) == pytest.approx(by_hand, rel=5e-3)  # ERT
    assert _number(_row(report, "bayes")[5]) == pytest.approx(by_hand, rel=5e-3)  # median

    write_compare(url, config, root / "compare", target=target)
    data = json.loads((root / "compare" / "compare-tiny.json").read_text())
    assert data["strategies"]["bayes"]["eta_median_j"] == pytest.approx(by_hand, rel=1e-9)
    md = (root / "compare" / "compare-tiny.md").read_text()
    assert data["ert"]["bayes"]["ert_j"] == pytest.approx(by_hand, rel=1e-9)
    assert _number(_row(md, "bayes")[1].strip("*")) == pytest.approx(by_hand, rel=5e-3)

    dashboard.write_study_note(study, target)
    from optuna_dashboard import get_note

    assert _note_eta(get_note(study), target) == pytest.approx(by_hand, abs=0.051)
    ert = re.search(r"\| expected energy to target \(ERT\) over 1 seed\(s\) of bayes \| "
                    r"\*\*([\d,.]+) J\*\*", get_note(study))
    assert ert and _number(ert.group(1)) == pytest.approx(by_hand, rel=5e-3), get_note(study)

    # Every one of them says what it counted.
    for text in (report, md, get_note(study)):
        assert "training + proposing" in text


def test_a_table_without_proposing_energy_says_it_counts_training_only():
    """Results from elsewhere (a CSV) carry no propose_energy_j: training energy alone,
    and report.md and compare.md say so."""
    import pandas as pd

    from tuning_energy.report.compare_report import compare_summary, render_compare_md
    from tuning_energy.report.findings import analyse
    from tuning_energy.report.report import render_report

    trials = pd.DataFrame({
        "comparison": "csv", "study": ["csv-x-s0"] * 3, "strategy": "x", "seed": 0,
        "trial": [0, 1, 2], "state": "COMPLETE", "accuracy": [0.5, 0.92, 0.95],
        "energy_j": [10.0, 20.0, 40.0], "energy_method": "rapl"})
    result, c = compare_summary(trials, "csv", target=0.9)
    assert result["strategies"]["x"]["eta_median_j"] == 30.0  # 10 + 20, training only
    only = "energy to target counts training energy only: the table has no proposing energy"
    assert only in render_compare_md(result, c)
    report = render_report([analyse(trials, "csv", 0.9)], pd.DataFrame(), trials, "csv")
    assert only in report


# ---------------------------------------------------------------- estimate labels


@pytest.fixture(scope="module")
def gpu_store(tmp_path_factory):
    """A real SQLite store as `auto` leaves it on a GPU machine without readable RAPL: the
    meter is NVML (a fake pynvml, counter path) + the CPU estimate, as build_meter composes
    them; each trial's attrs are what the objective stores for a real window of it."""
    from tests.energy.fake_pynvml import FakeGpu, make_pynvml
    from tuning_energy.energy import CompositeMeter, EstimateMeter
    from tuning_energy.energy.nvml import NvmlMeter
    from tuning_energy.objective.objective import energy_attrs

    root = tmp_path_factory.mktemp("gpu")
    url = f"sqlite:///{root / 'energy.db'}"
    fake = make_pynvml([FakeGpu("NVIDIA H100", "GPU-00000000-aaaa", energy_mj=5_000_000)])
    meter = CompositeMeter([NvmlMeter(nvml=fake, sync=None, environ={}),
                            EstimateMeter(cpu_tdp_w=4000.0, cpu_cores=1)])
    config = parse_config(tiny_doc())
    for strategy in ("random", "bayes"):
        study = optuna.create_study(study_name=f"tiny-{strategy}-s0", storage=url,
                                    direction="maximize")
        study.set_user_attr("strategy", strategy)
        study.set_user_attr("seed", 0)
        study.set_user_attr("config", config.to_dict())
        study.set_user_attr("energy_method", meter.method)
        for i, acc in enumerate((0.6, 0.8, 0.9)):
            w = meter.begin()
            fake.gpus[0].energy_mj += 20_000 * (i + 1)  # the GPU worked: 20, 40, 60 J
            sum(k * k for k in range(200_000))  # and the CPU
            m = meter.end(w)
            study.add_trial(create_trial(
                value=acc, params={"lr": 0.01},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1)},
                user_attrs=energy_attrs(m) | {"propose_energy_j": 1.0}))
    meter.close()
    return root, url, config


def test_partly_estimated_energy_is_labelled_everywhere(gpu_store):
    root, url, config = gpu_store
    table = an.trials_table(url)
    assert set(table["energy_method"]) == {"nvml-counter+estimate-cpu-tdp-tree"}
    partly = "partly an ESTIMATE: cpu0 from estimate-cpu-tdp-tree"

    write_figures(url, root / "figures", target=0.85)
    report = (root / "figures" / "report.md").read_text()
    setup = next(ln for ln in report.splitlines() if ln.startswith("- Energy method(s):"))
    assert "nvml-counter+estimate-cpu-tdp-tree" in setup and partly in setup

    write_compare(url, config, root / "compare", target=0.85)
    md = (root / "compare" / "compare-tiny.md").read_text()
    assert partly in md
    data = json.loads((root / "compare" / "compare-tiny.json").read_text())
    assert partly in data["energy_estimate"]

    study = optuna.load_study(study_name="tiny-bayes-s0", storage=url)
    note = dashboard.study_note(study, 0.85)
    total_row = next(ln for ln in note.splitlines() if "total energy of the search" in ln)
    assert partly in total_row

    ett = an.energy_to_target(table, 0.85)
    figures = [fg.fig_pareto(table), fg.fig_best_so_far(table, 0.85),
               fg.fig_energy_to_target(ett, methods=an.method_label(table))]
    for fig in figures:
        footer = fig.texts[-1]
        assert partly in footer.get_text() and "nvml-counter" in footer.get_text()
        assert footer.get_color() == "#b00000"  # the estimate colour
        plt.close(fig)
    fig = fg.fig_energy_to_target(ett)  # from ett alone: no devices, still labelled
    assert "partly an ESTIMATE" in fig.texts[-1].get_text()
    plt.close(fig)


def test_measured_energy_is_not_labelled_an_estimate(gpu_store):
    _, url, _ = gpu_store
    table = an.trials_table(url).assign(energy_method="nvml-counter+rapl")
    fig = fg.fig_pareto(table)
    assert "ESTIMATE" not in fig.texts[-1].get_text()
    assert "nvml-counter+rapl" in fig.texts[-1].get_text()
    plt.close(fig)
    assert not math.isnan(an.energy_to_target(table, 0.85)["energy_to_target_j"].iloc[0])


# ---------------------------------------------------------------- unmeasured energy


@pytest.fixture(scope="module")
def gap_store(tmp_path_factory):
    """A real SQLite store metered by NVML (a fake pynvml, counter path) in which one trial
    of `tiny-bayes-s0` has no training energy: its GPU counter went backwards inside the
    window (a GPU reset), so the meter gives None for it, not 0. Every trial was proposed
    for 1 J (propose_energy_j) and stored for 0.5 J (store_energy_j), measured."""
    from tests.energy.fake_pynvml import FakeGpu, make_pynvml
    from tuning_energy.energy.nvml import NvmlMeter
    from tuning_energy.objective.objective import energy_attrs

    root = tmp_path_factory.mktemp("gap")
    url = f"sqlite:///{root / 'energy.db'}"
    fake = make_pynvml([FakeGpu("NVIDIA H100", "GPU-00000000-aaaa", energy_mj=5_000_000)])
    meter = NvmlMeter(nvml=fake, sync=None, environ={})
    config = parse_config(tiny_doc())
    for strategy in ("random", "bayes"):
        study = optuna.create_study(study_name=f"tiny-{strategy}-s0", storage=url,
                                    direction="maximize")
        for k, v in {"strategy": strategy, "seed": 0, "config": config.to_dict(),
                     "energy_method": meter.method}.items():
            study.set_user_attr(k, v)
        for i, acc in enumerate((0.6, 0.8, 0.9)):
            w = meter.begin()
            fake.gpus[0].energy_mj += 20_000 * (i + 1)  # 20, 40, 60 J
            if strategy == "bayes" and i == 1:
                fake.gpus[0].energy_mj -= 1_000_000  # reset: the counter went backwards
            m = meter.end(w)
            study.add_trial(create_trial(
                value=acc, params={"lr": 0.01},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1)},
                user_attrs=energy_attrs(m) | {"propose_energy_j": 1.0, "store_energy_j": 0.5}))
    meter.close()
    return root, url, config


def test_an_unmeasured_trial_makes_energy_to_target_a_lower_bound_everywhere(gap_store):
    root, url, config = gap_store
    study = optuna.load_study(study_name="tiny-bayes-s0", storage=url)
    attrs = [t.user_attrs for t in study.trials]
    assert attrs[1]["energy_j"] is None and "backwards" in attrs[1]["energy_error"]
    # By hand: what was measured up to the first trial at 0.85 (the third): the training
    # energy of trials 0 and 2, and the proposing and storage energy of all three.
    measured = attrs[0]["energy_j"] + attrs[2]["energy_j"] + 3 * 1.5
    assert measured == pytest.approx(20 + 60 + 4.5, rel=1e-6)

    ett = an.energy_to_target(an.trials_table(url), 0.85).set_index("study")
    assert ett.loc["tiny-bayes-s0", "n_unmeasured"] == 1
    assert ett.loc["tiny-bayes-s0", "energy_to_target_j"] == pytest.approx(measured)
    assert ett.loc["tiny-random-s0", "n_unmeasured"] == 0

    one_line = "1 of 6 trial(s) have no training-energy measurement"
    write_figures(url, root / "figures", target=0.85)
    report = (root / "figures" / "report.md").read_text()
    for col in (1, 5):  # the ERT (one seed: its energy to target) and the median
        eta = _row(report, "bayes")[col]
        assert eta.startswith("≥ ") and _number(eta[2:]) == pytest.approx(measured, rel=5e-3)
        assert not _row(report, "random")[col].startswith("≥")
    assert one_line in report

    write_compare(url, config, root / "compare", target=0.85)
    data = json.loads((root / "compare" / "compare-tiny.json").read_text())
    bayes = data["strategies"]["bayes"]
    assert bayes["eta_median_j"] == pytest.approx(measured)
    assert bayes["lower_bound"] is True and bayes["n_unmeasured"] == 1
    assert data["strategies"]["random"]["lower_bound"] is False
    assert data["n_unmeasured"] == 1
    md = (root / "compare" / "compare-tiny.md").read_text()
    assert data["ert"]["bayes"]["lower_bound"] is True
    assert data["ert"]["bayes"]["ert_j"] == pytest.approx(measured)
    eta = _row(md, "bayes")[1]
    assert eta.startswith("≥ ") and _number(eta[2:]) == pytest.approx(measured, rel=5e-3)
    assert one_line in md

    note = dashboard.study_note(study, 0.85)
    m = re.search(r"\| energy to target 0\.8500 \| \*\*≥ ([\d,.]+) J\*\*", note)
    assert m and _number(m.group(1)) == pytest.approx(measured, abs=0.051), note
    assert "1 of them without a training-energy measurement" in note
