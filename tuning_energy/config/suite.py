"""A suite of problems: which study configs, strategies and seeds `tuning-energy suite` runs.

    # studies/suite.toml
    [problems.mnist1d]               # the problem's name: its config's `name`
    config = "mnist1d.toml"          # relative to this file's folder
    seeds = 10                       # seeds 0..9
    strategies = ["random", "bayes", "tpe", "tpe+median"]   # STRATEGY or STRATEGY+PRUNER

Read and validated once, here: every config is loaded (so a bad one stops the suite before
any trial runs), every strategy checked, and each problem's name must be its config's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuning_energy.config import StudyConfig, load_config, read_toml
from tuning_energy.config.checks import check_keys, value_of
from tuning_energy.errors import ConfigError

PROBLEM_KEYS = {"config", "seeds", "strategies"}


@dataclass(frozen=True)
class Problem:
    name: str
    config_file: str  # as suite.json records it: relative to the working folder if inside it
    config: StudyConfig
    seeds: int  # seeds 0..seeds-1
    strategies: tuple[str, ...]


@dataclass(frozen=True)
class Suite:
    path: str
    problems: tuple[Problem, ...]

    def select(self, names: list[str] | None) -> Suite:
        """The suite with only the problems `names` (all when None), in the suite's order."""
        if not names:
            return self
        known = [p.name for p in self.problems]
        for n in names:
            if n not in known:
                raise ConfigError(f"--problems: {n!r} is not a problem of {self.path}; "
                                  f"allowed values are {', '.join(known)}")
        return Suite(self.path, tuple(p for p in self.problems if p.name in names))


def _shown(path: Path) -> str:
    """The path relative to the working folder when it lies inside it (studies/x.toml)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def _problem(name: str, table: object, folder: Path, suite_path: str) -> Problem:
    from tuning_energy.search.strategies import parse_variant

    path = f"problems.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{suite_path}: {path} must be a table ([{path}])")
    check_keys(table, path, PROBLEM_KEYS)
    for key in ("config", "seeds", "strategies"):
        if key not in table:
            raise ConfigError(f"{suite_path}: {path}.{key} is missing; a problem needs "
                              f"config, seeds and strategies")
    config_file = folder / value_of(table, path, "config", (str,), None)
    config = load_config(config_file)
    if config.name != name:
        raise ConfigError(f"{suite_path}: {path}.config = {str(config_file)!r} has name = "
                          f"{config.name!r}; name the problem after its config "
                          f"([problems.{config.name}])")
    seeds = value_of(table, path, "seeds", (int,), None)
    if seeds <= 0:
        raise ConfigError(f"{suite_path}: {path}.seeds = {seeds!r}: must be > 0 (seeds 0..N-1)")
    strategies = table["strategies"]
    if not isinstance(strategies, list) or not strategies or \
            not all(isinstance(s, str) for s in strategies):
        raise ConfigError(f"{suite_path}: {path}.strategies = {strategies!r}: must be a "
                          f"non-empty list of strategy names (e.g. [\"random\", \"bayes\"])")
    for s in strategies:
        parse_variant(s)
    if len(set(strategies)) != len(strategies):
        raise ConfigError(f"{suite_path}: {path}.strategies = {strategies!r}: a strategy is "
                          f"named twice")
    return Problem(name, _shown(config_file), config, seeds, tuple(strategies))


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite TOML file (module doc)."""
    path = Path(path)
    doc = read_toml(path, "suite file", "studies/suite.toml")
    check_keys(doc, "", {"problems"})
    problems = doc.get("problems")
    if not isinstance(problems, dict) or not problems:
        raise ConfigError(f"{path}: no [problems.NAME] table; a suite lists at least one "
                          f"problem (config, seeds, strategies)")
    return Suite(str(path), tuple(_problem(name, table, path.parent, str(path))
                                  for name, table in problems.items()))
