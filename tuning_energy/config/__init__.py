"""Study configuration: one TOML file parsed once, at the edge, into a frozen `StudyConfig`.

Nothing below this module reads files, environment variables or globals for settings.
Every error names the key by its dotted path, the bad value and what is allowed.

    name = "default"              # study name prefix: {name}-{strategy}-s{seed}
    [data]     dataset, split_seed, val_fraction, validation, root, mirror
    [train]    epochs, batch_size, torch_threads, device, deterministic
    [budget]   n_trials, max_energy_j, max_co2_g, timeout_s, max_trial_energy_j, stop_at_target
    [meter]    kind, cpu_tdp_w, cpu_cores, region, carbon_intensity_g_per_kwh, carbon_intensity_csv, pue
    [strategy.bayes]  acq_func, n_initial_points, acq_optimizer, n_points, ...
    [strategy.seek]   n_initial_points, n_points, cost, pessimism (seek.py)
    [pruning]  pruner = "none"|"median"|"asha"|"hyperband"|"target", n_startup_trials, ...
    [objective] function, metric, direction, target, steps (config/objective.py; without
               it, the built-in CNN objective)
    [fixed]    values for objective parameters that are not searched
    [search_space.NAME]  type = "float"|"int"|"bool"|"categorical", low, high, log, choices
                         (low == high is a parameter with one value: every strategy proposes
                         it, the GP of `bayes` leaves it out)

With `[objective] function`, [data] and [train] are optional (train.device and
train.torch_threads still apply: the function gets the device as `ctx.device`).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuning_energy.config.checks import NUM as _NUM
from tuning_energy.config.checks import OPT_NUM as _OPT_NUM
from tuning_energy.config.checks import check_keys as _check_keys
from tuning_energy.config.checks import dataclass_from as _dataclass_from
from tuning_energy.config.checks import positive as _positive
from tuning_energy.config.checks import table_of as _table
from tuning_energy.config.checks import value_of as _get
from tuning_energy.config.objective import (  # noqa: F401 - the names this module had before
    BOOL_PARAMS,
    CNN_PARAMS,
    INT_PARAMS,
    OBJECTIVE_PARAMS,
    PARAM_TYPES,
    ObjectiveConfig,
    ParamSpec,
    parse_objective,
    parse_space,
)
from tuning_energy.config.seek import (
    TARGET_PRUNING_KEYS,
    SeekConfig,
    check_target_pruning,
    parse_seek,
)
from tuning_energy.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DATASETS = ("digits", "mnist1d", "fashion-mnist", "cifar10")
DEVICES = ("cpu", "cuda", "auto")  # and "cuda:N", N a CUDA device index (DEVICE_PATTERN)
DEVICE_PATTERN = re.compile(r"cuda:\d+")
#: Where the validation set (the one strategies select on) comes from: a stratified part of
#: the training set, or the test set (Yarally et al.'s protocol: selection on the test set).
VALIDATIONS = ("split", "test")
METER_KINDS = ("auto", "estimate", "rapl", "nvml")
ACQ_FUNCS = ("PI", "EI", "LCB", "gp_hedge")
ACQ_OPTIMIZERS = ("sampling", "lbfgs", "auto")
PRUNERS = ("none", "median", "asha", "hyperband", "target")

@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    split_seed: int = 0
    val_fraction: float = 0.25  # of the training set, stratified, with split_seed
    validation: str = "split"  # "split" (from the training set) or "test" (the paper's)
    # where fashion-mnist / cifar10 files live (torchvision's layout) or are downloaded to;
    # None: the per-user cache folder, filled in by the CLI (data.default_root)
    root: str | None = None
    mirror: str | None = None  # download from this base URL instead (same published MD5s)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    torch_threads: int = 1
    device: str = "cpu"
    deterministic: bool = False  # torch.use_deterministic_algorithms + cuDNN flags


#: What only the built-in CNN objective reads: not stored on, nor compared by the resume of,
#: a study of a user's objective (a key or a section's prefix).
CNN_ONLY = ("data", "train.epochs", "train.batch_size")


@dataclass(frozen=True)
class BudgetConfig:
    n_trials: int = 30
    max_energy_j: float | None = None  # per study: stop before a trial predicted to exceed it
    timeout_s: float | None = None
    max_trial_energy_j: float | None = None  # per trial: prune when projected over this cap
    max_co2_g: float | None = None  # per study: as max_energy_j, in g CO2e (meter's carbon)
    stop_at_target: bool = False  # end the study once a trial reaches the config's target


@dataclass(frozen=True)
class PruningConfig:
    """Stop unpromising trials early; their energy is kept and counted."""

    pruner: str = "none"
    n_startup_trials: int = 5  # median: trials before pruning starts
    n_warmup_epochs: int = 2  # median: epochs before a trial can be pruned
    min_epochs: int = 1  # asha / hyperband: minimum resource
    reduction_factor: int = 3  # asha / hyperband
    grace_epochs: int = 8  # target: epochs before a trial can be pruned
    threshold: float = 0.05  # target: prune when P(final value reaches the target) < this


@dataclass(frozen=True)
class MeterConfig:
    kind: str = "auto"
    cpu_tdp_w: float | None = None  # estimate meter: package TDP in W (default: 6 W x cores)
    cpu_cores: int | None = None  # estimate meter: cores the TDP is shared over
    powercap_root: str | None = None  # RAPL tree (default /sys/class/powercap)
    gpus: tuple[int, ...] | None = None  # CUDA indices as in cuda:N (default: the training GPU)
    idle_s: float = 5.0  # idle-baseline seconds at study start (0 = off)
    region: str | None = None  # ISO country code for grid carbon intensity
    carbon_intensity_g_per_kwh: float | None = None  # explicit intensity (overrides region)
    pue: float = 1.0
    # a CSV of timestamp, g CO2e/kWh: each trial's CO2 at the intensity of its window (the
    # constant above outside the file's range); relative to the config file's folder
    carbon_intensity_csv: str | None = None


@dataclass(frozen=True)
class BayesConfig:
    """scikit-optimize GP driver (Yarally et al. used PI with a few random points)."""

    acq_func: str = "PI"
    n_initial_points: int = 5
    acq_optimizer: str = "sampling"
    n_points: int = 1000  # candidates the acquisition is evaluated at (skopt: 10000)
    n_restarts_optimizer: int = 2  # L-BFGS starts of the acquisition (acq_optimizer "lbfgs")
    # Extra random restarts of the GP kernel-hyperparameter fit (scikit-learn's
    # n_restarts_optimizer; skopt cooks 2). Each restart is a full L-BFGS fit (bench:
    # propose_overhead_bayes_64's variants and their best values).
    gp_n_restarts_optimizer: int = 0
    # Fit the GP kernel's hyperparameters on the first multiple of this many finished
    # trials and keep them fixed until the next multiple (1 = refit at every proposal, as
    # skopt does). Deterministic: a resumed study refits on the same trials.
    gp_refit_every: int = 5
    # Fit the kernel's hyperparameters on at most this many finished trials (the latest of
    # the refit's trials; 0 = all). The GP is still conditioned on every trial. The fit is
    # O(n^3) per likelihood evaluation: uncapped it is most of a proposal at 256 trials
    # (bench: propose_overhead_bayes_256). Below the cap nothing changes.
    gp_fit_max_points: int = 64
    xi: float = 0.01
    kappa: float = 1.96


@dataclass(frozen=True)
class StrategyOptions:
    bayes: BayesConfig = field(default_factory=BayesConfig)
    seek: SeekConfig = field(default_factory=SeekConfig)
    grid_levels: int = 5  # levels per float parameter


@dataclass(frozen=True)
class StudyConfig:
    name: str
    data: DataConfig
    train: TrainConfig
    budget: BudgetConfig
    meter: MeterConfig
    strategy: StrategyOptions
    fixed: dict[str, Any]
    search_space: tuple[ParamSpec, ...]
    target_accuracy: float | None = None  # accuracy the analysis asks "energy to reach"
    pruning: PruningConfig = field(default_factory=PruningConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    # where the study runs (`--environment`; None: a label made from the device, CPU/GPU
    # model and threads at run time). Not a TOML key: the same config runs anywhere.
    environment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (stored on the study). A user's objective
        (`[objective] function`) is stored without what only the built-in CNN reads
        (`CNN_ONLY`: [data], train.epochs, train.batch_size)."""
        d = _plain(dataclasses.asdict(self))
        if not self.objective.builtin:
            del d["data"]  # CNN_ONLY
            d["train"] = {k: v for k, v in d["train"].items()
                          if f"train.{k}" not in CNN_ONLY}
        return d

    def with_overrides(self, **changes: Any) -> StudyConfig:
        """Copy with top-level sections replaced (e.g. budget from a CLI flag)."""
        return dataclasses.replace(self, **changes)

    def param_values(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """All objective parameters: the CNN's defaults (built-in objective only), then
        fixed, then the sampled ones."""
        return {**(CNN_PARAMS if self.objective.builtin else {}), **self.fixed, **sampled}

    @property
    def metric(self) -> str:
        """The objective's value's name: `accuracy` for the built-in CNN objective."""
        return self.objective.metric

    @property
    def direction(self) -> str:
        return self.objective.direction

    @property
    def target(self) -> float | None:
        """Energy to target's target, in the metric's units: `[objective] target`, or
        `target_accuracy` (the built-in objective's key before [objective] existed)."""
        return self.objective.target if self.objective.target is not None \
            else self.target_accuracy

    @property
    def n_steps(self) -> int | None:
        """How often a trial reports (ctx.report): the CNN's epochs, or objective.steps."""
        return self.train.epochs if self.objective.builtin else self.objective.steps


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------- sections


def parse_bayes(table: dict[str, Any], path: str = "strategy.bayes") -> BayesConfig:
    """`[strategy.bayes]` (or SkoptSampler's keyword options, with `path` naming them)."""
    bayes = _dataclass_from(BayesConfig, table, path, {
        "acq_func": ((str,), ACQ_FUNCS),
        "n_initial_points": ((int,), None),
        "acq_optimizer": ((str,), ACQ_OPTIMIZERS),
        "n_points": ((int,), None),
        "n_restarts_optimizer": ((int,), None),
        "gp_n_restarts_optimizer": ((int,), None),
        "gp_refit_every": ((int,), None),
        "gp_fit_max_points": ((int,), None),
        "xi": (_NUM, None),
        "kappa": (_NUM, None),
    })
    _positive(f"{path}.n_initial_points", bayes.n_initial_points, allow_zero=True)
    _positive(f"{path}.n_points", bayes.n_points)
    _positive(f"{path}.n_restarts_optimizer", bayes.n_restarts_optimizer, True)
    _positive(f"{path}.gp_n_restarts_optimizer", bayes.gp_n_restarts_optimizer, True)
    _positive(f"{path}.gp_refit_every", bayes.gp_refit_every)
    _positive(f"{path}.gp_fit_max_points", bayes.gp_fit_max_points, True)
    if 0 < bayes.gp_fit_max_points < 2:
        raise ConfigError(f"{path}.gp_fit_max_points = {bayes.gp_fit_max_points}: must be 0 "
                          f"(fit on every trial) or >= 2")
    return bayes


def parse_config(doc: dict[str, Any], default_name: str = "study") -> StudyConfig:
    """Validate a parsed TOML document into a `StudyConfig`."""
    top = {"name", "target_accuracy", "data", "train", "budget", "meter", "strategy", "fixed",
           "search_space", "pruning", "objective"}
    _check_keys(doc, "", top)
    name = _get(doc, "", "name", (str,), default_name)
    if not name or any(c in name for c in " /\\"):
        raise ConfigError(f"name = {name!r}: must be non-empty, without spaces or slashes")
    target = _get(doc, "", "target_accuracy", _OPT_NUM, None)
    if target is not None and not 0 < target <= 1:
        raise ConfigError(f"target_accuracy = {target!r}: must be in (0, 1]")
    objective = parse_objective(_table(doc, "objective"))
    if target is not None and objective.target is not None:
        raise ConfigError("target_accuracy and objective.target: both set; keep "
                          "objective.target (target_accuracy is the built-in objective's)")
    if target is not None and not objective.builtin:
        raise ConfigError(f"target_accuracy = {target!r}: with objective.function, set the "
                          f"target as objective.target (in the {objective.metric!r} units)")

    data = _dataclass_from(DataConfig, _table(doc, "data"), "data", {
        "dataset": ((str,), DATASETS),
        "split_seed": ((int,), None),
        "val_fraction": (_NUM, None),
        "validation": ((str,), VALIDATIONS),
        "root": ((str,), None),
        "mirror": ((str,), None),
    })
    if data.mirror is not None and not data.mirror.startswith(("http://", "https://")):
        raise ConfigError(f"data.mirror = {data.mirror!r}: must be an http:// or https:// URL "
                          f"(the folder that holds the dataset's published files)")
    if not 0 < data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction = {data.val_fraction!r}: must be in (0, 1)")

    train = _dataclass_from(TrainConfig, _table(doc, "train"), "train", {
        "epochs": ((int,), None),
        "batch_size": ((int,), None),
        "torch_threads": ((int,), None),
        "device": ((str,), None),
        "deterministic": ((bool,), None),
    })
    if train.device not in DEVICES and not DEVICE_PATTERN.fullmatch(train.device):
        raise ConfigError(f"train.device = {train.device!r}: allowed values are "
                          f"{', '.join(map(repr, DEVICES))} and 'cuda:N' (N: a CUDA device "
                          f"index, e.g. 'cuda:1')")
    for key in ("epochs", "batch_size", "torch_threads"):
        _positive(f"train.{key}", getattr(train, key))

    budget = _dataclass_from(BudgetConfig, _table(doc, "budget"), "budget", {
        "n_trials": ((int,), None),
        "max_energy_j": (_OPT_NUM, None),
        "timeout_s": (_OPT_NUM, None),
        "max_trial_energy_j": (_OPT_NUM, None),
        "max_co2_g": (_OPT_NUM, None),
        "stop_at_target": ((bool,), None),
    })
    _positive("budget.max_trial_energy_j", budget.max_trial_energy_j)
    _positive("budget.n_trials", budget.n_trials)
    _positive("budget.max_energy_j", budget.max_energy_j)
    _positive("budget.max_co2_g", budget.max_co2_g)
    _positive("budget.timeout_s", budget.timeout_s)

    meter_table = dict(_table(doc, "meter"))
    gpus = meter_table.pop("gpus", None)
    if gpus is not None and (
        not isinstance(gpus, list) or not gpus or len(set(gpus)) != len(gpus)
        or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpus)
    ):
        raise ConfigError(f"meter.gpus = {gpus!r}: must be a non-empty list of distinct CUDA "
                          f"device indices (integers >= 0, as N in cuda:N)")
    meter = _dataclass_from(MeterConfig, meter_table, "meter", {
        "kind": ((str,), METER_KINDS),
        "cpu_tdp_w": (_OPT_NUM, None),
        "cpu_cores": ((int, type(None)), None),
        "powercap_root": ((str, type(None)), None),
        "idle_s": (_NUM, None),
        "region": ((str, type(None)), None),
        "carbon_intensity_g_per_kwh": (_OPT_NUM, None),
        "pue": (_NUM, None),
        "carbon_intensity_csv": ((str, type(None)), None),
    })
    meter = dataclasses.replace(meter, gpus=tuple(gpus) if gpus is not None else None)
    _positive("meter.cpu_tdp_w", meter.cpu_tdp_w)
    _positive("meter.cpu_cores", meter.cpu_cores)
    _positive("meter.idle_s", meter.idle_s, allow_zero=True)
    _positive("meter.carbon_intensity_g_per_kwh", meter.carbon_intensity_g_per_kwh, True)
    if meter.pue < 1:
        raise ConfigError(f"meter.pue = {meter.pue!r}: must be >= 1 (1.0 = no overhead)")

    strat_table = dict(_table(doc, "strategy"))
    bayes = parse_bayes(_table(strat_table, "bayes", "strategy"))
    seek = parse_seek(_table(strat_table, "seek", "strategy"))
    strat_table.pop("bayes", None)
    strat_table.pop("seek", None)
    _check_keys(strat_table, "strategy", {"grid_levels"})
    grid_levels = _get(strat_table, "strategy", "grid_levels", (int,), 5)
    if grid_levels < 2:
        raise ConfigError(f"strategy.grid_levels = {grid_levels!r}: must be >= 2")
    strategy = StrategyOptions(bayes=bayes, seek=seek, grid_levels=grid_levels)

    pruning = _dataclass_from(PruningConfig, _table(doc, "pruning"), "pruning", {
        "pruner": ((str,), PRUNERS),
        "n_startup_trials": ((int,), None),
        "n_warmup_epochs": ((int,), None),
        "min_epochs": ((int,), None),
        "reduction_factor": ((int,), None),
        **TARGET_PRUNING_KEYS,
    })
    _positive("pruning.n_startup_trials", pruning.n_startup_trials, allow_zero=True)
    _positive("pruning.n_warmup_epochs", pruning.n_warmup_epochs, allow_zero=True)
    _positive("pruning.min_epochs", pruning.min_epochs)
    if pruning.reduction_factor < 2:
        raise ConfigError(f"pruning.reduction_factor = {pruning.reduction_factor!r}: must be >= 2")
    check_target_pruning(pruning.grace_epochs, pruning.threshold)

    fixed, space = parse_space(doc, objective)
    if budget.stop_at_target and target is None and objective.target is None:
        raise ConfigError("budget.stop_at_target = true: needs the config's target; set "
                          + ("target_accuracy" if objective.builtin else "objective.target"))

    return StudyConfig(name=name, data=data, train=train, budget=budget, meter=meter,
                       strategy=strategy, fixed=fixed, search_space=space,
                       target_accuracy=target, pruning=pruning, objective=objective)


def read_toml(path: Path, what: str = "config file", see: str = "studies/*.toml") -> dict:
    """A TOML file's document; ConfigError naming the file when missing or not TOML."""
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist (see {see})")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file."""
    path = Path(path)
    config = parse_config(read_toml(path), default_name=path.stem)
    csv_path = config.meter.carbon_intensity_csv
    if csv_path and not Path(csv_path).is_absolute():  # relative to the config's folder
        config = dataclasses.replace(config, meter=dataclasses.replace(
            config.meter, carbon_intensity_csv=str(path.resolve().parent / csv_path)))
    if config.objective.builtin:
        return config
    # The function's module is looked for in the config file's folder first.
    return dataclasses.replace(config, objective=dataclasses.replace(
        config.objective, folder=str(path.resolve().parent)))
