"""Studies in the store: create or resume, budgets, seeds, progress, summary.

One study per (config, strategy, seed), named `{config name}-{strategy}-s{seed}`. The
budget counts finished trials (COMPLETE and PRUNED): rerunning a finished study runs
nothing; rerunning an interrupted one runs what is left. Ctrl-C marks the trial in flight
FAIL; a trial left RUNNING by a process killed hard is marked FAIL by the next run.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import TrialState
from tqdm.auto import tqdm

from . import __version__
from .config import StudyConfig
from .data import load_dataset
from .energy import MeterChoice, build_meter
from .errors import StorageError, StudyAborted
from .objective import Objective
from .storage import open_storage, storage_kind
from .strategies import check_strategy, grid_size, make_sampler

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 5


def study_name(config: StudyConfig, strategy: str, seed: int) -> str:
    return f"{config.name}-{strategy}-s{seed}"


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
    """Torch threads, set explicitly: results with convolutions differ between 1 and 2."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass  # can only be set once per process, before parallel work; intra-op is what counts


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
    extra: dict[str, Any] = field(default_factory=dict)
    # The search's own share, over the trials run now (None when none ran): proposing wall
    # seconds / this run's wall time; under the estimate meter also its energy (CPU seconds
    # of study.ask x watts per busy core) and that energy / (it + the trials' energy).
    propose_share_of_wall: float | None = None
    propose_energy_j: float | None = None
    propose_share_of_energy: float | None = None

    def lines(self) -> list[str]:
        e = self.total_energy_j
        energy = "not measured" if e is None else f"{e:,.1f} J ({e / 3600:.4f} Wh)"
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in self.best_params.items())
        best = "none" if self.best_accuracy is None else f"{self.best_accuracy:.4f}"
        return [
            f"study      {self.study_name}  in {self.storage}",
            f"trials     {self.n_finished}/{self.n_trials_budget} finished, {self.n_failed} failed,"
            f" {self.ran_now} run now ({self.stop_reason})",
            f"best       accuracy {best}  ({params})",
            f"energy     {energy}, all trials incl. failed; method {self.energy_method}",
            f"search     {self.propose_s:.2f} s proposing parameters (the strategy's own cost)"
            + self._share_line(),
            f"wall time  {self.wall_s:.1f} s",
        ]

    def _share_line(self) -> str:
        if self.propose_share_of_wall is None:
            return ""
        out = f"; this run: {self.propose_share_of_wall:.1%} of wall time"
        if self.propose_energy_j is not None and self.propose_share_of_energy is not None:
            out += (f", {self.propose_energy_j:.1f} J = {self.propose_share_of_energy:.1%} of "
                    "energy (estimate: ask CPU s x W per core)")
        return out


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


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k != "budget"}


def open_study(config: StudyConfig, strategy: str, seed: int, storage_url: str,
               meter_choice: MeterChoice) -> optuna.Study:
    storage = open_storage(storage_url)
    name = study_name(config, strategy, seed)
    sampler = make_sampler(strategy, config, seed)
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                direction="maximize", load_if_exists=True)
    stored = study.user_attrs.get("config")
    if stored is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["accuracy"])
        attrs = {
            "strategy": strategy, "seed": seed, "config": config.to_dict(),
            "hardware": hardware_info(), "energy_method": meter_choice.meter.method,
            "meter": meter_choice.describe(), "tuning_energy_version": __version__,
            "torch_version": torch.__version__, "torch_threads": config.train.torch_threads,
        }
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    elif _comparable(stored) != _comparable(config.to_dict()):
        diff = sorted(k for k in set(stored) | set(config.to_dict())
                      if k != "budget" and stored.get(k) != config.to_dict().get(k))
        raise StorageError(
            f"study {name!r} in {storage_url} was created with a different config "
            f"(differs in: {', '.join(diff)}); rename the config's `name` or use another --storage"
        )
    return study


def run_study(config: StudyConfig, strategy: str, seed: int = 0,
              storage_url: str = "sqlite:///studies/energy.db", progress: bool = True,
              out=None) -> StudySummary:
    """Create or resume the study and run trials until its budget is spent."""
    out = out or sys.stdout
    check_strategy(strategy)
    storage_kind(storage_url)
    t_start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    set_threads(config.train.torch_threads)
    device = resolve_device(config.train.device)

    meter_choice = build_meter(config.meter)
    meter = meter_choice.meter
    study = open_study(config, strategy, seed, storage_url, meter_choice)
    name = study.study_name
    n_budget = config.budget.n_trials
    if strategy == "grid":
        size = grid_size(config.search_space, config.strategy.grid_levels)
        if size < n_budget:
            print(f"grid has {size} points < budget {n_budget}: running the whole grid", file=out)
            n_budget = size

    stale = fail_stale_running(study) if storage_kind(storage_url) == "sqlite" else 0
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
        return _summary(study, storage_url, n_budget, 0, t_start, "budget already spent", meter)

    data = load_dataset(config.data).to(device)
    objective = Objective(config, data, meter, seed=seed, device=device)
    if done:
        print(f"resuming {name}: {done}/{n_budget} finished, {n_budget - done} to run", file=out)

    energy_so_far = sum((t.user_attrs.get("energy_j") or 0.0) for t in all_trials())
    best = _best(study)
    bar = tqdm(total=n_budget, initial=done, desc=name, unit="trial", disable=not progress,
               file=out, dynamic_ncols=True)
    ran = fails_in_row = 0
    propose_wall_now = propose_cpu_now = trial_energy_now = 0.0
    stop_reason = "budget reached"
    last_error = ""
    interrupted = False
    try:
        while done < n_budget:
            if config.budget.max_energy_j is not None and energy_so_far >= config.budget.max_energy_j:
                stop_reason = f"energy budget {config.budget.max_energy_j:g} J reached"
                break
            if config.budget.timeout_s is not None and \
                    time.perf_counter() - t_start >= config.budget.timeout_s:
                stop_reason = f"time budget {config.budget.timeout_s:g} s reached"
                break
            t_ask, c_ask = time.perf_counter(), time.process_time()
            trial = study.ask()
            ask_s = time.perf_counter() - t_ask
            propose_cpu_now += time.process_time() - c_ask
            try:
                value = objective(trial, ask_s=ask_s)
            except KeyboardInterrupt:
                trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
                study.tell(trial, state=TrialState.FAIL)
                interrupted = True
                stop_reason = "interrupted"
                break
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
            else:
                frozen = study.tell(trial, value)
                fails_in_row = 0
                if frozen.state in FINISHED:
                    done += 1
                    bar.update(1)
                    if best is None or (value is not None and value > best):
                        best = value
            finally:
                ran += 1
                trial_attrs = trial.user_attrs
                energy_so_far += trial_attrs.get("energy_j") or 0.0
                trial_energy_now += trial_attrs.get("energy_j") or 0.0
                propose_wall_now += trial_attrs.get("propose_s") or ask_s
            bar.set_postfix_str(f"best acc {best:.4f}, {energy_so_far:,.0f} J"
                                if best is not None else f"{energy_so_far:,.0f} J")
    finally:
        bar.close()
        meter.close()
    summary = _summary(study, storage_url, n_budget, ran, t_start, stop_reason, meter)
    summary.interrupted = interrupted
    if ran:
        summary.propose_share_of_wall = propose_wall_now / summary.wall_s
        watts_per_core_w = getattr(meter, "watts_per_core_w", None)  # the estimate meter
        if watts_per_core_w is not None:
            summary.propose_energy_j = propose_cpu_now * watts_per_core_w
            total_j = trial_energy_now + summary.propose_energy_j
            summary.propose_share_of_energy = summary.propose_energy_j / total_j if total_j > 0 \
                else None
    return summary


def _meter_line(choice: MeterChoice) -> str:
    d = choice.meter.describe()
    parts = [d.get("note", "")] + [f"{k}: {v}" for k, v in choice.reasons.items()]
    return "; ".join(p for p in parts if p)


def _best(study: optuna.Study) -> float | None:
    vals = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    return max(vals) if vals else None


def _summary(study, storage_url, n_budget, ran, t_start, reason, meter) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_t = max(complete, key=lambda t: t.value) if complete else None
    energies = [t.user_attrs.get("energy_j") for t in trials]
    measured = [e for e in energies if e is not None]
    return StudySummary(
        study_name=study.study_name, storage=storage_url, n_trials_budget=n_budget,
        n_finished=sum(t.state in FINISHED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials), ran_now=ran,
        best_accuracy=best_t.value if best_t else None,
        best_params=dict(best_t.params) if best_t else {},
        total_energy_j=sum(measured) if measured else None,
        energy_method=study.user_attrs.get("energy_method", meter.method),
        wall_s=time.perf_counter() - t_start,
        propose_s=sum(t.user_attrs.get("propose_s") or 0.0 for t in trials),
        stop_reason=reason,
    )
