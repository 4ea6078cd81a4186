"""Window overhead per meter: begin+end pairs per second, and their share of a default trial.

    PYTHONPATH=. python bench/bench_meters.py [--trial-s SECONDS] [--seconds-per-meter 2]

Every meter available here is timed (RAPL / NVML only where readable). When there is no
real RAPL, the RAPL meter is also timed on a temporary powercap-shaped tree (file reads
on tmpfs; real sysfs reads cost more) and labelled so. The CodeCarbon cross-check is
timed when installed. Without --trial-s one default-config trial (studies/default.toml,
default parameters, estimate meter) is timed. Runs in well under 30 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuning_energy.config import MeterConfig, load_config  # noqa: E402
from tuning_energy.energy import EstimateMeter, Meter  # noqa: E402
from tuning_energy.energy.meters_report import survey  # noqa: E402


def pairs_per_s(meter: Meter, seconds: float, max_pairs: int = 200_000) -> tuple[float, int]:
    n, t0 = 0, time.perf_counter()
    while n < max_pairs and time.perf_counter() - t0 < seconds:
        meter.end(meter.begin())
        n += 1
    return n / (time.perf_counter() - t0), n


def fake_rapl(tmp: Path) -> Meter:
    from tuning_energy.energy.rapl import RaplMeter

    for s in (0, 1):
        for zone, name in ((f"intel-rapl:{s}", f"package-{s}"), (f"intel-rapl:{s}:0", "dram")):
            d = tmp / zone
            d.mkdir()
            for f, v in (("name", name), ("energy_uj", "123456"),
                         ("max_energy_range_uj", "262143328850")):
                (d / f).write_text(f"{v}\n")
    return RaplMeter(tmp)


def default_trial_s(config_path: str) -> float:
    import optuna

    from tuning_energy.cnn.data import load_dataset
    from tuning_energy.cnn.function import CnnObjective
    from tuning_energy.objective.objective import Objective
    from tuning_energy.run.runner import set_threads

    config = load_config(config_path)
    set_threads(config.train.torch_threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    objective = Objective(config, CnnObjective(config, load_dataset(config.data)),
                          EstimateMeter())
    trial = study.ask()
    t0 = time.perf_counter()
    objective.run(trial, config.param_values({}))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trial-s", type=float, default=None, help="trial length to compare with")
    ap.add_argument("--config", default="studies/default.toml")
    ap.add_argument("--seconds-per-meter", type=float, default=2.0)
    args = ap.parse_args()

    meter_cfg = MeterConfig(powercap_root=os.environ.get("TUNING_ENERGY_POWERCAP_ROOT"))
    statuses, meters = survey(meter_cfg)
    rows: list[tuple[str, str, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if "rapl" not in meters:
            meters["rapl (tmp tree, not sysfs)"] = fake_rapl(Path(tmp))
        try:
            from tuning_energy.energy.crosscheck import wrap_cross_check

            cc = wrap_cross_check(EstimateMeter(), "codecarbon", None)
            cc.end(cc.begin())  # first start detects hardware (~2 s): not a per-window cost
            meters["estimate + codecarbon cross-check"] = cc
        except Exception as exc:  # the extra is optional
            print(f"codecarbon cross-check not timed: {exc}")
        for name, meter in meters.items():
            budget = min(args.seconds_per_meter, 3.0) if "codecarbon" in name else \
                args.seconds_per_meter
            rate, n = pairs_per_s(meter, budget, 30 if "codecarbon" in name else 200_000)
            rows.append((name, meter.method, rate, n))
            meter.close()
    for s in statuses:
        if not s.available:
            print(f"{s.kind}: not available ({s.reason[:100]}...)")

    trial_s = args.trial_s
    source = "given"
    if trial_s is None:
        trial_s = default_trial_s(args.config)
        source = f"one default trial ({args.config}, default params), timed now"
    print(f"\ntrial length: {trial_s:.2f} s ({source})")
    print(f"{'meter':36} {'method':18} {'pairs/s':>10} {'us/pair':>9} {'share of trial':>15}")
    for name, method, rate, n in rows:
        pair_s = 1.0 / rate
        print(f"{name:36} {method:18} {rate:>10,.0f} {pair_s * 1e6:>9.1f} "
              f"{pair_s / trial_s:>14.2e}   ({n} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
