"""figures/suite.json and figures/suite.md: each problem's comparison, and one table.

    suite.json = {"problems": {name: <that problem's compare.json> + "config_file"}}

Each problem's comparison is written by `write_compare` (run/compare.py, the one
definition of compare.json) into `OUT/suite/` (compare.* for the default problem,
compare-NAME.* for the others) over the suite's studies of that problem found in the store,
and read back from the file it wrote: suite.json holds the same numbers as those files.

suite.md's table: per problem and strategy, the ratio of its expected energy to target
(ERT) to bayes's, with the 95% CI and the family-wise CI of compare.json's `"ert_ratios"`,
successes / runs (`"ert"`), and the problem's one-third verdict (`"verdict"`) on the row of
the strategy that decides it. A compare.json without `"ert_ratios"` (written before ERT)
gives the median ratios of its `"ratios"` instead, and the table says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tuning_energy.config.suite import Problem, Suite
from tuning_energy.report.compare_md import trials_per_study
from tuning_energy.run.suite import problem_studies
from tuning_energy.store.url import redact

REFERENCE = "bayes"


def _stored_studies(storage_url: str) -> set[str]:
    import optuna

    from tuning_energy.store.storage import open_storage
    from tuning_energy.store.url import StoreURL

    if not StoreURL.parse(storage_url).exists():
        return set()
    storage = open_storage(storage_url, create=False)
    return {s.study_name for s in optuna.get_all_study_summaries(storage, False)}


def problem_result(problem: Problem, storage_url: str, out_dir: Path,
                   stored: set[str]) -> dict[str, Any]:
    """The problem's compare.json (written under out_dir) plus "config_file"; without any
    of its studies in the store: {"config_file", "missing": why}."""
    from tuning_energy.errors import ConfigError
    from tuning_energy.report.compare_report import write_compare

    names = [n for n in problem_studies(problem) if n in stored]
    try:
        paths = write_compare(storage_url, problem.config, out_dir, studies=names) \
            if names else None
    except ConfigError:  # studies created, no trial finished yet
        paths = None
    if paths is None:
        return {"config_file": problem.config_file,
                "missing": f"no finished trials of its studies in {redact(str(storage_url))}"}
    result = json.loads(paths[0].read_text())
    result["config_file"] = problem.config_file
    result["compare_md"] = paths[1].name
    return result


def suite_result(suite: Suite, storage_url: str, out_dir: str | Path) -> dict[str, Any]:
    """suite.json's content; each problem's compare files go to `out_dir/suite/`."""
    stored = _stored_studies(storage_url)
    folder = Path(out_dir) / "suite"
    return {"suite_file": suite.path,
            "problems": {p.name: problem_result(p, storage_url, folder, stored)
                         for p in suite.problems}}


def _num(v: float | None, fmt: str = "{:.3g}", none: str = "unbounded") -> str:
    return none if v is None or (isinstance(v, float) and math.isinf(v)) else fmt.format(v)


def _ci(pair: list | None) -> str:
    if not pair or pair[0] is None and pair[1] is None:
        return "-"
    return f"{_num(pair[0], none='0')} to {_num(pair[1])}"


def _rows(name: str, result: dict[str, Any]) -> list[str]:
    """The table rows of one problem (module doc)."""
    if "missing" in result:
        return [f"| {name} | - | no finished trial yet | - | - | - | - |"]
    ert = result.get("ert_ratios")
    ratios = ert if ert is not None else result.get("ratios", {})
    verdict = result.get("verdict") or {}
    successes = result.get("ert") or {}
    rows = []
    for key, r in sorted(ratios.items()):
        strategy, _, ref = key.rpartition("/")
        if ref != REFERENCE:
            continue
        value = r.get("ratio") if ert is not None else r.get("median")
        s = successes.get(strategy)
        share = result["strategies"].get(strategy, {}).get("reached_share", math.nan)
        reached = f"{s['successes']}/{s['runs']}" if s else f"{share:.0%}"
        # null: S never reached the target (ERT; median: its median seed did not), or
        # neither did (undefined)
        missed = s["successes"] == 0 if s else not share > 0.5
        word = ""
        if verdict.get("strategy") == strategy:
            word = f"**{verdict.get('word')}** (family-wise CI {_ci(verdict.get('ci_familywise'))})"
        shown = _num(value, none="not reached" if missed else "-")
        rows.append(f"| {name} | {strategy} | {shown} | "
                    f"{_ci(r.get('ci95'))} | {_ci(r.get('ci_familywise'))} | {reached} | "
                    f"{word} |")
    if not rows:
        rows.append(f"| {name} | - | no strategy compared with {REFERENCE} | - | - | - | - |")
    return rows


def render_suite_md(result: dict[str, Any]) -> str:
    problems = result["problems"]
    old = [n for n, r in problems.items() if "missing" not in r and "ert_ratios" not in r]
    lines = [
        "# The suite: which strategy reaches the target for the fewest expected joules?", "",
        f"Problems of `{result['suite_file']}`; each row compares one strategy with "
        f"{REFERENCE} on one problem. The ratio is the strategy's expected energy to target "
        f"(ERT: the energy to target of the seeds that reached it plus the whole search "
        f"energy of those that did not, divided by the seeds that reached) over {REFERENCE}'s; "
        f"below 1: it needs less energy than {REFERENCE}. The 95% CI resamples the seeds of "
        f"both strategies; the family-wise CI corrects for picking the best of the "
        f"strategies compared, and the verdict (on the row of the strategy that decides it) "
        f"asks whether some strategy needs at most one third of {REFERENCE}'s energy. "
        f"Reached: seeds that reached the target / seeds.", "",
    ]
    if old:
        lines += [f"Written before ERT: for {', '.join(old)} the ratio is that of the median "
                  f"energies to target (compare.json's `ratios`), reached the share of seeds "
                  f"that reached the target, and there is no verdict.", ""]
    lines += ["| problem | strategy | ratio to bayes | 95% CI | family-wise CI | reached | "
              "verdict |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in problems.items():
        lines += _rows(name, r)
    lines += ["", "## Problems", ""]
    for name, r in problems.items():
        if "missing" in r:
            lines.append(f"- **{name}** (`{r['config_file']}`): {r['missing']}.")
            continue
        lines.append(f"- **{name}** (`{r['config_file']}`): seeds {r['seeds']}, "
                     f"{trials_per_study(r)} per study; {r['target_text']}; energy "
                     f"method `{r['energy_method']}`"
                     + (f" ({r['energy_estimate']})" if r.get("energy_estimate") else "")
                     + f". Details: [suite/{r['compare_md']}](suite/{r['compare_md']}).")
    return "\n".join(lines) + "\n"


def write_suite(suite: Suite, storage_url: str, out_dir: str | Path = "figures") -> list[Path]:
    """suite.json and suite.md in `out_dir` (and each problem's compare files in
    `out_dir/suite/`), from the store; no training."""
    result = suite_result(suite, storage_url, out_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "suite.json", out / "suite.md"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(render_suite_md(result))
    return paths
