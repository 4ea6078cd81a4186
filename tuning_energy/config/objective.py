"""What the objective is and which parameters it takes: `[objective]`, `[search_space.*]`
and `[fixed]` of a study TOML (config/__init__.py reads the rest).

    [objective]                     # optional: without it, the built-in CNN objective
    function = "my_module:objective"  # module:callable; the config file's folder is put
                                      # first on sys.path to import it
    metric = "accuracy"             # the value's name in the store, dashboard and reports
    direction = "maximize"          # or "minimize" (a loss)
    target = 0.95                   # energy to target: the first trial at or past this
    steps = 20                      # optional: how many times a trial calls ctx.report
                                    # (projects the per-trial energy cap; hyperband's max)

The built-in CNN objective takes the parameters in `CNN_PARAMS` (its defaults fill what is
neither searched nor fixed), checked by name and type. A function of the user's takes the
searched and fixed parameters under any names; their types are still checked (a float
range, an int range, a bool, or categorical choices of strings, numbers and booleans).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tuning_energy.config.checks import NUM, OPT_NUM, check_keys, table_of, type_name, value_of
from tuning_energy.errors import ConfigError

PARAM_TYPES = ("float", "int", "bool", "categorical")
DIRECTIONS = ("maximize", "minimize")
FUNCTION_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
NAME_PATTERN = re.compile(r"[A-Za-z_][\w.-]*")

#: The built-in CNN objective's parameters, their meaning and defaults when neither searched
#: nor fixed.
CNN_PARAMS: dict[str, Any] = {
    "n_conv": 2,  # conv blocks: 3x3 conv -> BatchNorm -> ReLU -> MaxPool 2
    "n_linear": 1,  # hidden linear layers before the classifier
    "relu": True,  # ReLU after each conv block and between linear layers
    "channels": 8,  # channels of the first conv block (x3 per block)
    "hidden": 128,  # width of the first hidden linear layer (halving)
    "lr": 1e-3,  # Adam
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.0,
}
OBJECTIVE_PARAMS = CNN_PARAMS  # the name before [objective] existed
INT_PARAMS = {"n_conv", "n_linear", "channels", "hidden"}
BOOL_PARAMS = {"relu"}


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class ObjectiveConfig:
    """`[objective]`: the function trials run, and the value it returns."""

    function: str | None = None  # "module:callable"; None: the built-in CNN objective
    metric: str = "accuracy"
    direction: str = "maximize"
    target: float | None = None
    steps: int | None = None  # ctx.report calls per trial at most (None: not known)
    # where `function`'s module is looked for first (load_config: the config file's
    # folder); not a TOML key
    folder: str | None = None

    @property
    def builtin(self) -> bool:
        return self.function is None


def parse_objective(table: dict) -> ObjectiveConfig:
    path = "objective"
    check_keys(table, path, {"function", "metric", "direction", "target", "steps"})
    function = value_of(table, path, "function", (str,), None)
    if function is not None and not FUNCTION_PATTERN.fullmatch(function):
        raise ConfigError(f"objective.function = {function!r}: must be 'module:callable' "
                          f"(e.g. 'my_objective:objective', the module a .py file in the "
                          f"config's folder or an importable package)")
    metric = value_of(table, path, "metric", (str,), "accuracy")
    if not NAME_PATTERN.fullmatch(metric):
        raise ConfigError(f"objective.metric = {metric!r}: must be a name (letters, digits, "
                          f"'_', '.', '-'), e.g. 'accuracy' or 'val_loss'")
    if metric == "energy_j":
        raise ConfigError("objective.metric = 'energy_j': that name is the trial's measured "
                          "energy; name the function's value otherwise")
    direction = value_of(table, path, "direction", (str,), "maximize", DIRECTIONS)
    target = value_of(table, path, "target", OPT_NUM, None)
    steps = value_of(table, path, "steps", (int, type(None)), None)
    if steps is not None and steps < 1:
        raise ConfigError(f"objective.steps = {steps!r}: must be >= 1")
    if function is None and (metric, direction) != ("accuracy", "maximize"):
        raise ConfigError(f"objective.metric = {metric!r}, direction = {direction!r}: the "
                          f"built-in CNN objective (no objective.function) maximises "
                          f"'accuracy'; name your own function to use another metric")
    if function is None and steps is not None:
        raise ConfigError("objective.steps: the built-in CNN objective reports once per "
                          "epoch (train.epochs); leave steps out")
    if function is None and target is not None and not 0 < target <= 1:
        raise ConfigError(f"objective.target = {target!r}: an accuracy of the built-in CNN "
                          f"objective, in (0, 1]")
    return ObjectiveConfig(function, metric, direction, target, steps)


def _check_value(path: str, name: str, value: Any, builtin: bool) -> None:
    """A value of parameter `name` (fixed, or a categorical choice) has its type."""
    if not builtin:
        if not isinstance(value, str | bool | int | float):
            raise ConfigError(f"{path} = {value!r}: must be a string, a number or a boolean")
        return
    want = type(CNN_PARAMS[name])
    ok = isinstance(value, want) or (want is float and isinstance(value, int))
    if isinstance(value, bool) and want is not bool:
        ok = False
    if not ok:
        raise ConfigError(f"{path} = {value!r}: {name} must be {type_name(want)}")


def _unknown(path: str, name: str) -> ConfigError:
    return ConfigError(f"{path}: unknown parameter {name!r}; the built-in CNN objective "
                       f"takes {', '.join(CNN_PARAMS)} (name your own function in "
                       f"[objective] function = 'module:callable' for other parameters)")


def parse_param(name: str, table: dict, builtin: bool = True) -> ParamSpec:
    path = f"search_space.{name}"
    if builtin and name not in CNN_PARAMS:
        raise _unknown(path, name)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: must be a table with type, low, high (and log) or choices")
    ptype = value_of(table, path, "type", (str,), None, PARAM_TYPES)
    if ptype is None:
        raise ConfigError(f"{path}.type: missing; allowed values are {', '.join(PARAM_TYPES)}")
    if ptype == "bool":
        check_keys(table, path, {"type"})
        return ParamSpec(name, "bool", choices=(False, True))
    if ptype == "categorical":
        check_keys(table, path, {"type", "choices"})
        choices = table.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{path}.choices = {choices!r}: must be a non-empty list")
        for i, choice in enumerate(choices):  # each choice is a value of the parameter
            _check_value(f"{path}.choices[{i}]", name, choice, builtin)
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{path}.choices = {choices!r}: must be distinct")
        return ParamSpec(name, "categorical", choices=tuple(choices))
    check_keys(table, path, {"type", "low", "high", "log"})
    types = (int,) if ptype == "int" else NUM
    for key in ("low", "high"):
        if key not in table:
            raise ConfigError(f"{path}.{key}: missing; a {ptype} parameter needs low and high")
    low = value_of(table, path, "low", types, None)
    high = value_of(table, path, "high", types, None)
    log = value_of(table, path, "log", (bool,), False)
    if low > high:
        raise ConfigError(f"{path}: low = {low!r} > high = {high!r}; low must be <= high")
    if log and low <= 0:
        raise ConfigError(f"{path}.low = {low!r}: log = true needs low > 0")
    if builtin and name in INT_PARAMS and ptype != "int":
        raise ConfigError(f"{path}.type = {ptype!r}: {name} is an integer; use type = \"int\"")
    if builtin and name in BOOL_PARAMS and ptype not in ("bool", "categorical"):
        raise ConfigError(f"{path}.type = {ptype!r}: {name} is a boolean; use type = \"bool\"")
    return ParamSpec(name, ptype, low, high, log)


def parse_space(doc: dict, objective: ObjectiveConfig
                ) -> tuple[dict[str, Any], tuple[ParamSpec, ...]]:
    """`[fixed]` and `[search_space.*]`, checked for the objective they are passed to."""
    builtin = objective.builtin
    fixed = dict(table_of(doc, "fixed"))
    for key, value in fixed.items():
        if builtin and key not in CNN_PARAMS:
            raise _unknown(f"fixed.{key}", key)
        _check_value(f"fixed.{key}", key, value, builtin)
    space = tuple(parse_param(n, t, builtin) for n, t in table_of(doc, "search_space").items())
    if not space:
        raise ConfigError("search_space: empty; declare at least one [search_space.NAME] table")
    clash = sorted(set(fixed) & {p.name for p in space})
    if clash:
        raise ConfigError(f"fixed.{clash[0]}: also in search_space; a parameter is one or the other")
    return fixed, space
