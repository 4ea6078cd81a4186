"""CO2 and the idle baseline, alone and on real tiny studies in a temporary SQLite store."""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import threading
import time
import types

import optuna
import pytest
from fake_powercap import FakePowercap
from fake_pynvml import FakeGpu, make_pynvml

from tests.conftest import tiny_doc, write_tiny
from tuning_energy.cli import main
from tuning_energy.config import MeterConfig, parse_config
from tuning_energy.energy import CompositeMeter, EstimateMeter
from tuning_energy.energy.baseline import idle_baseline, measure_idle
from tuning_energy.energy.carbon import WORLD_G_PER_KWH, co2_g, resolve_carbon
from tuning_energy.energy.nvml import NvmlMeter
from tuning_energy.energy.rapl import RaplMeter
from tuning_energy.errors import ConfigError
from tuning_energy.run.runner import run_study


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


class PoweredPackage:
    """A fake powercap tree whose package counter grows at `watts`, as a real package's
    does while this process sleeps (a thread updates the microjoules every millisecond, as
    a real package's counter updates; every 5 ms, a 20 ms trial window under load could
    pass without an update, and read 0 J)."""

    def __init__(self, tmp_path, watts: float) -> None:
        self.pc = FakePowercap(tmp_path)
        self.pc.zone("intel-rapl:0", "package-0", 0)
        self.root = self.pc.root
        self.watts = watts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        energy = self.pc.zones["intel-rapl:0"] / "energy_uj"
        t0, uj = time.perf_counter(), 0
        while not self._stop.wait(0.001):
            uj = int(self.watts * (time.perf_counter() - t0) * 1e6)
            tmp = energy.with_suffix(".tmp")  # sysfs reads are atomic: never a half-written file
            tmp.write_text(f"{uj}\n")
            os.replace(tmp, energy)

    def __enter__(self) -> PoweredPackage:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_measure_idle_off_and_on(tmp_path):
    with PoweredPackage(tmp_path, watts=40.0) as package:
        meter = RaplMeter(package.root)
        try:
            assert meter.sees_idle_power
            assert measure_idle(meter, 0) is None
            assert measure_idle(meter, 0.3) == pytest.approx(40.0, rel=0.25)
        finally:
            meter.close()


def test_the_estimate_meter_is_not_asked_for_idle_power():
    """It counts the CPU time of the trial's process tree: 0 W while idle by construction, not
    a measurement."""
    meter = EstimateMeter(cpu_tdp_w=8.0, cpu_cores=2)
    assert not meter.sees_idle_power
    t0 = time.perf_counter()
    power_w, note = idle_baseline(meter, 5.0)
    assert time.perf_counter() - t0 < 0.5  # no 5 s spent learning nothing
    assert power_w is None
    assert note.startswith("not measured: the estimate meter cannot see idle power")
    assert "CPU time of the trial's process tree" in note  # cputree.py, not the process alone


def test_a_composite_sees_idle_power_when_a_part_does():
    """`auto` on a GPU machine without readable RAPL: NVML beside the CPU estimate."""
    fake = make_pynvml([FakeGpu("NVIDIA A100-SXM4-40GB", "GPU-00000000-aaaa",
                                power_mw=30_000, energy_mj=None)])  # sampled power, 30 W
    meter = CompositeMeter([NvmlMeter(nvml=fake, sync=lambda: None, environ={}),
                            EstimateMeter(cpu_tdp_w=8.0, cpu_cores=2)])
    try:
        assert meter.sees_idle_power
        power_w, note = idle_baseline(meter, 0.3)
        assert power_w == pytest.approx(30.0, rel=0.25)
        assert "without the estimate-cpu-tdp-tree part" in note
    finally:
        meter.close()
    assert not CompositeMeter([EstimateMeter()]).sees_idle_power


def tiny_config(idle_s: float = 0.2, **meter):
    meter = {"kind": "estimate", "cpu_tdp_w": 8.0, "cpu_cores": 2, **meter}
    doc = {
        "name": "tiny", "train": {"epochs": 1, "batch_size": 128},
        "budget": {"n_trials": 2},
        "meter": {"idle_s": idle_s, **meter},
        "fixed": {"n_conv": 1, "channels": 4, "hidden": 16},
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    }
    return parse_config(doc)


def test_study_stores_idle_net_energy_and_co2(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with PoweredPackage(tmp_path, watts=20.0) as package:
        config = tiny_config(region="FR", pue=1.1, kind="rapl", powercap_root=str(package.root))
        # three epochs: trial windows of tens of milliseconds, many counter updates each
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=3))
        run_study(config, "random", 0, url, progress=False, out=sys.stderr)
    study = optuna.load_study(study_name="tiny-random-s0", storage=url)
    attrs = study.user_attrs
    assert attrs["idle_power_w"] == pytest.approx(20.0, rel=0.25)
    assert attrs["carbon_intensity_g_per_kwh"] == 56
    assert "France" in attrs["carbon_source"] and attrs["pue"] == 1.1
    trials = study.get_trials()
    assert len(trials) == 2
    for t in trials:
        a = t.user_attrs
        assert a["energy_j"] > 0 and a["energy_method"] == "rapl"
        assert a["energy_net_j"] == pytest.approx(
            a["energy_j"] - attrs["idle_power_w"] * a["duration_s"])
        assert a["co2_g"] == pytest.approx(a["energy_j"] / 3.6e6 * 56 * 1.1)
        assert "crosscheck_energy_j" not in a


def test_a_study_with_the_estimate_meter_spends_no_time_on_idle_and_says_why(
        tmp_path, monkeypatch):
    from tuning_energy.energy import baseline

    slept = []  # the idle window's sleeps (the baseline module's own clock only)
    monkeypatch.setattr(baseline, "time", types.SimpleNamespace(
        sleep=lambda s: slept.append(s) or time.sleep(s)))
    url = f"sqlite:///{tmp_path}/s.db"
    out = io.StringIO()
    summary = run_study(tiny_config(idle_s=5.0), "random", 2, url, progress=False, out=out)
    assert slept == []  # not 5 s of every study spent reading 0 W
    why = "not measured: the estimate meter cannot see idle power"
    assert f"idle power: {why}" in out.getvalue()
    assert any(line.startswith("idle power " + why) for line in summary.lines())
    study = optuna.load_study(study_name="tiny-random-s2", storage=url)
    assert study.user_attrs["idle_power_w"] is None
    for t in study.get_trials():
        assert t.user_attrs["energy_net_j"] is None  # unknown, never gross minus a made-up 0


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
    doc = tiny_doc(budget={"n_trials": 1}, meter={"idle_s": 0.1, "region": "SE"},
                   fixed={"n_conv": 1, "channels": 4, "hidden": 16})
    doc["search_space"] = {"lr": {"type": "float", "low": 0.001, "high": 0.01}}
    cfg = write_tiny(tmp_path / "tiny.toml", doc)
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
