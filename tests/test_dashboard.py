"""optuna-dashboard on a real energy store: JSON API, notes, figures, Ctrl-C, errors.

The store comes from a real tiny study (3 trials, 1 epoch, estimate meter); the server is
the real optuna-dashboard app served by our code on a free 127.0.0.1 port.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402
from optuna_dashboard import get_note  # noqa: E402

from tuning_energy.cli import main  # noqa: E402
from tuning_energy.config import parse_config  # noqa: E402
from tuning_energy.errors import ConfigError  # noqa: E402
from tuning_energy.report import dashboard  # noqa: E402
from tuning_energy.report.dashboard import (  # noqa: E402
    DashboardError,
    attach_figures,
    open_server,
    write_study_note,
)
from tuning_energy.run.runner import run_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny", "target_accuracy": 0.2,
    "train": {"epochs": 1, "batch_size": 128, "torch_threads": 1, "device": "cpu"},
    "budget": {"n_trials": 3}, "meter": {"kind": "estimate", "idle_s": 0},
    "fixed": {"channels": 4, "hidden": 16},
    "search_space": {"n_conv": {"type": "int", "low": 0, "high": 1},
                     "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
}
ENERGY_ATTRS = ("energy_j", "duration_s", "avg_power_w")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real SQLite store with one finished 3-trial study; returns (dir, url, study name)."""
    d = tmp_path_factory.mktemp("store")
    url = f"sqlite:///{d / 'energy.db'}"
    summary = run_study(parse_config(TINY), "random", 0, url, progress=False)
    assert summary.n_finished == 3
    return d, url, summary.study_name


def _copy_store(store, tmp_path) -> str:
    """A copy through SQLite's backup API: the store is in WAL mode, and a plain file copy
    would miss what is still in energy.db-wal."""
    import sqlite3

    d, _, _ = store
    src, dst = sqlite3.connect(d / "energy.db"), sqlite3.connect(tmp_path / "energy.db")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return f"sqlite:///{tmp_path / 'energy.db'}"


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" else body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_api_shows_metrics_energy_attrs_note_and_figure(store, tmp_path):
    d, url, name = store
    study = optuna.load_study(study_name=name, storage=url)
    png = tmp_path / "energy_vs_accuracy.png"
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(png)
    plt.close(fig)
    art_dir = d / "artifacts"
    attach_figures(study, [png], art_dir)
    attach_figures(study, [png], art_dir)  # re-attaching replaces, never piles up

    server = open_server(url, port=0, artifact_dir=art_dir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.socket.getsockname()[:2]
        assert host == "127.0.0.1"  # loopback only, never 0.0.0.0
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/api/meta")["artifact_is_available"] is True

        listed = {s["study_name"]: s for s in _get(f"{base}/api/studies")["study_summaries"]}
        assert name in listed
        attrs = {a["key"]: a["value"] for a in listed[name]["user_attrs"]}
        for key in ("strategy", "seed", "config", "hardware", "energy_method", "meter"):
            assert key in attrs, key
        assert attrs["strategy"] == "random" and attrs["energy_method"] == "estimate-cpu-tdp-tree"
        assert json.loads(attrs["config.target_accuracy"]) == 0.2
        assert json.loads(attrs["config.search_space"])[0]["name"] == "n_conv"  # whole, not cut

        detail = _get(f"{base}/api/studies/{listed[name]['study_id']}")
        assert detail["objective_names"] == ["accuracy"]
        assert detail["directions"] == ["maximize"]
        assert len(detail["trials"]) == 3
        total_j = 0.0
        for t in detail["trials"]:
            ua = {a["key"]: a["value"] for a in t["user_attrs"]}
            for key in ENERGY_ATTRS:
                assert float(ua[key]) > 0, (t["number"], key)
            assert ua["energy_method"] == "estimate-cpu-tdp-tree"
            # the search's total: training + proposing (+ storage) energy of every trial
            total_j += sum(float(ua[k]) for k in ("energy_j", "propose_energy_j",
                                                  "store_energy_j") if ua.get(k) is not None)

        note = detail["note"]["body"]
        assert note.startswith(f"## Energy summary: {name}")
        import re

        shown = re.search(r"\| total energy of the search \| \*\*([\d,.]+) J\*\*", note)
        assert shown, note
        assert float(shown.group(1).replace(",", "")) == pytest.approx(total_j, rel=5e-3)
        assert "`estimate-cpu-tdp-tree`" in note
        assert "energy to target 0.2000" in note
        assert "Trials that cost the most energy" in note
        best = detail["best_trials"][0]
        assert best["note"]["body"].startswith("## Best trial of this study")
        assert f"**{best['values'][0]:.4f}**" in best["note"]["body"]

        arts = detail["artifacts"]
        assert [a["filename"] for a in arts] == ["energy_vs_accuracy.png"]
        assert len(list(art_dir.iterdir())) == 1
        image = _get(f"{base}/artifacts/{listed[name]['study_id']}/{arts[0]['artifact_id']}")
        assert image == png.read_bytes()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert not thread.is_alive()


def test_note_is_updated_when_the_study_resumes(store, tmp_path):
    url = _copy_store(store, tmp_path)
    name = store[2]
    before = get_note(optuna.load_study(study_name=name, storage=url))
    assert "3 complete" in before
    cfg = parse_config(TINY)
    cfg = cfg.with_overrides(budget=dataclasses.replace(cfg.budget, n_trials=4))
    run_study(cfg, "random", 0, url, progress=False)
    after = get_note(optuna.load_study(study_name=name, storage=url))
    assert "4 complete" in after and "4 in all" in after


def test_a_new_target_with_nothing_to_run_rewrites_the_note(store, tmp_path):
    """Rerunning a finished study with another target_accuracy (analysis only: the stored
    config takes it) runs no trial, yet the note follows the new target, as compare.md."""
    import re

    from tuning_energy.report.compare_report import write_compare

    url = _copy_store(store, tmp_path)
    name = store[2]
    study = optuna.load_study(study_name=name, storage=url)
    assert "energy to target 0.2000" in get_note(study)
    # target B: the best accuracy of the study, so that it is reached, by its best trial
    target_b = max(t.values[0] for t in study.trials if t.state == TrialState.COMPLETE)
    cfg = parse_config({**TINY, "target_accuracy": target_b})
    summary = run_study(cfg, "random", 0, url, progress=False)
    assert summary.ran_now == 0 and summary.stop_reason == "budget already spent"
    note = get_note(optuna.load_study(study_name=name, storage=url))
    m = re.search(rf"\| energy to target {target_b:.4f} \| \*\*([\d,.]+) J\*\*", note)
    assert m, note
    write_compare(url, cfg, tmp_path / "out", studies=[name])
    md = (tmp_path / "out" / "compare-tiny.md").read_text()
    row = next(ln for ln in md.splitlines() if ln.startswith("| random |"))
    eta = float(row.split("|")[2].strip().replace(",", ""))  # one seed: ERT = its energy
    assert float(m.group(1).replace(",", "")) == pytest.approx(eta, rel=5e-3)


def test_note_gives_the_co2_show_gives_beside_the_charged_energy(store, capsys):
    """The note's CO2 of the search is the figure `tuning-energy show` gives for the study
    (its charged energy's CO2), in the same format, with the intensity's source and ESTIMATE
    (the estimate meter's energy)."""
    _, url, name = store
    assert main(["show", "--storage", url]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(name))
    shown = row.split()[7]  # show's CO2 g column
    assert float(shown) > 0
    note = get_note(optuna.load_study(study_name=name, storage=url)).splitlines()
    k = next(i for i, ln in enumerate(note) if ln.startswith("| CO2 of the search |"))
    assert note[k - 1].startswith("| total energy of the search |")  # beside the energy
    assert note[k].startswith(f"| CO2 of the search | **{shown} g CO2e**: of its charged "
                              f"energy"), note[k]
    assert "world average (meter.region not set)" in note[k]
    assert "like its energy, an ESTIMATE (estimate-cpu-tdp-tree)" in note[k]


def test_note_is_written_when_the_run_is_interrupted(store, tmp_path, monkeypatch):
    from tuning_energy.run import runner

    url = _copy_store(store, tmp_path)
    calls = []
    real_run = runner.Objective.run

    def interrupt_second(self, trial, params):
        calls.append(trial.number)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run(self, trial, params)

    monkeypatch.setattr(runner.Objective, "run", interrupt_second)
    cfg = parse_config(TINY)
    cfg = cfg.with_overrides(budget=dataclasses.replace(cfg.budget, n_trials=6))
    summary = run_study(cfg, "random", 0, url, progress=False)
    assert summary.interrupted
    note = get_note(optuna.load_study(study_name=store[2], storage=url))
    assert "4 complete, 0 pruned, 1 failed, 5 in all" in note


def test_a_failing_note_warns_and_keeps_the_trials(store, tmp_path, monkeypatch):
    url = _copy_store(store, tmp_path)

    def broken(study, target=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dashboard, "write_study_note", broken)
    cfg = parse_config(TINY)
    cfg = cfg.with_overrides(budget=dataclasses.replace(cfg.budget, n_trials=4))
    with pytest.warns(RuntimeWarning, match="dashboard note.*disk full"):
        summary = run_study(cfg, "random", 0, url, progress=False)
    assert summary.n_finished == 4


def _trial(acc: float, energy_j: float, state=TrialState.COMPLETE, n_values: int = 2):
    values = [acc, energy_j][:n_values] if state == TrialState.COMPLETE else None
    return create_trial(state=state, values=values, params={"lr": 0.01},
                        distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1)},
                        user_attrs={"energy_j": energy_j, "duration_s": energy_j / 10,
                                    "avg_power_w": 10.0, "energy_method": "rapl"})


def test_note_for_multi_objective_study_energy_to_target_and_best():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "energy_j"])
    study.set_user_attr("config", {"target_accuracy": 0.9})
    study.set_user_attr("strategy", "tpe")
    for acc, e, state in [(0.5, 10.0, TrialState.COMPLETE), (0.0, 40.0, TrialState.FAIL),
                          (0.91, 30.0, TrialState.COMPLETE), (0.95, 200.0, TrialState.COMPLETE),
                          (0.945, 20.0, TrialState.COMPLETE)]:
        study.add_trial(_trial(acc, e, state))
    note = write_study_note(study)
    assert get_note(study) == note
    # energy to target counts every trial in run order, the failed one too: 10 + 40 + 30
    assert "energy to target 0.9000 | **80.0 J**: all trials up to trial 2" in note
    assert "**300.0 J** (0.0833 Wh)" in note and "`rapl`" in note
    assert "| Pareto front | 3 trial(s): " in note
    rows = [line for line in note.splitlines() if line.startswith("| 3 |")]
    assert rows and "200.0" in rows[0]  # the costliest trial heads the table
    trials = study.get_trials()
    best_note = get_note_of(study, trials[3])
    assert "**0.9450**" not in best_note and "**0.9500**" in best_note
    assert "Trial 4 came within 0.01 (0.9450) for 20.0 J" in best_note

    # A better trial later (a resumed run): the old best's note points at the new one.
    study.add_trial(_trial(0.97, 25.0))
    write_study_note(study, target=0.96)
    trials = study.get_trials()
    assert get_note_of(study, trials[5]).startswith("## Best trial")
    assert "trial 5 is now the best" in get_note_of(study, trials[3])
    assert "energy to target 0.9600 | **325.0 J**" in get_note(study)


def get_note_of(study, frozen) -> str:
    from optuna_dashboard._note import get_note_from_system_attrs

    attrs = study._storage.get_study_system_attrs(study._study_id)
    return get_note_from_system_attrs(attrs, frozen._trial_id)["body"]


def test_missing_store_says_which_command_creates_it(tmp_path, capsys):
    db = tmp_path / "nothing.db"
    assert main(["dashboard", "--storage", f"sqlite:///{db}", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no store there yet" in err and "make study" in err
    assert not db.exists()


def test_port_taken_names_the_port_and_suggests_another(store):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DashboardError, match=rf"port {port} .*in use.*PORT=\d+"):
            open_server(store[1], port=port)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org"])
def test_only_loopback_hosts(store, host):
    with pytest.raises(ConfigError, match="loopback"):
        open_server(store[1], port=0, host=host)


def test_cli_prints_url_serves_and_stops_cleanly_on_ctrl_c(store):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuning_energy.cli", "dashboard", "--storage", store[1],
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=ROOT)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert f"http://127.0.0.1:{port}/dashboard" in lines[1], (lines, proc.stderr.read())
        deadline = time.monotonic() + 30  # generous: CI machines are loaded
        while True:
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert [s["study_name"] for s in studies] == [store[2]]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "dashboard stopped" in out and "Traceback" not in err


def test_the_best_trial_is_weighed_against_complete_trials_not_pruned_ones():
    """Five pruned trials that trained an epoch each must not make a full training look
    12x the median: the best trial's energy is set beside the complete trials'."""
    complete = [create_trial(value=v, user_attrs={"energy_j": e, "energy_method": "rapl"})
                for v, e in ((0.80, 10.0), (0.85, 10.0), (0.90, 12.0))]
    pruned = [create_trial(state=TrialState.PRUNED, intermediate_values={0: 0.5},
                           user_attrs={"energy_j": 1.0, "energy_method": "rapl"})
              for _ in range(5)]
    note = dashboard.best_trial_note(complete[2], complete + pruned)
    assert "1.20x the median complete trial's 10.0 J" in note
    assert "rank 3 of 3 complete trials" in note
