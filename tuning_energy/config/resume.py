"""What may change between runs of one study: the config check of a resume.

A study resumes only under a config that does what the stored one did. The budget may
change (a resumed study may be given more trials), and so may the keys that change only
the analysis or where this machine finds things (`ANALYSIS_ONLY`); only the study's own
strategy's options must match.

The `environment` label (`--environment`) describes where a study ran; it changes only the
analysis, but one study has one label. A resume that does not give one keeps the stored
label (`resumed`); a resume that gives a different one is refused, since the label would
then cover trials from two environments. A study resumed elsewhere without a label keeps
its old one, and its runs say where each trial ran (`run:<run_id>`, `hardware_id` per
trial: runs.py), which the summary and report.md show as MIXED.
"""

from __future__ import annotations

from typing import Any

from tuning_energy.search.strategies import SKOPT_STRATEGIES

#: Config keys added after 0.1.0, with the value that reproduces what a study stored before
#: the key existed did. A stored config without the key is read with this value, so such a
#: study resumes only where the current config keeps the old behaviour.
LEGACY_VALUES: dict[str, Any] = {
    "strategy.bayes.gp_refit_every": 1,  # kernel hyperparameters refit at every proposal
    "strategy.bayes.gp_fit_max_points": 0,  # kernel fitted on every finished trial
    "train.deterministic": False,
    "environment": None,  # the default label, made at run time
    # [objective]: before it, every study ran the built-in CNN objective
    "objective.function": None,
    "objective.metric": "accuracy",
    "objective.direction": "maximize",
    "objective.steps": None,
}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "search_space" and k != "fixed":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


#: Config keys that change only the analysis or where this machine finds things, not what a
#: study's trials do: a resume with other values goes on (and the stored config takes them).
#: How energy is *measured* (meter.kind, cpu_tdp_w, cpu_cores, gpus) still must match; a
#: different machine or meter under `auto` is recorded per run (runs.py) and reported.
ANALYSIS_ONLY = frozenset({
    "target_accuracy",  # what the analysis calls reaching the target
    "objective.target",  # the same, in the metric's units
    "objective.folder",  # where this machine finds the objective function's module
    "meter.idle_s", "meter.region", "meter.carbon_intensity_g_per_kwh", "meter.pue",
    "meter.carbon_intensity_csv",
    "meter.powercap_root",  # where this machine's RAPL counters are
    "data.root",  # where this machine keeps the dataset files
    "data.mirror",  # where they are downloaded from (checksums and formats are checked)
})


#: Descriptive keys a resume may leave out (None): the stored value is kept. Given, they
#: must match.
KEPT_WHEN_UNSET = frozenset({"environment"})


def resumed(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`current` (a config's to_dict()) with the stored value of each KEPT_WHEN_UNSET key
    that it leaves unset: the config a resumed study goes on with."""
    return {**current, **{k: stored[k] for k in KEPT_WHEN_UNSET
                          if current.get(k) is None and stored.get(k) is not None}}


#: What to say beside a difference in a key that is not set in the TOML.
HINTS = {"environment": "--environment: leave it out to keep the stored label; a study has "
                        "one label, so give a new one to a new study (another --storage or "
                        "config name)"}


def _relevant(key: str, strategy: str) -> bool:
    """Keys that change what a study of `strategy` does: not the budget (a resumed study
    may be given more trials), not the keys that change only the analysis, and only its
    own strategy's options."""
    if key.startswith("budget.") or key in ANALYSIS_ONLY:
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
            + (f" ({HINTS[k]})" if k in HINTS else "")
            for k in sorted(set(old) | set(new))
            if _relevant(k, strategy) and old.get(k) != new.get(k)]


def analysis_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: stored X, now Y' for the `ANALYSIS_ONLY` keys that differ."""
    old, new = _flat(stored), _flat(current)
    return [f"{k}: stored {old.get(k, '(absent)')!r}, now {new.get(k, '(absent)')!r}"
            for k in sorted(ANALYSIS_ONLY) if old.get(k) != new.get(k)]
