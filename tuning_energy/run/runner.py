"""Studies in the store: create or resume, budgets, seeds, progress, summary.

One study per (config, strategy, seed), named `{config name}-{strategy}-s{seed}`. The
budget counts finished trials (COMPLETE and PRUNED): rerunning a finished study runs
nothing; rerunning an interrupted one runs what is left. Ctrl-C marks the trial in flight
FAIL; a trial left RUNNING by a process killed hard is marked FAIL by the next run.

In a SQLite store one process runs a study at a time (`storage.run_lock`): a second run of
the same study is refused, naming the first, and only the holder of the lock marks RUNNING
trials FAIL, so a live trial is never taken for a dead one. Several processes on one study
share a journal or PostgreSQL store (workers.py).

A trial killed hard keeps the energy it spent: while it trains, the energy measured so far
is written on it every `partial_energy_s` (default 10 s) with `energy_partial = true`, as
workers do with each heartbeat (worker_energy.py); its final write sets `energy_partial =
false`. The next run marks the killed trial FAIL; it keeps that energy, and totals, budgets
and the analysis count it.

Each run records itself (`run:<run_id>` on the study, `run_id` and `hardware_id` on its
trials: store/runs.py), so a study resumed on another machine or with another meter says so.
Keys that change only the analysis (resume.ANALYSIS_ONLY) do not block a resume; the stored
config then takes their new values.

The trial loop has one source of trials (trial_source.py; which one a store gets:
workers.trial_source): `LocalTrials` for one process on SQLite, a `WorkerContext`
(workers.py) for one of several processes on a journal or PostgreSQL store. Every trial runs the same metered `Objective` around the objective
function: the built-in CNN (cnn/function.py) or the user's, named in `[objective]`.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import optuna
import torch
from optuna.trial import TrialState
from tqdm.auto import tqdm

from tuning_energy._version import __version__
from tuning_energy.cnn.train import set_deterministic
from tuning_energy.config import StudyConfig
from tuning_energy.config.resume import analysis_changes, config_differences, resumed
from tuning_energy.energy import MeterChoice
from tuning_energy.energy.accounting import charged_energy_j, charged_total_j
from tuning_energy.energy.baseline import TrialEnergyAttrs, idle_baseline
from tuning_energy.energy.carbon import resolve_carbon
from tuning_energy.energy.crosscheck import wrap_cross_check
from tuning_energy.energy.hardware import environment_label
from tuning_energy.errors import ConfigError, StorageError, StudyAborted
from tuning_energy.objective.objective import ContractError, Objective, TrialDiverged
from tuning_energy.run.budget import StudyBudget
from tuning_energy.run.signals import interrupt_reason
from tuning_energy.run.summary import FINISHED, StudySummary, best_value, study_summary, value
from tuning_energy.run.target_stop import reached_target, stop_text
from tuning_energy.run.tell import tell
from tuning_energy.run.trial_source import PARTIAL_ENERGY_S, TrialSource
from tuning_energy.run.workers import trial_source
from tuning_energy.search.metered_sampler import MeteredSampler
from tuning_energy.search.strategies import (
    check_strategy,
    grid_size,
    make_pruner,
    make_sampler,
    objectives,
)
from tuning_energy.store.delete import delete_command
from tuning_energy.store.faults import record_in_flight, storage_fault
from tuning_energy.store.runs import hardware_info, record_run
from tuning_energy.store.storage import open_storage
from tuning_energy.store.url import DEFAULT_STORAGE, StoreURL

MAX_CONSECUTIVE_FAILURES = 5

__all__ = ["open_study", "run_study", "study_name"]


def study_name(config: StudyConfig, strategy: str, seed: int) -> str:
    """`{config name}-{strategy}-s{seed}`, with the pruner after the strategy when one is on."""
    pruner = config.pruning.pruner
    return f"{config.name}-{strategy}{'' if pruner == 'none' else '-' + pruner}-s{seed}"


def resolve_device(name: str) -> torch.device:
    """train.device as a torch device; `cuda:N` must be one of the GPUs torch sees."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StudyAborted(f"train.device = {name!r}: no CUDA GPU is visible to torch; "
                           "use train.device = 'cpu' or 'auto'")
    device = torch.device(name)
    if device.index is not None and device.index >= (n := torch.cuda.device_count()):
        raise StudyAborted(
            f"train.device = {name!r}: torch sees {n} GPU(s), cuda:0..cuda:{n - 1} "
            f"(CUDA_VISIBLE_DEVICES = {os.environ.get('CUDA_VISIBLE_DEVICES')!r}: cuda:N is "
            f"the N-th GPU it lists)")
    return device


def set_threads(n: int) -> None:
    """Torch and BLAS threads, set explicitly.

    Results with convolutions differ between 1 and 2 torch threads. The strategies' GPs run
    on NumPy/SciPy's BLAS (OpenBLAS), which by default starts a thread per core: on a busy
    2-core machine its threads contend and a 63-point GP fit took 3x longer (and its
    spinning CPU time is charged as the search's energy). threadpoolctl (a scikit-learn
    dependency) caps every BLAS and OpenMP pool in the process to the same count.
    """
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass  # can only be set once per process, before parallel work; intra-op is what counts
    # threadpoolctl limits the libraries loaded so far: load the GP stack's BLAS first.
    import scipy.linalg  # noqa: F401
    import sklearn.gaussian_process  # noqa: F401

    threadpool_limits(limits=n)  # BLAS and OpenMP pools alike


def open_study(config: StudyConfig, strategy: str, seed: int, storage_url: StoreURL | str,
               meter_choice: MeterChoice, storage=None, notes: list[str] | None = None,
               setup: list | None = None) -> optuna.Study:
    """Create the study, or load it and check that the config still describes it.

    On a resume the stored config takes the current values of the keys that do not block
    it (budget, resume.ANALYSIS_ONLY) and keeps its `environment` when none is given
    (resume.resumed); `notes` (when given) gets one line per changed key; `setup` (when
    given) gets the Measurement of building the strategy's sampler (its libraries' imports,
    its model template: the run's first proposal is charged it, overhead.py).
    """
    storage = storage if storage is not None else open_storage(storage_url)
    name = study_name(config, strategy, seed)
    window = meter_choice.meter.begin() if setup is not None else None
    sampler = make_sampler(strategy, config, seed)
    if window is not None:
        setup.append(window.meter.end(window))
    metrics = objectives(strategy, config)
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                directions=[d for _, d in metrics], load_if_exists=True,
                                pruner=make_pruner(config))
    stored = study.user_attrs.get("config")
    if stored is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([m for m, _ in metrics])
        attrs = {
            "strategy": strategy, "seed": seed, "config": config.to_dict(),
            "hardware": hardware_info(), "energy_method": meter_choice.meter.method,
            "meter": meter_choice.describe(), "tuning_energy_version": __version__,
            "torch_version": torch.__version__, "torch_threads": config.train.torch_threads,
        }
        # optuna-dashboard shows at most 1,024 characters of an attr: the config's sections
        # are also stored one by one (`config.train`, `config.search_space`, ...) so that a
        # reader of the dashboard sees all of it.
        attrs.update({f"config.{k}": v for k, v in config.to_dict().items()})
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    elif diff := config_differences(stored, current := resumed(stored, config.to_dict()),
                                    strategy):
        finished = study.get_trials(deepcopy=False, states=FINISHED + (TrialState.FAIL,))
        raise StorageError(
            f"study {name!r} in {StoreURL.parse(storage_url)} was created with a different config "
            f"({'; '.join(diff)}); to resume it, set those keys back in the TOML; to start "
            f"a new study, rename the config's `name` or use another --storage"
            + ("" if finished else f"; it has no finished trial, so nothing is lost by "
               f"deleting it and starting again: {delete_command(name, storage_url)}"))
    elif stored != current:  # the budget or analysis-only keys: the stored follows
        if notes is not None:
            notes.extend(analysis_changes(stored, current))
        study.set_user_attr("config", current)
        for k, v in current.items():
            study.set_user_attr(f"config.{k}", v)
    return study


def run_study(config: StudyConfig, strategy: str, seed: int = 0,
              storage_url: StoreURL | str = DEFAULT_STORAGE, progress: bool = True,
              out=None, cross_check: str | None = None, source: TrialSource | None = None,
              partial_energy_s: float | None = PARTIAL_ENERGY_S) -> StudySummary:
    """Create or resume the study and run trials until its budget is spent.

    cross_check: None, or `codecarbon` to store CodeCarbon's energy beside ours per trial.
    partial_energy_s: how often a training trial's energy so far is written on it
    (`energy_partial`), so that a run killed hard loses at most that much of it; None or 0:
    never. Workers write it with each heartbeat instead (WorkerOptions).
    source: where the trials come from (trial_source.py). By default the one the store
    gets (workers.trial_source); a pool's worker passes its `WorkerContext`.
    """
    check_strategy(strategy)
    storage_url = StoreURL.parse(storage_url)
    if partial_energy_s is not None and not partial_energy_s >= 0:
        raise ConfigError(f"partial_energy_s (--partial-energy-s) = {partial_energy_s}: "
                          f"seconds between writes of a trial's energy so far, >= 0 (0: never)")
    multi_objective = len(objectives(strategy)) > 1
    if multi_objective and config.pruning.pruner != "none":
        raise ConfigError(f"pruning.pruner = {config.pruning.pruner!r}: Optuna's pruners are "
                          f"single-objective; strategy {strategy!r} needs pruner = 'none' "
                          f"(budget.max_trial_energy_j still caps each trial)")
    if source is None:
        source = trial_source(config, storage_url, partial_energy_s=partial_energy_s, out=out)
    with source.lock(study_name(config, strategy, seed)):
        return _run(config, strategy, seed, storage_url, progress, out or sys.stdout,
                    cross_check, source, multi_objective)


def _run(config: StudyConfig, strategy: str, seed: int, storage_url: StoreURL, progress: bool,
         out, cross_check: str | None, source: TrialSource,
         multi_objective: bool) -> StudySummary:
    t_start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    threads = source.torch_threads or config.train.torch_threads
    set_threads(threads)
    set_deterministic(config.train.deterministic)
    # A worker pinned to one GPU sees it as cuda:0 (WorkerContext.train_device).
    device = resolve_device(source.train_device(config.train.device))
    function = _user_function(config)  # a bad [objective] fails before anything is stored

    carbon = resolve_carbon(config.meter)
    budget = StudyBudget.of(config, carbon)
    meter_choice = source.meter_choice(config.meter, use_gpus=device.type == "cuda",
                                       cuda_index=device.index)
    meter = meter_choice.meter
    try:
        trial_meter = wrap_cross_check(meter, cross_check, carbon.country_alpha3)
    except BaseException:
        meter.close()
        raise
    notes: list[str] = []
    setup: list = []
    study = open_study(config, strategy, seed, storage_url, meter_choice,
                       storage=source.storage(), notes=notes, setup=setup)
    for note in notes:
        print(f"config changed (only the analysis): {note}; the stored config now has it",
              file=out)
    # The strategy's own computation, metered apart from the storage around it; building
    # it (imports, model template) is charged to the run's first proposal.
    study.sampler = MeteredSampler(study.sampler, meter, setup=setup[0])
    if "environment" not in study.user_attrs:  # --environment, or device + model + threads
        study.set_user_attr("environment", config.environment or environment_label(
            str(device), hardware_info(), threads))
    name = study.study_name
    n_budget = config.budget.n_trials
    if strategy == "grid":
        size = grid_size(config.search_space, config.strategy.grid_levels)
        if size < n_budget:
            print(f"grid has {size} points < budget {n_budget}: running the whole grid", file=out)
            n_budget = size
    source.prepare(study, out)

    def finished() -> list:
        return study.get_trials(deepcopy=False, states=FINISHED)

    done = len(finished())
    print(f"meter: {meter.method} ({_meter_line(meter_choice)})", file=out)
    if done >= n_budget:
        print(f"study {name} already has {done}/{n_budget} finished trials; nothing to run "
              f"(raise --trials to run more)", file=out)
        meter.close()
        _write_dashboard_notes(study)  # the stored config may have taken a new target
        return study_summary(study, storage_url, n_budget, 0, t_start, "budget already spent",
                             meter)

    try:
        if function is None:  # the built-in CNN objective: its dataset, on the device once
            function = _cnn_function(config, study, device, progress, out)
    except BaseException:
        meter.close()
        raise
    # Idle baseline with the same meter, at every start (new or resumed study): the
    # study keeps the latest, each trial the one in force when it ran. A meter that cannot
    # see idle power (the estimate) is not asked. Workers keep one reading each.
    idle_power_w, idle_note = idle_baseline(meter, config.meter.idle_s)
    for key, value_ in {**source.idle_attrs(idle_power_w, config.meter.idle_s),
                        **carbon.study_attrs()}.items():
        study.set_user_attr(key, value_)
    print(f"idle power: {idle_note}; carbon: {carbon.intensity_g_per_kwh:g} g CO2e/kWh x PUE "
          f"{carbon.pue:g} ({carbon.source})", file=out)
    run_attrs = record_run(study, hardware_info(), meter_choice, out, idle_power_w=idle_power_w,
                           idle_note=idle_note, config_changes=notes)
    objective = Objective(config, function, trial_meter, seed=seed, device=str(device),
                          on_measurement=TrialEnergyAttrs(idle_power_w, carbon),
                          multi_objective=multi_objective, run_attrs=run_attrs,
                          overhead_meter=meter)
    # The built-in's one-off warm-up (kernels, allocators), outside any window.
    if (warm_up := getattr(function, "warm_up", None)) is not None:
        warm_up()
    if done:
        print(f"resuming {name}: {done}/{n_budget} finished, {n_budget - done} to run", file=out)

    # What the trials are charged (accounting.py): training + proposing + storage.
    energy_so_far = charged_total_j(t.user_attrs for t in study.get_trials(deepcopy=False))
    best = best_value(study)
    better = max if config.direction == "maximize" else min
    bar = tqdm(total=n_budget, initial=done, desc=name, unit="trial", disable=not progress,
               file=out, dynamic_ncols=True)
    ran = fails_in_row = 0
    stop_reason = "budget reached"

    def stop() -> str | None:  # budget.stop_at_target: asked before each claim
        hit = reached_target(study, config)
        return None if hit is None else stop_text(hit, config)

    last_error = ""
    interrupted = False
    try:
        while done < n_budget:
            if config.budget.timeout_s is not None and \
                    time.perf_counter() - t_start >= config.budget.timeout_s:
                stop_reason = f"time budget {config.budget.timeout_s:g} s reached"
                break
            claim = source.claim(study, n_budget, objective.begin_proposal, objective.propose,
                                 budget=budget, stop=stop)
            if isinstance(claim, str):  # a study-wide budget is spent, or the target reached
                stop_reason = claim
                break
            if claim is None:  # the rest of the budget is finished or running elsewhere
                done = len(finished())
                continue
            trial = claim.trial
            state, values = TrialState.COMPLETE, None
            try:
                params = claim.params()
                with source.running(trial):  # a heartbeat, the trial's energy so far
                    values = objective.values(objective.run(trial, params))
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (run/signals.py)
                trial.set_user_attr("fail_reason", interrupt_reason(exc))
                study.tell(trial, state=TrialState.FAIL)
                interrupted = True
                stop_reason = "interrupted"
                break
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except TrialDiverged as exc:  # its attrs say so (fail_reason); the study goes on
                study.tell(trial, state=TrialState.FAIL)
                fails_in_row = 0
                bar.write(f"trial {trial.number} {exc}: recorded FAIL")
                continue
            except ContractError as exc:  # the function is wrong: the next trial would be too
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
                study.tell(trial, state=TrialState.FAIL)
                raise StudyAborted(f"{name}: trial {trial.number}: {exc}. The study stops at "
                                   f"the first such error; the trial is recorded FAIL in the "
                                   f"store.") from None
            except Exception as exc:  # a crashed trial is recorded, the study goes on
                if (fault := storage_fault(exc, storage_url, os_errors=False)) is not None:
                    raise record_in_flight(study, trial, fault) from exc  # full, read-only
                last_error = f"{type(exc).__name__}: {exc}"
                trial.set_user_attr("error", last_error[:2000])
                study.tell(trial, state=TrialState.FAIL)
                fails_in_row += 1
                bar.write(f"trial {trial.number} failed: {last_error}")
                if fails_in_row >= MAX_CONSECUTIVE_FAILURES:
                    raise StudyAborted(
                        f"{fails_in_row} trials in a row failed in {name}; last error: "
                        f"{last_error}. The failures are recorded in the store."
                    ) from exc
                continue
            finally:
                ran += 1
                energy_so_far += charged_energy_j(trial.user_attrs) or 0.0
                done = source.n_finished(study, done)  # other workers finish trials too
            told = tell(study, trial, values, state)
            fails_in_row = 0
            if told.state in FINISHED:
                done = source.n_finished(study, done + 1)
                bar.update(1)
                v = value(told)
                if v is not None:
                    best = v if best is None else better(best, v)
            bar.set_postfix_str(f"best {config.metric} {best:.4g}, {energy_so_far:,.0f} J"
                                if best is not None else f"{energy_so_far:,.0f} J")
    finally:
        tail = objective.end_tail()  # recording the last trial: on no trial (overhead.py)
        bar.close()
        meter.close()
        _write_dashboard_notes(study)
    summary = study_summary(study, storage_url, n_budget, ran, t_start, stop_reason, meter,
                            idle_note=idle_note)
    summary.interrupted = interrupted
    for key, value_ in {"pruning_energy_saved_j": summary.energy_saved_j,
                        "propose_energy_j": summary.propose_energy_j,
                        "store_energy_j": summary.store_energy_j,
                        "training_energy_j": summary.training_energy_j,  # meter windows
                        "total_energy_j": summary.total_energy_j,  # charged
                        "tail_store_energy_j": None if tail is None else tail.energy_j,
                        "tail_store_s": None if tail is None else tail.duration_s}.items():
        study.set_user_attr(key, value_)
    return summary


def _user_function(config: StudyConfig):
    """The user's objective function (`[objective] function`), or None for the CNN."""
    if config.objective.builtin:
        return None
    from tuning_energy.objective.context import load_function

    return load_function(config.objective.function, config.objective.folder)


def _cnn_function(config: StudyConfig, study: optuna.Study, device: torch.device,
                  progress: bool, out):
    """The built-in CNN objective with its dataset on the device, warmed up."""
    from tuning_energy.cnn.data import load_dataset
    from tuning_energy.cnn.function import CnnObjective
    from tuning_energy.energy.predict import EnergyPredictor

    data = load_dataset(config.data, progress=progress, out=out).to(device)
    print(f"data: {data.describe()}", file=out)
    predictor = EnergyPredictor.from_attrs(
        t.user_attrs for t in study.get_trials(deepcopy=False, states=FINISHED))
    return CnnObjective(config, data, predictor)


def _write_dashboard_notes(study: optuna.Study) -> None:
    """optuna-dashboard notes (study summary, best trial); a failure never loses trials."""
    try:
        from tuning_energy.report.dashboard import write_study_note

        write_study_note(study)
    except Exception as exc:  # the trials are stored already; the note is a convenience
        if storage_fault(exc, None) is not None:
            return  # a full, read-only or locked store: the error that stops the run says so
        warnings.warn(f"could not write the dashboard note of {study.study_name}: "
                      f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)


def _meter_line(choice: MeterChoice) -> str:
    d = choice.meter.describe()
    parts = [d.get("note", "")] + [f"{k}: {v}" for k, v in choice.reasons.items()]
    return "; ".join(p for p in parts if p)

