"""optuna-dashboard on the energy store: serve it, write study notes, attach figures.

- `serve(storage_url, port)`: optuna-dashboard on 127.0.0.1 only (never another
  interface), with the store's artifact directory so attached figures open from the
  dashboard. Blocks until Ctrl-C, then closes the socket and returns.
- `write_study_note(study)`: the study note (markdown, optuna-dashboard's note) with the
  best accuracy, the search's total (charged) energy and its method (labelled when any
  part is an estimate), the CO2 of that energy (note_co2.py: as compare.md and report.md
  give it, with the carbon intensity's source), the energy to the comparison's target
  accuracy (target.py: the config's `target_accuracy`, as report.md and compare.md use it,
  and the note says so; computed by `analysis.energy_to_target` on the study's trials
  table, as every report does) and the trials whose training cost the most energy; plus a
  note on the best trial saying why it is best. The runner calls it at the end of every
  run, one with nothing left to run included (a new target_accuracy then reaches the note).
- `write_metered_notes(storage)`: the same notes for the studies a plain Optuna script
  filled through `metered()`, written when the dashboard opens the store.
- `attach_figures(study, paths, artifact_dir)`: upload PNG/PDF files as study artifacts.

The metric is `trial.values[0]` (summary.value), named and directed as the study's first
objective (`accuracy`, maximised, for the built-in CNN objective; a user's `[objective]`
metric, e.g. a minimised `val_loss`), so single- and multi-objective (metric, `energy_j`)
studies read the same; energy comes from the trial attrs.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import socket
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.energy.accounting import PROPOSING
from tuning_energy.energy.methods import label as label_methods
from tuning_energy.errors import ConfigError, StorageError, TuningEnergyError
from tuning_energy.report.note_co2 import co2_row
from tuning_energy.report.note_ert import ert_row
from tuning_energy.run.summary import metric_of
from tuning_energy.run.summary import value as _value
from tuning_energy.store.storage import open_storage
from tuning_energy.store.url import StoreURL

DEFAULT_PORT = 8080
LOOPBACK = "127.0.0.1"
ARTIFACT_DIR_NAME = "artifacts"
DEFAULT_ARTIFACT_DIR = Path("studies") / ARTIFACT_DIR_NAME
TOP_ENERGY_ROWS = 5
#: study system attr: the trial whose note currently says "best" (cleared when superseded)
BEST_NOTE_ATTR = "tuning_energy:best_note_trial_id"


class DashboardError(TuningEnergyError, RuntimeError):
    """The dashboard cannot start as asked (port taken, bad host)."""


# --------------------------------------------------------------------------- serving

class _ThreadedWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open keep-alive connection never blocks Ctrl-C


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # one line per request (the JS app polls) would drown the URL


def _joules(x: float) -> str:
    """Joules to 3 significant digits below 10 J (a tiny study's 0.218 J is not '0.2'), to
    0.1 J above: the note shows what compare.md shows."""
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.3g}"


def default_artifact_dir(storage_url: StoreURL | str) -> Path:
    """`artifacts/` beside a local store file (studies/artifacts for the default store);
    studies/artifacts for a server store."""
    path = StoreURL.parse(storage_url).path
    return path.parent / ARTIFACT_DIR_NAME if path is not None else DEFAULT_ARTIFACT_DIR


def _check_loopback(host: str) -> str:
    if host == "localhost":
        return LOOPBACK
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok or ":" in host:
        raise ConfigError(f"host = {host!r}: the dashboard binds to the loopback interface only; "
                          f"allowed: 127.0.0.1 (or another 127.x.y.z address), localhost")
    return host


def open_server(storage_url: StoreURL | str, port: int = DEFAULT_PORT, host: str = LOOPBACK,
                artifact_dir: str | Path | None = None) -> WSGIServer:
    """The optuna-dashboard WSGI server, bound (not yet serving). Port 0 picks a free port.

    Raises StorageError when the local store does not exist and DashboardError when the
    port is taken.
    """
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

    host = _check_loopback(host)
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port = {port}: must be in 1..65535 (0 picks a free port)")
    storage = open_storage(storage_url, create=False)  # says `make study` creates the store
    write_metered_notes(storage)
    art_dir = Path(artifact_dir) if artifact_dir is not None else default_artifact_dir(storage_url)
    art_dir.mkdir(parents=True, exist_ok=True)
    app = wsgi(storage, artifact_store=FileSystemArtifactStore(str(art_dir)))
    try:
        return make_server(host, port, app, server_class=_ThreadedWSGIServer,
                           handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DashboardError(
                f"--port = {port}: port {port} on {host} is already in use (another dashboard?); "
                f"pick another one, e.g. `make dashboard PORT={_suggest_port(host, port)}` or "
                f"`tuning-energy dashboard --port {_suggest_port(host, port)}`") from exc
        if exc.errno == errno.EACCES:
            raise DashboardError(f"--port = {port}: not allowed to bind port {port} "
                                 f"(ports below 1024 need root); use e.g. PORT=8080") from exc
        raise DashboardError(f"cannot bind {host}:{port}: {exc}") from exc


def _suggest_port(host: str, port: int) -> int:
    for candidate in range(port + 1, min(port + 50, 65536)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            try:
                s.bind((host, candidate))
            except OSError:
                continue
            return candidate
    return port + 1


def server_url(server: WSGIServer) -> str:
    host, port = server.socket.getsockname()[:2]
    return f"http://{host}:{port}/dashboard"


def serve(storage_url: StoreURL | str, port: int = DEFAULT_PORT, host: str = LOOPBACK,
          artifact_dir: str | Path | None = None, out=None) -> None:
    """Run optuna-dashboard on `host:port` (loopback only) until Ctrl-C."""
    out = out or sys.stdout
    server = open_server(storage_url, port, host, artifact_dir)
    try:
        print(f"optuna-dashboard for {StoreURL.parse(storage_url)}", file=out)
        print(f"  open {server_url(server)}   (Ctrl-C stops it)", file=out, flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("\ndashboard stopped", file=out, flush=True)
    finally:
        server.server_close()


# --------------------------------------------------------------------------- notes

def _energy(t: FrozenTrial) -> float | None:
    e = t.user_attrs.get("energy_j")
    return float(e) if isinstance(e, int | float) and math.isfinite(e) else None


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def best_trial(trials: Sequence[FrozenTrial], direction: str = "maximize") -> FrozenTrial | None:
    """The best metric (values[0], in its direction); ties go to the trial that used less
    energy."""
    scored = [t for t in trials if _value(t) is not None]
    if not scored:
        return None
    sign = 1.0 if direction == "maximize" else -1.0
    return max(scored, key=lambda t: (sign * _value(t), -(_energy(t) or math.inf), -t.number))


def _energy_to_target(table, target: float) -> tuple[float, int, int, int] | None:
    """analysis.energy_to_target on the study's trials table: (joules, number of the first
    trial to reach `target`, finished trials up to it, how many of them have no
    training-energy measurement: then the joules are a lower bound); None when not
    reached."""
    from tuning_energy.analysis.to_target import energy_to_target

    if table.empty:
        return None
    row = energy_to_target(table, target).iloc[0]
    if not row["reached"]:
        return None
    k = int(row["trials_to_target"])
    number = int(table.loc[table["trial"] == k - 1, "number"].iloc[0])
    return float(row["energy_to_target_j"]), number, k, int(row["n_unmeasured"])


def study_note(study: optuna.Study, target: float | None = None,
               trials: Sequence[FrozenTrial] | None = None) -> str:
    """The study note's markdown (see write_study_note)."""
    from tuning_energy.analysis.table import method_label, study_table
    from tuning_energy.analysis.target import FALLBACK_FRACTION, comparison_target
    from tuning_energy.analysis.to_target import charged_parts, charged_what

    trials = list(trials if trials is not None else study.get_trials(deepcopy=False))
    table = study_table(study, trials)
    attrs = study.user_attrs
    names = study.metric_names or ["accuracy"]
    metric, direction = metric_of(study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials)
    n_failed = sum(t.state == TrialState.FAIL for t in trials)
    energies = table["energy_j"].dropna().tolist()  # finished trials, as every total
    label = method_label(table) if table["energy_method"].notna().any() \
        else label_methods([attrs.get("energy_method")])
    method = ", ".join(label.methods) or "unknown"
    estimate = f", {label.text()}" if label.any_estimate else ""
    best = best_trial(trials, direction)

    lines = [f"## Energy summary: {study.study_name}", ""]
    head = [f"strategy **{attrs.get('strategy', '?')}**", f"seed {attrs.get('seed', '?')}",
            "objectives " + ", ".join(
                n + ("" if d == optuna.study.StudyDirection.MAXIMIZE else " (minimized)")
                for n, d in zip(names, study.directions, strict=False))]
    lines += [", ".join(head) + ".", "", "| | |", "|---|---|"]
    lines.append(f"| trials | {len(complete)} complete, {n_pruned} pruned, {n_failed} failed, "
                 f"{len(trials)} in all |")
    if best is not None:
        lines.append(f"| best {metric} | **{_value(best):.4f}** (trial {best.number}, "
                     f"{_num(_energy(best), ',.1f')} J of training) |")
    else:
        lines.append(f"| best {metric} | no complete trial yet |")
    what = charged_what(table) if not table.empty else "training"
    if energies:
        total = float(table["charged_known_j"].sum())
        missing = len(table) - len(energies)
        extra = (f"; {missing} trial(s) without a training-energy measurement: a lower bound"
                 if missing else "")
        low = "≥ " if missing else ""
        lines.append(f"| total energy of the search | **{low}{_joules(total)} J** "
                     f"({low}{total / 3600:.4f} "
                     f"Wh): {what} energy of all trials incl. failed; method "
                     f"`{method}`{estimate}{extra} |")
        lines += co2_row(table, attrs.get("carbon_source"), bool(missing), label)
        lines.append(f"| training energy per trial | median "
                     f"{_joules(statistics.median(energies))} J, max {_joules(max(energies))} J, "
                     f"{_joules(sum(energies))} J in all |")
    else:
        lines.append("| total energy of the search | not measured |")
    goal = comparison_target(table, target, fallback=False) if not table.empty else None
    if table.empty:
        lines.append("| energy to target | no finished trial yet |")
    elif goal is None:
        key = "target_accuracy" if metric == "accuracy" else "[objective] target"
        near = f"{FALLBACK_FRACTION:g} x the best {metric} of the whole comparison" \
            if direction == "maximize" else \
            f"the best {metric} of the whole comparison / {FALLBACK_FRACTION:g}"
        lines.append(f"| energy to target | the config has no `{key}`: report.md and "
                     f"compare.md use {near}, which one study does not know |")
    else:
        reached = _energy_to_target(table, goal.accuracy)
        if reached is None:
            best_acc = f"best {_value(best):.4f}" if best is not None else "no complete trial"
            lines.append(f"| energy to target {goal.accuracy:.4f} | not reached ({best_acc}); "
                         f"{goal.text()} |")
        else:
            e, n, k, n_unmeasured = reached
            only = "" if PROPOSING in charged_parts(table) else \
                " only: the trials carry no proposing energy"
            low = "≥ " if n_unmeasured else ""
            bound = (f"; {n_unmeasured} of them without a training-energy measurement, so a "
                     f"lower bound" if n_unmeasured else "")
            lines.append(f"| energy to target {goal.accuracy:.4f} | **{low}{_joules(e)} J**: all "
                         f"trials up to trial {n}, the first to reach it ({k} finished trials"
                         f"{bound}; {what} energy{only}); {goal.text()} |")
    if goal is not None and (row := ert_row(study, goal.accuracy)) is not None:
        lines.append(row)
    if len(study.directions) > 1:
        front = [t.number for t in study.best_trials]
        lines.append(f"| Pareto front | {len(front)} trial(s): {', '.join(map(str, front))} |")

    by_energy = sorted((t for t in trials if _energy(t) is not None), key=_energy, reverse=True)
    if by_energy:
        lines += ["", f"### Trials that cost the most energy (top {min(TOP_ENERGY_ROWS, len(by_energy))})",
                  "", f"| trial | state | {metric} | training energy J | duration s "
                  "| avg power W |",
                  "|---:|---|---:|---:|---:|---:|"]
        for t in by_energy[:TOP_ENERGY_ROWS]:
            u = t.user_attrs
            lines.append(f"| {t.number} | {t.state.name.lower()} | {_num(_value(t), '.4f')} | "
                         f"{_energy(t):,.1f} | {_num(u.get('duration_s'), '.2f')} | "
                         f"{_num(u.get('avg_power_w'), '.1f')} |")
    lines += ["", f"_Written by tuning-energy at the end of each run of this study (updated on "
                  f"resume). Energy method `{method}`"
                  + (f": {label.text()}" if label.any_estimate else "") + "._"]
    return "\n".join(lines) + "\n"


def best_trial_note(best: FrozenTrial, trials: Sequence[FrozenTrial], metric: str = "accuracy",
                    direction: str = "maximize") -> str:
    """Why `best` is the best trial: its metric and energy against the medians of the
    complete trials (a pruned trial's energy is that of a part of a training: beside a
    full one it would make any full trial look expensive)."""
    accs = [a for a in (_value(t) for t in trials) if a is not None]
    energies = [e for t in trials if _value(t) is not None and (e := _energy(t)) is not None]
    acc, e = _value(best), _energy(best)
    med_acc = statistics.median(accs)
    sign = 1.0 if direction == "maximize" else -1.0
    what = "validation accuracy" if metric == "accuracy" else metric
    lines = ["## Best trial of this study", "",
             f"{'Highest' if sign > 0 else 'Lowest'} {what} of {len(accs)} complete trial(s): "
             f"**{acc:.4f}**, {acc - med_acc:+.4f} {'over' if sign > 0 else 'against'} the "
             f"median trial ({med_acc:.4f})."]
    if e is not None and energies:
        med_e = statistics.median(energies)
        ratio = f"{e / med_e:.2f}x the median complete trial's {_joules(med_e)} J" \
            if med_e > 0 else f"median complete trial {_joules(med_e)} J"
        rank = sorted(energies).index(e) + 1
        lines.append(f"Its training used **{_joules(e)} J** ({ratio}; rank {rank} of "
                     f"{len(energies)} complete trials from cheapest), method `{best.user_attrs.get('energy_method', '?')}`.")
        close = [t for t in trials if _value(t) is not None and _energy(t) is not None
                 and sign * (_value(t) - acc) >= -0.01 and t.number != best.number]
        cheaper = min(close, key=_energy) if close else None
        if cheaper is not None and _energy(cheaper) < e:
            lines.append(f"Trial {cheaper.number} came within 0.01 ({_value(cheaper):.4f}) "
                         f"for {_joules(_energy(cheaper))} J.")
    else:
        lines.append("Its energy was not measured.")
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in best.params.items())
    lines += ["", f"Parameters: {params}" if params else "No searched parameters."]
    return "\n".join(lines) + "\n"


def _save_trial_note(study: optuna.Study, trial_id: int, body: str) -> None:
    # optuna_dashboard.save_note takes a live optuna.Trial; building one for a finished
    # trial would call the sampler's before_trial. Same versioning as save_note.
    from optuna_dashboard._note import note_ver_key, save_note_with_version

    attrs = study._storage.get_study_system_attrs(study._study_id)
    version = attrs.get(note_ver_key(trial_id), 0) + 1
    save_note_with_version(study._storage, study._study_id, trial_id, version, body)


def write_study_note(study: optuna.Study, target: float | None = None) -> str:
    """Write the study note and the best trial's note; returns the study note's markdown.

    `target` overrides the config's `target_accuracy` (study user attr `config`), the
    comparison's target by default (target.py); the note says which it used. A trial
    that was best in an earlier run gets its note replaced by a pointer to the new best.
    """
    from optuna_dashboard import save_note

    trials = study.get_trials(deepcopy=False)
    body = study_note(study, target, trials)
    save_note(study, body)
    metric, direction = metric_of(study)
    best = best_trial(trials, direction)
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    previous = system_attrs.get(BEST_NOTE_ATTR)
    if best is not None:
        _save_trial_note(study, best._trial_id,
                         best_trial_note(best, trials, metric, direction))
        if previous is not None and previous != best._trial_id:
            _save_trial_note(study, previous, f"Was the best trial after an earlier run; trial "
                                              f"{best.number} is now the best (see the study note).\n")
        study._storage.set_study_system_attr(study._study_id, BEST_NOTE_ATTR, best._trial_id)
    return body


def write_metered_notes(storage) -> int:
    """The notes of the studies that `metered()` filled (study attr `metered`): no run of
    ours ends such a study, so the dashboard writes them when it opens the store, as the
    runner does at the end of a run. Returns how many it wrote."""
    n = 0
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if s.user_attrs.get("metered"):
            write_study_note(optuna.load_study(study_name=s.study_name, storage=storage))
            n += 1
    return n


# --------------------------------------------------------------------------- artifacts

def attach_figures(study: optuna.Study, paths: Iterable[str | Path],
                   artifact_dir: str | Path) -> list[str]:
    """Upload figure files (PNG, PDF, SVG, ...) as study artifacts; returns artifact ids.

    A figure with the same file name that is already attached is replaced (its old copy is
    removed from the store and hidden from the dashboard), so re-attaching after a resumed
    run does not pile up copies. Serve with the same `artifact_dir` to open them.
    """
    import json

    from optuna.artifacts import FileSystemArtifactStore, upload_artifact
    from optuna.artifacts.exceptions import ArtifactNotFound

    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise StorageError(f"figure {str(p)!r} does not exist; nothing attached")
    art_dir = Path(artifact_dir)
    art_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(art_dir))
    storage, study_id = study._storage, study._study_id
    names = {p.name for p in paths}
    for key, value in storage.get_study_system_attrs(study_id).items():
        if not key.startswith("artifacts:"):
            continue
        meta = json.loads(value) if isinstance(value, str) else None
        if meta and meta.get("filename") in names:
            try:
                store.remove(meta["artifact_id"])
            except ArtifactNotFound:
                pass
            storage.set_study_system_attr(study_id, key, json.dumps(None))  # as the dashboard deletes
    return [upload_artifact(artifact_store=store, file_path=str(p), study_or_trial=study)
            for p in paths]
