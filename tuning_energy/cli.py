"""The command line: `tuning-energy study | show | ...`. Only the CLI writes files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tuning_energy.commands import (
    cmd_check,
    cmd_compare,
    cmd_dashboard,
    cmd_delete,
    cmd_estimate,
    cmd_export,
    cmd_figures,
    cmd_meters,
    cmd_show,
    cmd_study,
    cmd_suite,
)
from tuning_energy.errors import TuningEnergyError
from tuning_energy.store.url import DEFAULT_STORAGE, StoreURL


def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"Optuna storage URL (default {DEFAULT_STORAGE})")


def _add_environment(p: argparse.ArgumentParser) -> None:
    p.add_argument("--environment", default=None,
                   help="label of where this runs, stored as the study attr `environment` "
                        "(default: device, CPU/GPU model and threads, e.g. 'cpu: AMD EPYC, "
                        "1 thread'); `figures --storage A --storage B` puts environments "
                        "side by side")


def _add_target(p: argparse.ArgumentParser) -> None:
    """--target / --target-fraction: overrides of the config's target_accuracy (target.py)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target", type=float, default=None,
                   help="target accuracy for energy to target (absolute, e.g. 0.98); "
                        "default: the config's target_accuracy (0.99 x the best accuracy of "
                        "the comparison when the config has none)")
    g.add_argument("--target-fraction", type=float, default=None,
                   help="target = this fraction of the best accuracy of any trial in the "
                        "comparison, instead of the config's target_accuracy")
    p.add_argument("--ecdf-targets", type=int, default=5,
                   help="targets of the runtime ECDF figure, from an easy one up to the "
                        "target (default 5)")


def build_parser() -> argparse.ArgumentParser:
    from tuning_energy.config import PRUNERS
    from tuning_energy.search.strategies import STRATEGIES

    parser = argparse.ArgumentParser(
        prog="tuning-energy",
        description="Energy-metered hyperparameter search: grid, random and Bayesian "
                    "studies stored in Optuna.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("study", help="create or resume a study and run its trials")
    p.add_argument("--config", default="studies/default.toml", help="study TOML file")
    p.add_argument("--strategy", default="bayes",
                   help=f"search strategy: {', '.join(STRATEGIES)} (default bayes)")
    p.add_argument("--seed", type=int, default=0, help="study seed (default 0)")
    p.add_argument("--trials", type=int, default=None, help="override the config's n_trials")
    p.add_argument("--pruner", default=None, choices=PRUNERS,
                   help="override [pruning] pruner: stop unpromising trials early")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--cross-check", choices=["codecarbon"], default=None,
                   help="also record CodeCarbon's energy (offline) for each trial window "
                        "as crosscheck_energy_j (needs the `crosscheck` extra)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes sharing the study (default 1); > 1 needs a "
                        "journal:/// or postgresql:// --storage")
    p.add_argument("--partial-energy-s", type=float, default=None,
                   help="seconds between writes of a training trial's energy so far "
                        "(energy_partial), kept by a trial whose run is killed (default 10; "
                        "0: never); workers write it with each heartbeat")
    _add_environment(p)
    _add_storage(p)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("meters", help="list the energy meters, why any is missing, and "
                                      "compare them on a busy and an idle window")
    p.add_argument("--config", default=None, help="study TOML whose [meter] to use")
    p.add_argument("--powercap-root", default=None,
                   help="RAPL tree (default /sys/class/powercap or $TUNING_ENERGY_POWERCAP_ROOT)")
    p.add_argument("--gpus", type=int, nargs="*", default=None, help="NVML GPU indices")
    p.add_argument("--busy-s", type=float, default=3.0, help="seconds of matrix multiplies")
    p.add_argument("--idle-s", type=float, default=2.0, help="seconds of idle")
    p.set_defaults(func=cmd_meters)

    p = sub.add_parser("show", help="one line per study in the store")
    _add_storage(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("check", help="a store's health: opens, a torn journal line, RUNNING "
                                     "trials without a live worker, studies and trial counts "
                                     "(changes nothing; exit 1 on a problem)")
    _add_storage(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("delete", help="delete one study and all its trials from the store "
                                      "(asks first)")
    p.add_argument("--study", required=True, help="the study's name (see `tuning-energy show`)")
    p.add_argument("--yes", action="store_true",
                   help="delete without asking (needed when stdin is not a terminal)")
    _add_storage(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("dashboard", help="optuna-dashboard on the store, on 127.0.0.1 only")
    _add_storage(p)
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    p.add_argument("--artifact-dir", default=None,
                   help="attached figures (default: artifacts/ beside the store file)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("compare", help="run every strategy for every seed into one store")
    p.add_argument("--config", required=True, help="study TOML file")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--strategies", default=None,
                   help=f"comma-separated (default all: {','.join(STRATEGIES)}); "
                        f"STRATEGY+PRUNER (tpe+asha) runs that strategy with a pruner as a "
                        f"variant of its own")
    p.add_argument("--trials", type=int, default=None, help="override the config's n_trials")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes per study (default 1); > 1 needs a journal:/// "
                        "or postgresql:// --storage, as `study --workers N`")
    p.add_argument("--out", default="figures",
                   help="where compare.md, compare.json, compare.png go (default figures)")
    _add_target(p)
    _add_environment(p)
    _add_storage(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("suite", help="run every problem x strategy x seed of a suite, then "
                                     "figures/suite.md and suite.json")
    p.add_argument("--suite", default="studies/suite.toml",
                   help="suite TOML: its problems, seeds and strategies (default "
                        "studies/suite.toml)")
    p.add_argument("--problems", default=None,
                   help="comma-separated: only these problems of the suite (default all)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (default journal:///$XDG_DATA_HOME/tuning-energy/"
                        "suite.log, else ~/.local/share/tuning-energy/suite.log: outside "
                        "the work tree)")
    p.add_argument("--no-run", action="store_true",
                   help="run nothing: write suite.md / suite.json from what the store holds")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes per study (default 1), as `compare --workers N`")
    p.add_argument("--out", default="figures",
                   help="where suite.md and suite.json go (each problem's comparison in "
                        "OUT/suite/; default figures)")
    p.set_defaults(func=cmd_suite)

    p = sub.add_parser("estimate", help="what a study or comparison will cost (energy, CO2, "
                                        "wall time) before it runs, from a short calibration")
    p.add_argument("--config", default="studies/default.toml", help="study TOML file")
    p.add_argument("--strategy", default=None,
                   help="strategy, or several comma-separated (default bayes; with --seeds: "
                        "every strategy compare runs)")
    p.add_argument("--seeds", type=int, default=None,
                   help="a comparison of seeds 0..N-1 x the strategies")
    p.add_argument("--trials", type=int, default=None, help="override the config's n_trials")
    p.add_argument("--json", action="store_true", help="the estimate as JSON")
    p.set_defaults(environment=None)
    p.add_argument("--storage", default=None,
                   help="a store the study resumes: its finished trials are not counted again")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("figures", help="figures and report.md from the store (no training)")
    p.add_argument("--out", default=None,
                   help="output folder (default figures/<store name>, e.g. figures/energy "
                        "for sqlite:///studies/energy.db)")
    _add_target(p)
    p.add_argument("--studies", default=None, help="only studies whose name starts with this")
    p.add_argument("--storage", action="append", default=None,
                   help=f"Optuna storage URL (default {DEFAULT_STORAGE}); repeat it to read "
                        f"several stores (e.g. one per environment) into one report, which "
                        f"then has an Environments section")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("export", help="the trials table (one row per finished trial) as CSV "
                                      "or Parquet")
    p.add_argument("--out", required=True, help="file to write (folders are created)")
    p.add_argument("--format", default=None,
                   help="csv or parquet (default: from --out's suffix)")
    p.add_argument("--studies", default=None, help="only studies whose name starts with this")
    _add_storage(p)
    p.set_defaults(func=cmd_export)
    return parser


def _parse_storage(args: argparse.Namespace) -> None:
    """--storage parsed once, here at the edge, into a StoreURL (store/url.py)."""
    stores = getattr(args, "storage", None)
    if isinstance(stores, list):
        args.storage = [StoreURL.parse(s) for s in stores]
    elif stores is not None:
        args.storage = StoreURL.parse(stores)


def main(argv: Sequence[str] | None = None) -> int:
    from tuning_energy.run.signals import EXIT_SIGINT, exit_code, sigterm_as_interrupt
    from tuning_energy.store.faults import storage_fault

    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM (Slurm, docker stop, systemd) takes Ctrl-C's path: the trial in flight is
    # recorded FAIL, the summary printed, exit 143 (run/signals.py).
    with sigterm_as_interrupt() as term:
        try:
            _parse_storage(args)
            code = args.func(args)
        except KeyboardInterrupt as exc:  # outside a trial's work
            print(f"tuning-energy: interrupted ({getattr(exc, 'name', 'Ctrl-C')}) outside a "
                  f"trial's work (a trial it left RUNNING is marked FAIL by the next run); "
                  f"rerun the same command to resume", file=sys.stderr)
            return exit_code(exc)
        except Exception as exc:
            # A full, read-only or locked store, wherever it surfaced: one line
            # (store/faults.py); any other error of ours: its message.
            fault = storage_fault(exc, getattr(args, "storage", None))
            if fault is None and not isinstance(exc, TuningEnergyError):
                raise
            print(f"tuning-energy: error: {fault or exc}", file=sys.stderr)
            return 2
    return term.exit_code if code == EXIT_SIGINT else code  # "interrupted": by which signal


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
