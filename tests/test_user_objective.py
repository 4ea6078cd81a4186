"""A user's own objective function (`[objective]`, objective/context.py) under the runner, on real
temporary SQLite stores: the contract, every strategy, pruning, caps, resume, failures."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.config import load_config, parse_config
from tuning_energy.errors import ConfigError, StudyAborted
from tuning_energy.run.runner import run_study
from tuning_energy.seeds import trial_seed

#: The energy attrs every trial of the built-in CNN objective carries (objective.py).
ENERGY_ATTRS = {"energy_j", "energy_method", "energy_by_device_j", "energy_error",
                "duration_s", "avg_power_w", "idle_power_w", "energy_net_j", "co2_g",
                "propose_s", "propose_energy_j", "store_s", "store_energy_j", "run_id",
                "hardware_id"}

MODULE = '''
import json, math, os

def quadratic(params, ctx):
    """(x - 0.3)^2 + a penalty per choice: a loss, minimised."""
    loss = (params["x"] - 0.3) ** 2 + {"a": 0.0, "b": 0.1}[params["kind"]] + 0.01 * params["n"]
    for step in range(4):
        if ctx.report(step, loss + (3 - step) * 0.1):
            return loss + (3 - step) * 0.1
    return {"loss": loss, "seen": [ctx.trial_number, ctx.seed, ctx.device, ctx.pruning]}

def number(params, ctx):
    return params["x"]

def broken(params, ctx):
    sum(i * i for i in range(20000))  # some work, so that it has energy to keep
    raise ValueError("no convergence (test)")

def not_json(params, ctx):
    return {"loss": 1.0, "model": object()}

def no_metric(params, ctx):
    return {"acc": 1.0}

def diverges(params, ctx):
    """Odd trials diverge: NaN, then inf (trial 3); the others are fine."""
    sum(i * i for i in range(20000))
    n = ctx.trial_number
    return (math.inf if n % 4 == 3 else math.nan) if n % 2 else params["x"] ** 2

def returns_none(params, ctx):
    params["x"] ** 2

def returns_text(params, ctx):
    return "0.5"

def plain_optuna(trial):
    return trial.suggest_float("x", -1, 1) ** 2

def burn(params, ctx):
    """Reports forever: only the energy cap stops it."""
    step = 0
    while not ctx.report(step, float(step)):
        sum(i * i for i in range(20000))
        step += 1
    return float(step)
'''


def _study(tmp_path: Path, function: str = "quadratic", metric: str = "loss",
           direction: str = "minimize", extra: str = "", space: str | None = None,
           n_trials: int = 4, source: str = MODULE) -> Path:
    """A user's module (`source`) and TOML in their own folder (not on sys.path)."""
    folder = tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    module = f"user_objective_{abs(hash(str(tmp_path))) % 10**8}"  # one module per test
    (folder / f"{module}.py").write_text(source)
    space = space if space is not None else '''
        [search_space.x]
        type = "float"
        low = -1.0
        high = 1.0

        [search_space.kind]
        type = "categorical"
        choices = ["a", "b"]

        [search_space.n]
        type = "int"
        low = 0
        high = 2
    '''
    toml = folder / "mine.toml"
    toml.write_text(textwrap.dedent(f'''
        name = "mine"

        [objective]
        function = "{module}:{function}"
        metric = "{metric}"
        direction = "{direction}"
        target = 0.05
        {extra}

        [budget]
        n_trials = {n_trials}

        [meter]
        kind = "estimate"
        idle_s = 0

        [strategy.bayes]
        n_initial_points = 2
        n_points = 100
    ''') + textwrap.dedent(space))
    return toml


def _run(toml: Path, strategy: str, storage_url: str, **kw):
    return run_study(load_config(toml), strategy, 0, storage_url, progress=False,
                     out=io.StringIO(), **kw)


def _trials(storage_url: str, summary) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=summary.study_name, storage=storage_url).trials


def test_a_user_function_gets_params_and_ctx_and_its_trials_carry_the_cnns_energy_attrs(
        tmp_path, storage_url):
    summary = _run(_study(tmp_path), "random", storage_url)
    assert summary.n_finished == 4 and summary.n_failed == 0
    study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["loss"]
    for t in study.trials:
        assert ENERGY_ATTRS <= set(t.user_attrs), ENERGY_ATTRS - set(t.user_attrs)
        assert t.user_attrs["energy_j"] > 0 and t.user_attrs["energy_method"]
        # the dict's extras, JSON-able, as trial attrs; ctx as the contract says
        assert t.user_attrs["seen"] == [t.number, trial_seed(0, t.number), "cpu", False]
        assert set(t.params) == {"x", "kind", "n"}
        assert sorted(t.intermediate_values) == [0, 1, 2, 3]  # every ctx.report is stored
    # the best of a minimised metric is the smallest
    assert summary.best_value == min(t.value for t in study.trials)
    assert "best       loss" in "\n".join(summary.lines())


@pytest.mark.parametrize("strategy", ["grid", "bayes", "tpe", "gp", "mo", "bayes-eips"])
def test_every_strategy_runs_a_user_function_with_categoricals(tmp_path, storage_url,
                                                                strategy):
    summary = _run(_study(tmp_path, n_trials=3), strategy, storage_url)
    assert summary.n_finished == 3 and summary.n_failed == 0, summary.lines()
    trials = _trials(storage_url, summary)
    assert all(t.params["kind"] in ("a", "b") and t.user_attrs["energy_j"] > 0 for t in trials)
    if strategy == "mo":  # the metric and the trial's energy
        assert all(t.values[1] == t.user_attrs["energy_j"] for t in trials)


@pytest.mark.parametrize("pruner", ["median", "asha"])
def test_ctx_report_feeds_the_pruner_and_a_pruned_trial_keeps_its_energy(tmp_path, storage_url,
                                                                         pruner):
    toml = _study(tmp_path, extra="steps = 4", n_trials=8)
    config = load_config(toml)
    config = config.with_overrides(pruning=type(config.pruning)(
        pruner=pruner, n_startup_trials=1, n_warmup_epochs=0, min_epochs=1))
    summary = run_study(config, "tpe", 0, storage_url, progress=False, out=io.StringIO())
    trials = _trials(storage_url, summary)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the pruner never stopped a trial"
    for t in pruned:
        assert t.user_attrs["pruned_reason"] == f"pruner {pruner}"
        assert t.user_attrs["energy_j"] > 0 and "loss_at_stop" in t.user_attrs
        assert t.user_attrs["energy_saved_j"] is not None  # objective.steps is known


def test_the_per_trial_energy_cap_stops_a_function_through_ctx_report(tmp_path, storage_url):
    toml = _study(tmp_path, function="burn", metric="steps", direction="maximize", n_trials=2)
    config = load_config(toml)
    config = config.with_overrides(budget=type(config.budget)(n_trials=2,
                                                              max_trial_energy_j=0.05))
    summary = run_study(config, "random", 0, storage_url, progress=False, out=io.StringIO())
    trials = _trials(storage_url, summary)
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    for t in trials:
        assert t.user_attrs["pruned_reason"].startswith("energy cap: ")
        assert t.user_attrs["energy_j"] > 0.05  # without steps: the energy so far, over the cap
        assert t.user_attrs["energy_saved_j"] is None  # how much was left is not known


def _failing(tmp_path, storage_url, function: str) -> list[optuna.trial.FrozenTrial]:
    """Every trial fails: the runner stops after 5 in a row (MAX_CONSECUTIVE_FAILURES)."""
    with pytest.raises(StudyAborted, match="5 trials in a row failed in mine-random-s0"):
        _run(_study(tmp_path, function=function, n_trials=1), "random", storage_url)
    trials = optuna.load_study(study_name="mine-random-s0", storage=storage_url).trials
    assert len(trials) == 5
    return trials


def test_an_exception_is_a_fail_trial_that_keeps_its_energy(tmp_path, storage_url):
    for t in _failing(tmp_path, storage_url, "broken"):
        assert t.state == TrialState.FAIL
        assert "no convergence (test)" in t.user_attrs["error"]
        assert t.user_attrs["energy_j"] > 0


def test_a_nan_or_inf_metric_fails_the_trial_as_diverged_and_the_study_goes_on(tmp_path,
                                                                              storage_url):
    summary = _run(_study(tmp_path, function="diverges", n_trials=3), "random", storage_url)
    trials = _trials(storage_url, summary)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL] * 2 + \
        [TrialState.COMPLETE]
    assert summary.n_finished == 3
    for t in trials[1:4:2]:
        assert t.user_attrs["diverged"] is True and t.user_attrs["energy_j"] > 0
        assert "error" not in t.user_attrs
    assert trials[1].user_attrs["fail_reason"] == "diverged: the metric 'loss' is nan (not a " \
        "finite number)"
    assert "is inf" in trials[3].user_attrs["fail_reason"]
    assert all("diverged" not in t.user_attrs for t in trials[0::2])


@pytest.mark.parametrize("function, returned", [
    ("returns_none", "returned None (NoneType)"),
    ("returns_text", "returned '0.5' (str)"),
    ("no_metric", "returned a dict without 'loss' (objective.metric); its keys: acc"),
    ("not_json", "returned 'model' = <object"),
    ("plain_optuna", "plain_optuna(trial) cannot be called as function(params, ctx)"),
])
def test_a_contract_error_stops_the_study_at_the_first_trial(tmp_path, storage_url, capsys,
                                                              function, returned):
    from tuning_energy.cli import main

    toml = _study(tmp_path, function=function, n_trials=4)
    assert main(["study", "--config", str(toml), "--strategy", "random", "--storage",
                 storage_url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert returned in err and "function(params" in err and "Traceback" not in err
    assert "trial 0" in err and "stops at the first such error" in err
    [t] = optuna.load_study(study_name="mine-random-s0", storage=storage_url).trials
    assert t.state == TrialState.FAIL and returned in t.user_attrs["error"]
    if function != "plain_optuna":  # it ran: it keeps its energy
        assert t.user_attrs["energy_j"] > 0


def test_a_plain_optuna_objective_named_in_the_config_stops_with_no_traceback(tmp_path,
                                                                              storage_url):
    toml = _study(tmp_path, function="plain_optuna", n_trials=4)
    run = subprocess.run([sys.executable, "-m", "tuning_energy.cli", "study", "--config",
                          str(toml), "--strategy", "random", "--storage", storage_url,
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "tuning_energy.metered(f)" in run.stderr
    assert len(optuna.load_study(study_name="mine-random-s0", storage=storage_url).trials) == 1


def test_a_number_is_the_metric_and_a_resume_runs_what_is_left(tmp_path, storage_url):
    toml = _study(tmp_path, function="number", metric="x", direction="maximize", n_trials=2)
    first = _run(toml, "bayes", storage_url)
    config = load_config(toml)
    more = config.with_overrides(budget=type(config.budget)(n_trials=4))
    second = run_study(more, "bayes", 0, storage_url, progress=False, out=io.StringIO())
    assert (first.ran_now, second.ran_now, second.n_finished) == (2, 2, 4)
    trials = _trials(storage_url, second)
    assert second.best_value == max(t.params["x"] for t in trials)


def test_the_config_is_stored_with_the_objective_and_json_serialisable(tmp_path, storage_url):
    summary = _run(_study(tmp_path, n_trials=1), "random", storage_url)
    study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
    objective = study.user_attrs["config"]["objective"]
    assert (objective["metric"], objective["direction"], objective["target"]) == \
        ("loss", "minimize", 0.05)
    json.dumps(study.user_attrs["config"])


def test_a_user_functions_study_stores_no_cnn_config_and_resumes_one_that_did(
        tmp_path, storage_url):
    """[data], train.epochs and train.batch_size are the CNN's: a user's function's study
    does not store them (they would describe a training that never ran), and a study stored
    with them (before) resumes, whatever they say."""
    toml = _study(tmp_path, function="number", metric="x", direction="maximize", n_trials=1)
    summary = _run(toml, "random", storage_url)
    study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
    stored = study.user_attrs["config"]
    assert "data" not in stored and "data" not in {k.split(".")[1] for k in study.user_attrs
                                                   if k.startswith("config.")}
    assert set(stored["train"]) == {"torch_threads", "device", "deterministic"}
    study.set_user_attr("config", {**stored, "data": {"dataset": "digits"},
                                   "train": {**stored["train"], "epochs": 7}})
    config = load_config(toml)
    more = config.with_overrides(budget=type(config.budget)(n_trials=2))
    assert run_study(more, "random", 0, storage_url, progress=False,
                     out=io.StringIO()).ran_now == 1


# ---------------------------------------------------------------- the config


def _doc(objective: dict | None = None, **space) -> dict:
    doc = {"budget": {"n_trials": 2},
           "search_space": space or {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    if objective is not None:
        doc["objective"] = objective
    return doc


@pytest.mark.parametrize("objective, message", [
    ({"function": "no_colon"}, "objective.function = 'no_colon': must be 'module:callable'"),
    ({"function": "m:f", "direction": "down"}, "objective.direction = 'down': allowed values"),
    ({"function": "m:f", "metric": "energy_j"}, "objective.metric = 'energy_j'"),
    ({"function": "m:f", "steps": 0}, "objective.steps = 0: must be >= 1"),
    ({"function": "m:f", "typo": 1}, "objective.typo: unknown key"),
    ({"direction": "minimize"}, "the built-in CNN objective (no objective.function) maximises"),
])
def test_objective_table_errors_name_the_key(objective, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(_doc(objective))


def test_a_user_function_takes_any_parameter_names_with_checked_types():
    config = parse_config(_doc({"function": "m:f"}, depth={"type": "int", "low": 1, "high": 3},
                               act={"type": "categorical", "choices": ["relu", "tanh", 1.5]}))
    assert config.param_values({"x": 1}) == {"x": 1}  # no CNN defaults mixed in
    with pytest.raises(ConfigError, match=r"search_space.act.choices\[0\] = \[1\]: must be a "
                                          r"string, a number or a boolean"):
        parse_config(_doc({"function": "m:f"}, act={"type": "categorical", "choices": [[1]]}))
    with pytest.raises(ConfigError, match="search_space.depth.low"):
        parse_config(_doc({"function": "m:f"}, depth={"type": "int", "low": 1.5, "high": 3}))
    # the CNN's names are checked only for the CNN
    with pytest.raises(ConfigError, match="unknown parameter 'depth'; the built-in CNN"):
        parse_config(_doc(None, depth={"type": "int", "low": 1, "high": 3}))


def test_target_accuracy_is_the_builtins_and_objective_target_the_functions():
    assert parse_config({**_doc(None, lr={"type": "float", "low": 0.001, "high": 0.1}),
                         "target_accuracy": 0.9}).target == 0.9
    assert parse_config(_doc({"function": "m:f", "target": 12.5})).target == 12.5
    with pytest.raises(ConfigError, match="with objective.function, set the target as "
                                          "objective.target"):
        parse_config({**_doc({"function": "m:f"}), "target_accuracy": 0.9})


def test_a_missing_module_fails_before_anything_is_stored(tmp_path, storage_url):
    toml = _study(tmp_path)
    toml.write_text(toml.read_text().replace(":quadratic", "_missing:quadratic"))
    with pytest.raises(ConfigError, match=r"cannot import module .* \(looked in .*mine first\)"):
        _run(toml, "random", storage_url)
    assert optuna.get_all_study_summaries(storage_url) == []


def test_workers_run_a_user_function_from_its_config_folder(tmp_path):
    """Spawned workers import the function from the config's folder (not on their path)."""
    from tuning_energy.run.pool import run_workers
    from tuning_energy.run.workers import WorkerOptions

    url = f"journal:///{tmp_path / 'mine.log'}"
    summary = run_workers(load_config(_study(tmp_path, n_trials=4)), "tpe", 0, url,
                          WorkerOptions(n_workers=2, poll_s=0.1), out=io.StringIO())
    assert summary.n_finished == 4 and summary.extra["exit_codes"] == [0, 0]
    study = optuna.load_study(study_name="mine-tpe-s0",
                              storage=optuna.storages.JournalStorage(
                                  optuna.storages.journal.JournalFileBackend(
                                      str(tmp_path / "mine.log"))))
    assert study.user_attrs["workers"] == 2
    assert all(ENERGY_ATTRS <= set(t.user_attrs) for t in study.trials)


def test_a_study_stored_before_objective_existed_resumes(tiny_config, storage_url):
    """A CNN study whose stored config has no `objective` (made before [objective]) resumes
    under today's config of the same study: the built-in objective is what it ran."""
    from tuning_energy.config import BudgetConfig

    one = tiny_config.with_overrides(budget=BudgetConfig(n_trials=1))
    summary = run_study(one, "random", 0, storage_url, progress=False, out=io.StringIO())
    study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
    stored = dict(study.user_attrs["config"])
    del stored["objective"]
    study.set_user_attr("config", stored)
    two = tiny_config.with_overrides(budget=BudgetConfig(n_trials=2))
    assert run_study(two, "random", 0, storage_url, progress=False,
                     out=io.StringIO()).ran_now == 1
