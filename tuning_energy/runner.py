"""Studies in the store: create or resume, budgets, seeds, progress, summary.

One study per (config, strategy, seed), named `{config name}-{strategy}-s{seed}`. The
budget counts finished trials (COMPLETE and PRUNED): rerunning a finished study runs
nothing; rerunning an interrupted one runs what is left. Ctrl-C marks the trial in flight
FAIL; a trial left RUNNING by a process killed hard is marked FAIL by the next run.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.trial import TrialState
from tqdm.auto import tqdm

from . import __version__
from .config import StudyConfig
from .data import load_dataset
from .energy import MeterChoice, build_meter
from .energy.baseline import TrialEnergyAttrs, measure_idle
from .energy.carbon import resolve_carbon
from .energy.crosscheck import wrap_cross_check
from .errors import ConfigError, StorageError, StudyAborted
from .objective import Objective
from .predict import EnergyPredictor
from .storage import open_storage, redact, storage_kind
from .strategies import (
    SKOPT_STRATEGIES,
    check_strategy,
    grid_size,
    make_pruner,
    make_sampler,
    objectives,
)
from .train import warm_up

if TYPE_CHECKING:
    from .workers import WorkerContext

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 5


def study_name(config: StudyConfig, strategy: str, seed: int) -> str:
    """`{config name}-{strategy}-s{seed}`, with the pruner after the strategy when one is on."""
    pruner = config.pruning.pruner
    return f"{config.name}-{strategy}{'' if pruner == 'none' else '-' + pruner}-s{seed}"


def hardware_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "cpu_cores_usable": usable,
            "gpus": gpus or "none", "platform": platform.platform(),
            "python": platform.python_version()}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise StudyAborted("train.device = 'cuda': no CUDA GPU is visible to torch; "
                           "use train.device = 'cpu' or 'auto'")
    return torch.device(name)


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


@dataclass
class StudySummary:
    study_name: str
    storage: str
    n_trials_budget: int
    n_finished: int
    n_failed: int
    ran_now: int
    best_accuracy: float | None
    best_params: dict[str, Any]
    total_energy_j: float | None
    energy_method: str
    wall_s: float
    propose_s: float
    stop_reason: str
    interrupted: bool = False
    n_pruned: int = 0
    energy_saved_j: float = 0.0  # estimated energy the pruned trials did not spend
    propose_energy_j: float | None = None  # the strategy's own energy (outside trials)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def propose_share_of_energy(self) -> float | None:
        """The search's own energy / (it + all trials' energy): what the strategy costs."""
        if self.propose_energy_j is None or self.total_energy_j is None:
            return None
        total = self.propose_energy_j + self.total_energy_j
        return self.propose_energy_j / total if total > 0 else None

    def lines(self) -> list[str]:
        e = self.total_energy_j
        energy = "not measured" if e is None else f"{e:,.1f} J ({e / 3600:.4f} Wh)"
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in self.best_params.items())
        best = "none" if self.best_accuracy is None else f"{self.best_accuracy:.4f}"
        return [
            f"study      {self.study_name}  in {redact(self.storage)}",
            f"trials     {self.n_finished}/{self.n_trials_budget} finished, {self.n_failed} failed,"
            f" {self.ran_now} run now ({self.stop_reason})",
            f"best       accuracy {best}  ({params})",
            f"energy     {energy}, all trials incl. failed; method {self.energy_method}",
            f"search     {self.propose_s:.2f} s proposing parameters (the strategy's own cost"
            + (f", {self.propose_energy_j:,.1f} J = {self.propose_share_of_energy:.1%} of "
               f"search + training energy" if self.propose_share_of_energy is not None else "")
            + ")",
            *([f"pruned     {self.n_pruned} trials, ~{self.energy_saved_j:,.1f} J saved "
               f"(estimated from the epochs not run)"] if self.n_pruned else []),
            f"wall time  {self.wall_s:.1f} s",
        ]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def fail_stale_running(study: optuna.Study) -> int:
    """Mark RUNNING trials FAIL: left by a process killed hard (single-process stores)."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason",
                                           "left RUNNING by a process that was killed")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        n += 1
    return n


#: Config keys added after 0.1.0, with the value that reproduces what a study stored before
#: the key existed did. A stored config without the key is read with this value, so such a
#: study resumes only where the current config keeps the old behaviour.
LEGACY_VALUES: dict[str, Any] = {
    "strategy.bayes.gp_refit_every": 1,  # kernel hyperparameters refit at every proposal
}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "search_space" and k != "fixed":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _relevant(key: str, strategy: str) -> bool:
    """Keys that change what a study of `strategy` does: not the budget (a resumed study
    may be given more trials), and only its own strategy's options."""
    if key.startswith("budget."):
        return False
    if key.startswith("strategy.bayes."):
        return strategy in SKOPT_STRATEGIES
    if key == "strategy.grid_levels":
        return strategy == "grid"
    return True


def config_differences(stored: dict[str, Any], current: dict[str, Any],
                       strategy: str) -> list[str]:
    """'key: stored X, now Y' for every dotted key that differs and matters to `strategy`."""
    old, new = _flat(stored), _flat(current)
    for key, value in LEGACY_VALUES.items():
        if key not in old and key in new:
            old[key] = value
    return [f"{k}: stored {old.get(k, '(absent)')!r}, now {new.get(k, '(absent)')!r}"
            for k in sorted(set(old) | set(new))
            if _relevant(k, strategy) and old.get(k) != new.get(k)]


def open_study(config: StudyConfig, strategy: str, seed: int, storage_url: str,
               meter_choice: MeterChoice, storage=None) -> optuna.Study:
    storage = storage if storage is not None else open_storage(storage_url)
    name = study_name(config, strategy, seed)
    sampler = make_sampler(strategy, config, seed)
    metrics = objectives(strategy)
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
    elif diff := config_differences(stored, config.to_dict(), strategy):
        raise StorageError(
            f"study {name!r} in {redact(storage_url)} was created with a different config "
            f"({'; '.join(diff)}); to resume it, set those keys back in the TOML; to start "
            f"a new study, rename the config's `name` or use another --storage")
    return study


def run_study(config: StudyConfig, strategy: str, seed: int = 0,
              storage_url: str = "sqlite:///studies/energy.db", progress: bool = True,
              out=None, cross_check: str | None = None,
              worker: WorkerContext | None = None) -> StudySummary:
    """Create or resume the study and run trials until its budget is spent.

    cross_check: None, or `codecarbon` to store CodeCarbon's energy beside ours per trial.
    worker: one of several processes sharing the study (workers.py): it takes trials through
    `worker.claim` (budget checked against the store, dead workers' trials re-queued), beats
    a heartbeat while a trial runs, and uses its share of the cores and of the meter.
    """
    out = out or sys.stdout
    check_strategy(strategy)
    storage_kind(storage_url)
    multi_objective = len(objectives(strategy)) > 1
    if multi_objective and config.pruning.pruner != "none":
        raise ConfigError(f"pruning.pruner = {config.pruning.pruner!r}: Optuna's pruners are "
                          f"single-objective; strategy {strategy!r} needs pruner = 'none' "
                          f"(budget.max_trial_energy_j still caps each trial)")
    t_start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    set_threads(config.train.torch_threads if worker is None else worker.torch_threads)
    device = resolve_device(config.train.device)

    carbon = resolve_carbon(config.meter)
    meter_choice = build_meter(config.meter, use_gpus=device.type == "cuda") if worker is None \
        else worker.meter_choice(config.meter, use_gpus=device.type == "cuda")
    meter = meter_choice.meter
    try:
        trial_meter = wrap_cross_check(meter, cross_check, carbon.country_alpha3)
    except BaseException:
        meter.close()
        raise
    study = open_study(config, strategy, seed, storage_url, meter_choice,
                       storage=None if worker is None else worker.storage())
    if worker is not None:
        for k, v in worker.describe().items():
            study.set_user_attr(k, v)
    name = study.study_name
    n_budget = config.budget.n_trials
    if strategy == "grid":
        size = grid_size(config.search_space, config.strategy.grid_levels)
        if size < n_budget:
            print(f"grid has {size} points < budget {n_budget}: running the whole grid", file=out)
            n_budget = size

    stale = fail_stale_running(study) if storage_kind(storage_url) == "sqlite" and \
        worker is None else 0
    if stale:
        print(f"marked {stale} trial(s) left RUNNING by a killed run as FAIL", file=out)

    def finished() -> list:
        return study.get_trials(deepcopy=False, states=FINISHED)

    def all_trials() -> list:
        return study.get_trials(deepcopy=False)

    done = len(finished())
    print(f"meter: {meter.method} ({_meter_line(meter_choice)})", file=out)
    if done >= n_budget:
        print(f"study {name} already has {done}/{n_budget} finished trials; nothing to run "
              f"(raise --trials to run more)", file=out)
        meter.close()
        return _summary(study, storage_url, n_budget, 0, t_start, "budget already spent", meter)

    data = load_dataset(config.data).to(device)
    # Idle baseline with the same meter, at every start (new or resumed study): the
    # study keeps the latest, each trial the one in force when it ran.
    idle_power_w = measure_idle(meter, config.meter.idle_s)
    idle_attrs = {"idle_power_w": idle_power_w} if worker is None else \
        worker.idle_attrs(idle_power_w, config.meter.idle_s)  # one per worker
    for key, value in {**idle_attrs, **carbon.study_attrs()}.items():
        study.set_user_attr(key, value)
    idle = "off" if idle_power_w is None else f"{idle_power_w:.2f} W over {config.meter.idle_s:g} s"
    print(f"idle power: {idle}; carbon: {carbon.intensity_g_per_kwh:g} g CO2e/kWh x PUE "
          f"{carbon.pue:g} ({carbon.source})", file=out)
    predictor = EnergyPredictor.from_attrs(t.user_attrs for t in finished())
    objective = Objective(config, data, trial_meter, seed=seed, device=device,
                          on_measurement=TrialEnergyAttrs(idle_power_w, carbon),
                          multi_objective=multi_objective, predictor=predictor)
    # One tiny step of the largest model first, outside any window: the first trial of a
    # process would otherwise be charged the one-off warm-up (~2 s of CPU here, 10x a trial).
    warm_up(data, device, config.train.batch_size)
    if done:
        print(f"resuming {name}: {done}/{n_budget} finished, {n_budget - done} to run", file=out)

    energy_so_far = sum((t.user_attrs.get("energy_j") or 0.0) for t in all_trials())
    best = _best(study)
    bar = tqdm(total=n_budget, initial=done, desc=name, unit="trial", disable=not progress,
               file=out, dynamic_ncols=True)
    ran = fails_in_row = 0
    stop_reason = "budget reached"
    last_error = ""
    interrupted = False
    max_j = config.budget.max_energy_j
    try:
        while done < n_budget:
            if max_j is not None:
                # Stop before a trial that would overrun the budget, predicted by the median
                # energy of this study's finished trials.
                spent = [t.user_attrs["energy_j"] for t in finished()
                         if t.user_attrs.get("energy_j") is not None]
                next_j = statistics.median(spent) if spent else 0.0
                if energy_so_far + next_j > max_j:
                    stop_reason = (f"energy budget: {energy_so_far:,.1f} J spent, the next trial "
                                   f"(~{next_j:,.1f} J predicted) would pass max_energy_j "
                                   f"{max_j:g} J")
                    break
            if config.budget.timeout_s is not None and \
                    time.perf_counter() - t_start >= config.budget.timeout_s:
                stop_reason = f"time budget {config.budget.timeout_s:g} s reached"
                break
            if worker is None:
                window = meter.begin()  # the strategy's own cost: ask + suggest
                trial = study.ask()
                params = None
            else:  # ask + suggest under the workers' lock, inside the same kind of window
                claimed = worker.claim(study, n_budget, meter.begin, objective.propose,
                                       max_energy_j=max_j)
                if claimed is None and worker.stop_reason:  # the study-wide energy budget
                    stop_reason = worker.stop_reason
                    break
                if claimed is None:  # the rest of the budget is finished or running elsewhere
                    done = len(finished())
                    continue
                trial, params = claimed
            state, values = TrialState.COMPLETE, None
            try:
                with worker.heartbeat(trial) if worker else contextlib.nullcontext():
                    if params is None:
                        params = objective.propose(trial, window)
                    values = objective.values(objective.run(trial, params))
            except KeyboardInterrupt:
                trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
                study.tell(trial, state=TrialState.FAIL)
                interrupted = True
                stop_reason = "interrupted"
                break
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except Exception as exc:  # a crashed trial is recorded, the study goes on
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
                energy_so_far += trial.user_attrs.get("energy_j") or 0.0
                if worker is not None:  # other workers finish trials too
                    done = len(finished())
            frozen = study.tell(trial, values, state=state)
            fails_in_row = 0
            if frozen.state in FINISHED:
                done += 1 if worker is None else len(finished()) - done
                bar.update(1)
                acc = _accuracy(frozen)
                if acc is not None and (best is None or acc > best):
                    best = acc
            bar.set_postfix_str(f"best acc {best:.4f}, {energy_so_far:,.0f} J"
                                if best is not None else f"{energy_so_far:,.0f} J")
    finally:
        bar.close()
        meter.close()
        _write_dashboard_notes(study)
    summary = _summary(study, storage_url, n_budget, ran, t_start, stop_reason, meter)
    summary.interrupted = interrupted
    for key, value in {"pruning_energy_saved_j": summary.energy_saved_j,
                       "propose_energy_j": summary.propose_energy_j,
                       "total_energy_j": summary.total_energy_j}.items():
        study.set_user_attr(key, value)
    return summary


def _write_dashboard_notes(study: optuna.Study) -> None:
    """optuna-dashboard notes (study summary, best trial); a failure never loses trials."""
    try:
        from .dashboard import write_study_note

        write_study_note(study)
    except Exception as exc:  # the trials are stored already; the note is a convenience
        warnings.warn(f"could not write the dashboard note of {study.study_name}: "
                      f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)


def _meter_line(choice: MeterChoice) -> str:
    d = choice.meter.describe()
    parts = [d.get("note", "")] + [f"{k}: {v}" for k, v in choice.reasons.items()]
    return "; ".join(p for p in parts if p)


def _accuracy(t) -> float | None:
    """Accuracy of a finished trial (the first objective; None for pruned trials)."""
    if t.state != TrialState.COMPLETE or not t.values:
        return None
    v = t.values[0]
    return v if v is not None and math.isfinite(v) else None


def _best(study: optuna.Study) -> float | None:
    vals = [a for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if (a := _accuracy(t)) is not None]
    return max(vals) if vals else None


def _summary(study, storage_url, n_budget, ran, t_start, reason, meter) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if _accuracy(t) is not None]
    best_t = max(complete, key=_accuracy) if complete else None
    energies = [t.user_attrs.get("energy_j") for t in trials]
    measured = [e for e in energies if e is not None]
    return StudySummary(
        study_name=study.study_name, storage=storage_url, n_trials_budget=n_budget,
        n_finished=sum(t.state in FINISHED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials), ran_now=ran,
        best_accuracy=_accuracy(best_t) if best_t else None,
        best_params=dict(best_t.params) if best_t else {},
        total_energy_j=sum(measured) if measured else None,
        energy_method=study.user_attrs.get("energy_method", meter.method),
        wall_s=time.perf_counter() - t_start,
        propose_s=sum(t.user_attrs.get("propose_s") or 0.0 for t in trials),
        stop_reason=reason,
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        energy_saved_j=sum(t.user_attrs.get("energy_saved_j") or 0.0 for t in trials),
        propose_energy_j=_sum_or_none(t.user_attrs.get("propose_energy_j") for t in trials),
    )


def _sum_or_none(values) -> float | None:
    measured = [v for v in values if v is not None]
    return sum(measured) if measured else None
