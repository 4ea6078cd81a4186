"""CO2 and the idle baseline, alone and on real tiny studies in a temporary SQLite store."""

from __future__ import annotations

import sys

import optuna
import pytest

from tuning_energy.cli import main
from tuning_energy.config import MeterConfig, parse_config
from tuning_energy.energy import EstimateMeter
from tuning_energy.energy.baseline import measure_idle
from tuning_energy.energy.carbon import WORLD_G_PER_KWH, co2_g, resolve_carbon
from tuning_energy.errors import ConfigError
from tuning_energy.runner import run_study


def test_co2_arithmetic():
    assert co2_g(3.6e6, 400.0) == pytest.approx(400.0)  # 1 kWh at 400 g/kWh
    assert co2_g(3.6e6, 400.0, pue=1.5) == pytest.approx(600.0)
    assert co2_g(None, 400.0) is None


def test_carbon_resolution_explicit_region_world():
    fr = resolve_carbon(MeterConfig(region="FR", pue=1.2))
    assert fr.intensity_g_per_kwh == 56 and fr.country_alpha3 == "FRA"
    assert "France" in fr.source and "2023" in fr.source and "Ember" in fr.source
    assert resolve_carbon(MeterConfig(region="deu")).intensity_g_per_kwh == 381
    explicit = resolve_carbon(MeterConfig(region="FR", carbon_intensity_g_per_kwh=20.0))
    assert explicit.intensity_g_per_kwh == 20.0 and "explicit" in explicit.source
    world = resolve_carbon(MeterConfig())
    assert world.intensity_g_per_kwh == WORLD_G_PER_KWH and "region not set" in world.source
    with pytest.raises(ConfigError, match=r"meter.region = 'XX'.*allowed ISO codes"):
        resolve_carbon(MeterConfig(region="XX"))


def test_measure_idle_off_and_on():
    meter = EstimateMeter(cpu_tdp_w=8.0, cpu_cores=2)
    assert measure_idle(meter, 0) is None
    idle_w = measure_idle(meter, 0.2)
    assert idle_w is not None and 0 <= idle_w < 1.0  # a sleeping process: ~0 W estimated


def tiny_config(idle_s: float = 0.2, **meter):
    doc = {
        "name": "tiny", "train": {"epochs": 1, "batch_size": 128},
        "budget": {"n_trials": 2},
        "meter": {"kind": "estimate", "cpu_tdp_w": 8.0, "cpu_cores": 2, "idle_s": idle_s,
                  **meter},
        "fixed": {"n_conv": 1, "channels": 4, "hidden": 16},
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    }
    return parse_config(doc)


def test_study_stores_idle_net_energy_and_co2(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    config = tiny_config(region="FR", pue=1.1)
    run_study(config, "random", 0, url, progress=False, out=sys.stderr)
    study = optuna.load_study(study_name="tiny-random-s0", storage=url)
    attrs = study.user_attrs
    assert attrs["idle_power_w"] is not None and attrs["idle_power_w"] >= 0
    assert attrs["carbon_intensity_g_per_kwh"] == 56
    assert "France" in attrs["carbon_source"] and attrs["pue"] == 1.1
    trials = study.get_trials()
    assert len(trials) == 2
    for t in trials:
        a = t.user_attrs
        assert a["energy_j"] > 0 and a["energy_method"] == "estimate-cpu-tdp"
        assert a["energy_net_j"] == pytest.approx(
            a["energy_j"] - attrs["idle_power_w"] * a["duration_s"])
        assert a["co2_g"] == pytest.approx(a["energy_j"] / 3.6e6 * 56 * 1.1)
        assert "crosscheck_energy_j" not in a


def test_idle_off_gives_no_net_energy_but_co2(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    run_study(tiny_config(idle_s=0), "random", 1, url, progress=False, out=sys.stderr)
    study = optuna.load_study(study_name="tiny-random-s1", storage=url)
    assert study.user_attrs["idle_power_w"] is None
    assert study.user_attrs["carbon_intensity_g_per_kwh"] == WORLD_G_PER_KWH
    for t in study.get_trials():
        assert t.user_attrs["energy_net_j"] is None  # unknown, not 0 and not gross
        assert t.user_attrs["co2_g"] > 0


def test_cross_check_codecarbon_stores_its_energy_beside_ours(tmp_path, monkeypatch, capsys):
    # codecarbon comes with the `crosscheck` extra, which `make test` installs
    monkeypatch.chdir(tmp_path)  # CodeCarbon must write nothing: check the cwd stays empty
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        'name = "tiny"\n[train]\nepochs = 1\nbatch_size = 128\n[budget]\nn_trials = 1\n'
        '[meter]\nkind = "estimate"\nidle_s = 0.1\nregion = "SE"\n'
        '[fixed]\nn_conv = 1\nchannels = 4\nhidden = 16\n'
        '[search_space.lr]\ntype = "float"\nlow = 0.001\nhigh = 0.01\n')
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["study", "--config", str(cfg), "--strategy", "random", "--storage", url,
                 "--no-progress", "--cross-check", "codecarbon"]) == 0
    (trial,) = optuna.load_study(study_name="tiny-random-s0", storage=url).get_trials()
    a = trial.user_attrs
    assert a["crosscheck_energy_j"] > 0
    assert a["crosscheck_method"].startswith("codecarbon-") and "offline" in a["crosscheck_method"]
    assert "tracking_mode=process" in a["crosscheck_method"]  # same scope as the estimate
    assert set(a["crosscheck_by_device_j"]) == {"cpu", "ram", "gpu"}
    assert a["energy_j"] > 0  # ours, unchanged, beside it
    # Nothing from CodeCarbon (emissions.csv, .codecarbon.config); s.db-wal / -shm are
    # SQLite's write-ahead log beside our own store.
    written = {p.name for p in tmp_path.iterdir()} - {"s.db-wal", "s.db-shm"}
    assert sorted(written) == ["s.db", "tiny.toml"]


def test_cross_check_without_the_extra_says_how_to_install(monkeypatch):
    from tuning_energy.energy.crosscheck import wrap_cross_check
    from tuning_energy.errors import MeterUnavailable

    monkeypatch.setitem(sys.modules, "codecarbon", None)  # import codecarbon -> ImportError
    with pytest.raises(MeterUnavailable, match=r"tuning-energy\[crosscheck\]"):
        wrap_cross_check(EstimateMeter(), "codecarbon", None)
