"""What each `tuning-energy` command does (cli.py parses the command line and calls one).
Only these commands write files."""

from __future__ import annotations

import argparse
import sys

from tuning_energy.store.url import DEFAULT_STORAGE, StoreURL  # noqa: F401


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
    from tuning_energy.run.summary import FINISHED, best_trial, co2_total_g, metric_of, value
    from tuning_energy.store.storage import open_storage

    storage = open_storage(args.storage, create=False)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        print(f"no studies in {args.storage}")
        return 0
    header = f"{'study':32} {'strategy':9} {'seed':>4} {'trials':>7} {'failed':>6} " \
             f"{'best':>9} {'charged J':>11} {'CO2 g':>9}  method"
    print(header)
    tables = []
    metrics: set[str] = set()
    sources: set[str] = set()
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
        co2 = None if total == "-" else co2_total_g(study, [t.user_attrs for t in trials])
        if co2 is not None:
            sources.add(str(a.get("carbon_source")))
        co2_text = "-" if co2 is None else f"{co2:.3g}"
        print(f"{s.study_name:32} {a.get('strategy', '?'):9} {a.get('seed', '?'):>4} "
              f"{len(done):>7} {failed:>6} {best:>9} {total:>11} {co2_text:>9}  {method}")
    every = pd.concat([t for t in tables if not t.empty]) if any(not t.empty for t in tables) \
        else tables[0]
    print(f"trials: complete and pruned; failed: trials that raised (their energy is "
          f"charged too); best: the best {', '.join(sorted(metrics))} of the study's complete "
          f"trials; "
          f"charged J: the {charged_what(every)} energy of every finished trial "
          f"(complete, pruned and failed)")
    if sources:
        print(f"CO2 g: of the charged energy, at the study's carbon intensity: "
              f"{'; '.join(sorted(sources))}")
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


