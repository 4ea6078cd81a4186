"""The objective on its own (no runner hooks), on a real SQLite store: every trial attr that
describes a measurement comes from the measurement itself."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from tuning_energy import objective as objective_module
from tuning_energy.data import load_dataset
from tuning_energy.energy import EstimateMeter, Measurement
from tuning_energy.objective import Objective, energy_attrs
from tuning_energy.worker_energy import PARTIAL, TrialWindowMeter


def test_energy_attrs_keep_what_the_meter_adds_to_a_measurement():
    m = Measurement(12.0, {"cpu0": 12.0}, 1.0, "rapl",
                    extra={"crosscheck_energy_j": 11.5, "crosscheck_method": "codecarbon"})
    attrs = energy_attrs(m)
    assert attrs["crosscheck_energy_j"] == 11.5 and attrs["crosscheck_method"] == "codecarbon"


def test_a_trial_whose_energy_so_far_was_written_ends_not_partial(tiny_config, storage_url,
                                                                    monkeypatch):
    """A worker's meter (TrialWindowMeter) wrote the energy so far on the trial while it
    trained (energy_partial = true); the objective, built without an on_measurement hook,
    writes the final energy: the COMPLETE trial must not stay marked partial."""
    meter = TrialWindowMeter(EstimateMeter(cpu_tdp_w=100.0, cpu_cores=1))
    study = optuna.create_study(storage=storage_url, direction="maximize")
    objective = Objective(tiny_config, load_dataset(tiny_config.data), meter)
    trial = study.ask()
    params = objective.propose(trial, meter.begin())
    real_fit = objective_module.fit
    written = []

    def fit(*args, **kwargs):  # inside the trial's window: a heartbeat writes it
        written.append(meter.write_partial(trial))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(objective_module, "fit", fit)
    meter.arm()  # as the heartbeat does before the trial's window opens
    values = objective.values(objective.run(trial, params))
    study.tell(trial, values)
    frozen = study.trials[0]
    assert written == [True]
    assert frozen.state == TrialState.COMPLETE and frozen.user_attrs["energy_j"] > 0
    assert frozen.user_attrs[PARTIAL] is False
    meter.close()
