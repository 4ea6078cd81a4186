"""The command line: `tuning-energy study | show | ...`. Only the CLI writes files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def _study_config(args: argparse.Namespace):
    """--config, with the environment's meter settings and data root, --trials and
    --environment applied."""
    import dataclasses

    from tuning_energy.config import load_config
    from tuning_energy.errors import ConfigError

    config = _with_env_data_root(_with_env_meter(load_config(args.config)))
    if args.environment is not None:
        from tuning_energy.energy.hardware import check_label

        config = config.with_overrides(environment=check_label(args.environment))
    if args.trials is not None:
        if args.trials <= 0:
            raise ConfigError(f"--trials = {args.trials}: must be > 0")
        config = config.with_overrides(
            budget=dataclasses.replace(config.budget, n_trials=args.trials))
    return config


def cmd_study(args: argparse.Namespace) -> int:
    import dataclasses

    from tuning_energy.search.strategies import check_strategy

    check_strategy(args.strategy)
    config = _study_config(args)
    if args.pruner is not None:
        config = config.with_overrides(
            pruning=dataclasses.replace(config.pruning, pruner=args.pruner))
    summary = _run(config, args)
    print("\n".join(summary.lines()))
    failed_workers = [c for c in summary.extra.get("exit_codes", []) if c != 0]
    if summary.interrupted:
        print(f"\ninterrupted: the trial in flight is recorded as FAIL. Resume with the same "
              f"command:\n  tuning-energy study --config {args.config} --strategy "
              f"{args.strategy} --seed {args.seed} --storage {args.storage.text}"
              + (f" --environment {args.environment!r}" if args.environment else ""))
        return 130
    if failed_workers and not summary.interrupted:
        print(f"\n{len(failed_workers)} worker(s) exited with an error (see above); rerun the "
              f"same command to finish the budget", file=sys.stderr)
        return 1
    return 0


def _run(config, args: argparse.Namespace):
    """One process (SQLite), or workers sharing a journal / PostgreSQL store (workers.py)."""
    from tuning_energy.run.pool import run_workers
    from tuning_energy.run.runner import run_study
    from tuning_energy.run.workers import WorkerOptions, check_workers

    check_workers(args.storage, args.workers)
    if args.workers == 1:  # run_study gets the store its trial source (workers.trial_source)
        partial = {} if args.partial_energy_s is None else \
            {"partial_energy_s": args.partial_energy_s}
        return run_study(config, args.strategy, args.seed, args.storage,
                         progress=not args.no_progress, cross_check=args.cross_check, **partial)
    return run_workers(config, args.strategy, args.seed, args.storage,
                       WorkerOptions(n_workers=args.workers), progress=not args.no_progress,
                       cross_check=args.cross_check)


def cmd_show(args: argparse.Namespace) -> int:
    """One line per study: its charged energy (accounting.py, as compare and every report
    count it) and its method, marked when any part is an estimate; then the label."""
    import optuna
    import pandas as pd

    from tuning_energy.analysis.table import method_label, study_table
    from tuning_energy.analysis.to_target import charged_what
    from tuning_energy.energy.accounting import CHARGED_PARTS, charged_total_j
    from tuning_energy.run.summary import FINISHED, best_trial, metric_of, value
    from tuning_energy.store.storage import open_storage

    storage = open_storage(args.storage, create=False)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        print(f"no studies in {args.storage}")
        return 0
    header = f"{'study':32} {'strategy':9} {'seed':>4} {'trials':>7} {'failed':>6} " \
             f"{'best':>9} {'charged J':>11}  method"
    print(header)
    tables = []
    metrics: set[str] = set()
    for s in summaries:
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        table = study_table(study, trials)  # counted trials: complete, pruned, failed
        tables.append(table)
        done = [t for t in trials if t.state in FINISHED]
        metric, direction = metric_of(study)
        top = best_trial(trials, direction)
        best = f"{value(top):.4f}" if top is not None else "-"
        metrics.add(metric if direction == "maximize" else f"{metric} (minimized)")
        parts = [c for c in CHARGED_PARTS if c in table.columns]
        total = "-" if table["energy_j"].isna().all() else \
            f"{charged_total_j(table[parts].to_dict('records')):,.1f}"
        a = s.user_attrs
        lab = method_label(table)
        method = ", ".join(lab.methods) or a.get("energy_method", "?")
        if lab.any_estimate:
            method += " (ESTIMATE)" if lab.fully_estimated else " (partly ESTIMATE)"
        failed = sum(t.state == optuna.trial.TrialState.FAIL for t in trials)
        print(f"{s.study_name:32} {a.get('strategy', '?'):9} {a.get('seed', '?'):>4} "
              f"{len(done):>7} {failed:>6} {best:>9} {total:>11}  {method}")
    every = pd.concat([t for t in tables if not t.empty]) if any(not t.empty for t in tables) \
        else tables[0]
    print(f"trials: complete and pruned; failed: trials that raised (their energy is "
          f"charged too); best: the best {', '.join(sorted(metrics))} of the study's complete "
          f"trials; "
          f"charged J: the {charged_what(every)} energy of every finished trial "
          f"(complete, pruned and failed)")
    lab = method_label(every)
    if lab.any_estimate:
        print(f"energy method {', '.join(lab.methods)}: {lab.text()}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete one study and its trials: asks on a terminal; --yes without asking."""
    from tuning_energy.errors import StorageError
    from tuning_energy.store.delete import delete_study, describe

    what = describe(args.study, args.storage)
    if not args.yes:
        if not sys.stdin.isatty():
            raise StorageError(f"{what}: not deleted; stdin is not a terminal to ask on: add "
                               f"--yes to delete it without asking")
        answer = input(f"{what}\ndelete it and all its trials? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    delete_study(args.study, args.storage)
    print(f"deleted {what}")
    return 0


def _with_env_meter(config):
    """TUNING_ENERGY_POWERCAP_ROOT, read here once (the edge), into the meter config."""
    import dataclasses
    import os

    from tuning_energy.energy import config_from_env

    return dataclasses.replace(config, meter=config_from_env(config.meter, os.environ))


def _with_env_data_root(config):
    """data.root unset: the per-user cache ($XDG_CACHE_HOME or ~/.cache, read here once)."""
    import dataclasses
    import os

    from tuning_energy.cnn.data import default_root

    if config.data.root is not None or config.data.dataset in ("digits", "mnist1d"):  # no files
        return config
    return dataclasses.replace(config, data=dataclasses.replace(
        config.data, root=str(default_root(os.environ))))


def cmd_meters(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from tuning_energy.config import MeterConfig, load_config
    from tuning_energy.energy import config_from_env
    from tuning_energy.energy.meters_report import run_report

    meter = load_config(args.config).meter if args.config else MeterConfig()
    meter = config_from_env(meter, os.environ)  # TUNING_ENERGY_POWERCAP_ROOT, read once here
    if args.powercap_root:
        meter = dataclasses.replace(meter, powercap_root=args.powercap_root)
    if args.gpus is not None:
        meter = dataclasses.replace(meter, gpus=tuple(args.gpus))
    run_report(meter, busy_s=args.busy_s, idle_s=args.idle_s)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from tuning_energy.report.dashboard import serve

    serve(args.storage, port=args.port, artifact_dir=args.artifact_dir)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Every strategy x seed of one config into one store (resumes what is there)."""
    from tuning_energy.run.compare import run_comparison

    config = _study_config(args)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()] \
        if args.strategies else None
    from tuning_energy.run.compare import studies_lines

    summaries = run_comparison(config, args.seeds, strategies, args.storage,
                               progress=not args.no_progress, workers=args.workers)
    print()
    print("\n".join(studies_lines(args.storage, [s.study_name for s in summaries])))
    if summaries and summaries[-1].interrupted:
        print("interrupted: the trial in flight is recorded as FAIL; rerun the same command "
              "to resume")
        return 130
    from tuning_energy.report.compare_report import write_compare

    if len({s.study_name.rsplit("-s", 1)[0] for s in summaries}) < 2:
        print("one strategy: no comparison to write (figures and report: tuning-energy figures)")
        return 0
    paths = write_compare(args.storage, config, args.out, target=args.target,
                          target_fraction=args.target_fraction,
                          studies=[s.study_name for s in summaries],
                          ecdf_targets=args.ecdf_targets)
    print(f"\n{paths[1].read_text()}")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    print(f"all figures and report: tuning-energy figures --storage {args.storage.text}")
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    """Every problem x strategy x seed of a suite into one store (resumes what is there),
    then figures/suite.md and suite.json (run/suite.py, report/suite_report.py)."""
    import dataclasses
    import os

    from tuning_energy.config.suite import load_suite
    from tuning_energy.report.suite_report import write_suite
    from tuning_energy.run.suite import default_suite_storage, run_suite

    suite = load_suite(args.suite)
    suite = suite.select([p.strip() for p in args.problems.split(",") if p.strip()]
                         if args.problems else None)
    suite = dataclasses.replace(suite, problems=tuple(
        dataclasses.replace(p, config=_with_env_data_root(_with_env_meter(p.config)))
        for p in suite.problems))
    storage = args.storage or default_suite_storage(os.environ)
    print(f"suite {args.suite}: store {storage}")
    if not args.no_run:
        summaries = run_suite(suite, storage, progress=not args.no_progress,
                              workers=args.workers)
        if summaries and summaries[-1].interrupted:
            print(f"interrupted: the trial in flight is recorded as FAIL; rerun the same "
                  f"command to resume (--storage {storage})")
            return 130
    paths = write_suite(suite, storage, args.out)
    print(f"\n{paths[1].read_text()}")
    print(f"wrote {', '.join(str(p) for p in paths)} (each problem's comparison in "
          f"{args.out}/suite/)")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    """The bill before the run: a short calibration, then the projected energy, CO2, time."""
    import json

    from tuning_energy.run.estimate import estimate
    from tuning_energy.search.strategies import STRATEGIES, check_strategy

    config = _study_config(args)
    strategies = [s.strip() for s in args.strategy.split(",") if s.strip()] if args.strategy \
        else (list(STRATEGIES) if args.seeds else ["bayes"])
    for s in strategies:
        check_strategy(s)
    result = estimate(config, strategies, args.seeds or 1, args.storage)
    print(json.dumps(result.as_json(), indent=1) if args.json else "\n".join(result.lines()))
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """Figures (PNG + PDF) and report.md from the store; no training."""
    from tuning_energy.report.report import write_figures

    stores = args.storage or [DEFAULT_STORAGE]
    dirs = list(dict.fromkeys(default_figures_dir(s) for s in stores))  # figures/a+b
    out = args.out or (dirs[0] if len(dirs) == 1 else
                       "figures/" + "+".join(d.removeprefix("figures/") for d in dirs))
    written = write_figures(stores if len(stores) > 1 else stores[0], out, target=args.target,
                            target_fraction=args.target_fraction, studies=args.studies,
                            ecdf_targets=args.ecdf_targets)
    print(f"wrote {len(written)} files to {out}/ (report: {out}/report.md)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """The trials table (one row per finished trial) as CSV or Parquet."""
    from tuning_energy.report.export import export_trials

    trials = export_trials(args.storage, args.out, args.format, args.studies)
    print(f"wrote {len(trials)} trials of {trials['study'].nunique()} studies to {args.out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """A store's health (store/check.py), read without changing anything: 1 on a problem."""
    from tuning_energy.store.check import check_store

    health = check_store(args.storage)
    print("\n".join(health.lines))
    return 1 if health.problems else 0


def default_figures_dir(storage_url: StoreURL | str) -> str:
    """figures/<store name> (figures/energy for studies/energy.db): one folder per store, so
    that figures of one store never overwrite another's report.md (figures/report.md is
    `make paper`'s)."""
    return f"figures/{StoreURL.parse(storage_url).name}"


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
