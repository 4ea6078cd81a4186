"""CO2: a study stops at its carbon budget, and a CSV of intensity over time prices each
trial at the intensity of its own window."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import tiny_doc
from tuning_energy.config import load_config, parse_config
from tuning_energy.energy.carbon import resolve_carbon
from tuning_energy.energy.carbon_series import IntensitySeries
from tuning_energy.errors import ConfigError
from tuning_energy.run.budget import co2_budget_stop
from tuning_energy.run.runner import run_study


def test_the_study_stops_before_its_co2_budget(storage_url):
    """France's intensity (56 g/kWh): room for about 2.5 trials' CO2, so it stops near 2."""
    meter = {"kind": "estimate", "idle_s": 0, "region": "FR"}
    first = run_study(parse_config(tiny_doc(meter=meter, budget={"n_trials": 3})), "random",
                      0, storage_url, progress=False)
    per_trial_g = first.total_energy_j / 3 / 3.6e6 * 56
    capped = parse_config(tiny_doc(name="co2", meter=meter,
                                   budget={"n_trials": 50, "max_co2_g": 2.5 * per_trial_g}))
    summary = run_study(capped, "random", 0, storage_url, progress=False)
    assert "budget.max_co2_g" in summary.stop_reason and "France" in summary.stop_reason
    assert 1 <= summary.ran_now <= 4
    assert summary.total_energy_j / 3.6e6 * 56 <= 2.5 * per_trial_g * 1.5
    # the summary's CO2 is the charged energy's, at the intensity the budget used
    assert summary.co2_g == pytest.approx(summary.total_energy_j / 3.6e6 * 56)
    assert any(line.startswith("co2 ") and "France" in line for line in summary.lines())
    study = optuna.load_study(study_name="co2-random-s0", storage=storage_url)
    assert summary.stop_reason == co2_budget_stop(study.get_trials(), capped.budget.max_co2_g,
                                                  resolve_carbon(capped.meter))


def _csv(path: Path, rows: list[tuple[str, float]]) -> Path:
    path.write_text("datetime,carbon_intensity_gco2_per_kwh\n"
                    + "".join(f"{t},{v}\n" for t, v in rows))
    return path


def test_a_window_takes_the_time_weighted_mean_of_the_rows_it_spans(tmp_path):
    s = IntensitySeries.load(_csv(tmp_path / "i.csv", [
        ("2026-12-05T10:00:00Z", 100), ("2026-12-05T11:00:00Z", 300)]))
    t10 = s.starts[0]
    assert s.mean(t10 + 1800, t10 + 5400) == pytest.approx(200)  # half an hour of each
    assert s.mean(t10 + 4000, t10 + 4000) == 300
    assert s.mean(t10 - 1, t10 + 10) is None  # before the file: not guessed
    assert s.mean(t10 + 7100, t10 + 7300) is None  # past the last row's hour


def test_a_bad_row_is_refused_naming_its_line(tmp_path):
    path = _csv(tmp_path / "bad.csv", [("2026-12-05T10:00:00Z", 100), ("yesterday", 5)])
    with pytest.raises(ConfigError, match=r"carbon_intensity_csv.*line 3.*yesterday"):
        IntensitySeries.load(path)


def test_each_trial_is_priced_at_its_windows_intensity(tmp_path, storage_url):
    now = time.time()
    _csv(tmp_path / "now.csv", [(str(now - 3600), 20.0), (str(now + 3600), 20.0)])
    _csv(tmp_path / "past.csv", [("2020-01-01T00:00:00Z", 999.0)])
    doc = tiny_doc(name="now", meter={"kind": "estimate", "idle_s": 0, "region": "DE",
                                      "carbon_intensity_csv": str(tmp_path / "now.csv")})
    run_study(parse_config(doc), "random", 0, storage_url, progress=False)
    # a path relative to the config file's folder
    (tmp_path / "past.toml").write_text("""
name = "past"
[train]
epochs = 1
[budget]
n_trials = 2
[meter]
kind = "estimate"
idle_s = 0
region = "DE"
carbon_intensity_csv = "past.csv"
[search_space.lr]
type = "float"
low = 1e-3
high = 1e-1
""")
    run_study(load_config(tmp_path / "past.toml"), "random", 0, storage_url, progress=False)
    now_trials = optuna.load_study(study_name="now-random-s0", storage=storage_url).trials
    assert {t.user_attrs["co2_source"] for t in now_trials} == {"csv"}
    for t in now_trials:
        assert t.user_attrs["co2_intensity_g_per_kwh"] == 20.0
        assert t.user_attrs["co2_g"] == pytest.approx(t.user_attrs["energy_j"] / 3.6e6 * 20)
    past = optuna.load_study(study_name="past-random-s0", storage=storage_url)
    for t in past.trials:  # outside the file: Germany's constant, and it says so
        assert t.user_attrs["co2_intensity_g_per_kwh"] == 381
        assert t.user_attrs["co2_source"].startswith("outside the CSV's range")
    assert "time-varying" in past.user_attrs["carbon_source"]


def test_compare_json_gives_the_co2_the_studies_summaries_give(storage_url):
    from tuning_energy.analysis.table import trials_table
    from tuning_energy.report.compare_report import compare_summary

    cfg = parse_config(tiny_doc(meter={"kind": "estimate", "idle_s": 0, "region": "FR"},
                                budget={"n_trials": 2}))
    summaries = [run_study(cfg, s, 0, storage_url, progress=False) for s in ("random", "tpe")]
    result, _ = compare_summary(trials_table(storage_url), cfg.name)
    assert result["co2_g_total"] == pytest.approx(sum(s.co2_g for s in summaries))


def test_a_trial_whose_training_was_not_measured_is_priced_alike_everywhere(tmp_path):
    """`show` and the run summary (summary.co2_total_g) and compare / report / the dashboard
    note (to_target.charged_co2_total_g) give one CO2 for the same trials, also when a
    trial's training energy is unknown and only its proposing and storage were measured
    (before: the table priced such a trial at nothing, the summary at its known parts)."""
    from tuning_energy.analysis.table import trials_table
    from tuning_energy.analysis.to_target import charged_co2_total_g
    from tuning_energy.run.summary import co2_total_g
    from tuning_energy.store.storage import open_storage

    url = f"sqlite:///{tmp_path / 'store.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="s",
                                direction="maximize")
    for k, v in {"carbon_intensity_g_per_kwh": 400.0, "pue": 1.5, "strategy": "random",
                 "seed": 0, "config": {"name": "s"}}.items():
        study.set_user_attr(k, v)
    measured = {"energy_j": 36.0, "propose_energy_j": 1.0, "store_energy_j": 1.0,
                "co2_g": 36.0 / 3.6e6 * 400.0 * 1.5}
    unmeasured = {"energy_j": None, "propose_energy_j": 3.6e6, "store_energy_j": 0.0}
    for attrs in (measured, unmeasured):
        trial = study.ask()
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, 0.5)
    attrs = [t.user_attrs for t in study.trials]
    table_g = charged_co2_total_g(trials_table(url))
    assert table_g == pytest.approx(co2_total_g(study, attrs))
    # the unmeasured trial's 1 kWh of proposing is in it: 400 g x PUE 1.5
    assert table_g > 600.0
