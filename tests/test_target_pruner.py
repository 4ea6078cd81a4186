"""The `target` pruner: slow starters that reach the target survive, curves that cannot
reach it are stopped after the grace period, and a pruned trial keeps its energy."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.config import load_config
from tuning_energy.run.runner import run_study
from tuning_energy.search.target_pruner import TargetPruner

from .test_user_objective import _study, _trials

optuna.logging.set_verbosity(optuna.logging.WARNING)

N = 20
TARGET = 0.98


def curve(kind: str, seed: int) -> list[float]:
    """Validation-accuracy curves of 20 epochs with epoch-to-epoch noise (about 0.005, as
    a sample or two of 360), shaped as the default study's."""
    t = np.arange(1, N + 1, dtype=float)
    rng = np.random.default_rng(seed)
    shapes = {
        # a small learning rate: worst of all early, at 0.985 by the end
        "slow": 0.995 - 0.85 * np.exp(-t / 4.5),
        # a fast MLP that saturates at 0.95
        "plateau": 0.95 - 0.6 * np.exp(-t / 1.2),
        # a diverged run: chance level
        "diverged": np.full(N, 0.1),
    }
    return list(np.clip(shapes[kind] + rng.normal(0, 0.005, N), 0, 1))


def prune_step(values: list[float], pruner: TargetPruner, direction="maximize") -> int | None:
    """The step at which a trial reporting `values` is pruned (None: never)."""
    study = optuna.create_study(direction=direction, pruner=pruner)
    trial = study.ask()
    for step, v in enumerate(values):
        trial.report(v, step)
        if trial.should_prune():
            return step
    return None


@pytest.mark.parametrize("seed", range(5))
def test_a_slow_starter_that_reaches_the_target_is_never_pruned(seed):
    values = curve("slow", seed)
    assert values[2] < 0.6 and values[-1] >= TARGET  # what ASHA's first rungs cut
    assert prune_step(values, TargetPruner(TARGET, N, upper=1.0)) is None


@pytest.mark.parametrize("kind", ["plateau", "diverged"])
def test_a_curve_that_cannot_reach_the_target_is_pruned_soon_after_the_grace(kind):
    steps = [prune_step(curve(kind, s), TargetPruner(TARGET, N, upper=1.0)) for s in range(5)]
    # grace 8: the eighth report (step 7) is the first that can be pruned
    assert all(s is not None and 7 <= s <= 10 for s in steps), steps


def test_nothing_is_pruned_during_the_grace_period_or_at_the_last_step():
    pruner = TargetPruner(TARGET, N, grace_steps=10, upper=1.0)
    step = prune_step(curve("diverged", 0), pruner)
    assert step == 9  # the tenth report (steps 0..9)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    trial.report(0.1, N - 1)  # the last report alone: nothing is left to save
    assert not trial.should_prune()
    assert not study.ask().should_prune()  # no report at all


def test_a_minimised_metric_is_the_mirror_image():
    """A loss falling to 0.01 (target at or below 0.02) survives; one stuck at 0.05 not."""
    slow = [1.0 - v for v in curve("slow", 1)]
    stuck = [1.0 - v for v in curve("plateau", 1)]
    pruner = TargetPruner(1.0 - TARGET, N, upper=0.0)
    assert prune_step(slow, pruner, "minimize") is None
    assert prune_step(stuck, pruner, "minimize") is not None


@pytest.mark.parametrize("bad", [{"threshold": 1.0}, {"grace_steps": 0}, {"target": math.nan}])
def test_bad_settings_are_refused_naming_them(bad):
    kwargs = {"target": TARGET, "n_steps": N, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        TargetPruner(kwargs.pop("target"), kwargs.pop("n_steps"), **kwargs)


def test_under_the_runner_a_pruned_trial_keeps_its_energy(tmp_path, storage_url):
    """`tpe+target` on an own objective whose loss stalls far above the target (0.05):
    pruned after the grace period, with its energy and the estimate of what it saved."""
    toml = _study(tmp_path, extra="steps = 4", n_trials=3)
    config = load_config(toml)
    config = config.with_overrides(pruning=type(config.pruning)(pruner="target",
                                                                grace_epochs=4))
    # steps = 4 and grace 4: only the last report would be left, so nothing is pruned.
    summary = run_study(config, "tpe", 0, storage_url, progress=False)
    assert not [t for t in _trials(storage_url, summary) if t.state == TrialState.PRUNED]


def test_under_the_runner_a_stalled_curve_is_pruned_and_keeps_its_energy(tmp_path, storage_url):
    toml = _study(tmp_path, function="stalled", metric="loss", extra="steps = 12",
                  n_trials=2)
    toml.parent.joinpath(next(p.name for p in toml.parent.glob("user_objective_*.py"))) \
        .open("a").write(STALLED)
    config = load_config(toml)
    config = config.with_overrides(pruning=type(config.pruning)(pruner="target"))
    summary = run_study(config, "random", 0, storage_url, progress=False)
    trials = _trials(storage_url, summary)
    assert all(t.state == TrialState.PRUNED for t in trials)
    for t in trials:
        assert t.user_attrs["pruned_reason"] == "pruner target"
        assert t.user_attrs["energy_j"] > 0
        assert t.user_attrs["energy_saved_j"] is not None and len(t.intermediate_values) < 12


STALLED = '''

def stalled(params, ctx):
    """A loss that levels off at 0.5, ten times the target."""
    loss = 1.0
    for step in range(12):
        sum(i * i for i in range(20000))
        loss = 0.5 + 0.5 * 0.5 ** step
        if ctx.report(step, loss):
            return loss
    return loss
'''
