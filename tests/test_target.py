"""One target accuracy per comparison, the same in every output of a store.

A real SQLite store from the `compare` CLI (random and bayes, one seed, a config whose
`target_accuracy` is 0.5): report.md (`figures`), compare.md, compare.json and the study
notes the runner wrote must state the config's target, say that it came from the config, and
give the same energy to target. Overrides (`--target`, `--target-fraction`) are labelled as
such; a config without `target_accuracy` falls back to 0.99 x the best accuracy and says so;
studies stored with different targets are an error that names them.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sqlite3

import optuna
import pytest
from optuna.trial import TrialState
from optuna_dashboard import get_note

from tuning_energy import analysis as an
from tuning_energy.analysis.target import TargetError
from tuning_energy.cli import main
from tuning_energy.cnn import function as cnn_module
from tuning_energy.config import load_config
from tuning_energy.report import dashboard
from tuning_energy.report.compare_report import compare_summary, write_compare
from tuning_energy.report.findings import analyse
from tuning_energy.report.report import render_report
from tuning_energy.run import compare as compare_module

from .conftest import write_tiny

TARGET = 0.5
STRATEGIES = ("random", "bayes")
FROM_CONFIG = f"target accuracy {TARGET:.4f} from the config's target_accuracy"
CHARGED = ("energy_j", "propose_energy_j", "store_energy_j")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(root, url, config path, what `compare` printed). The first trial of each study fails
    after training (its energy spent), so that energy to target adds up more than one
    trial."""
    root = tmp_path_factory.mktemp("target")
    config = root / "tiny.toml"
    # a trial costs tens of joules: every output prints enough digits
    write_tiny(config, target_accuracy=TARGET, meter={"cpu_tdp_w": 4000.0, "cpu_cores": 1})
    url = f"sqlite:///{root / 'energy.db'}"
    real_fit, real_run_study = cnn_module.fit, compare_module.run_study
    first = []

    def run_study(*args, **kwargs):
        first.append(True)
        return real_run_study(*args, **kwargs)

    def fit(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        if first and first.pop():
            raise RuntimeError("out of memory (test)")
        return result

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(cnn_module, "fit", fit)
        mp.setattr(compare_module, "run_study", run_study)
        assert main(["compare", "--config", str(config), "--seeds", "1", "--strategies",
                     ",".join(STRATEGIES), "--storage", url, "--no-progress",
                     "--out", str(root / "compare")]) == 0
    for strategy in STRATEGIES:
        assert _finished(url, f"tiny-{strategy}-s0")[0].state == TrialState.FAIL
    return root, url, config, printed.getvalue()


def _copy(url: str, tmp_path) -> str:
    """A copy through SQLite's backup API (the store is in WAL mode)."""
    src = sqlite3.connect(url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(tmp_path / "copy.db")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return f"sqlite:///{tmp_path / 'copy.db'}"


def _finished(url: str, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=url)
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sorted(study.get_trials(states=done), key=lambda t: (t.datetime_complete, t.number))


def _charged(t) -> float:
    return sum(t.user_attrs[k] for k in CHARGED if t.user_attrs.get(k) is not None)


def _by_hand(url: str, name: str, target: float) -> tuple[float, int] | None:
    """Energy to target from the stored attrs: what every trial up to the first one at the
    target was charged, in finishing order, and how many finished trials that was; None
    when never reached."""
    spent = 0.0
    for k, t in enumerate(_finished(url, name), start=1):
        spent += _charged(t)
        if t.state == TrialState.COMPLETE and t.values[0] >= target:
            return spent, k
    return None


def _best(url: str) -> float:
    return max(t.values[0] for s in STRATEGIES for t in _finished(url, f"tiny-{s}-s0")
               if t.state == TrialState.COMPLETE)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _row(md: str, first_cell: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _note_row(note: str) -> str:
    return next(ln for ln in note.splitlines() if ln.startswith("| energy to target"))


def _note_eta(note: str) -> float:
    m = re.search(r"\| energy to target [\d.]+ \| \*\*([\d,.]+) J\*\*", note)
    assert m, note
    return _number(m.group(1))


def test_every_output_uses_the_configs_target_and_gives_one_energy_to_target(store):
    root, url, _, _ = store
    assert main(["figures", "--storage", url, "--out", str(root / "figures")]) == 0
    report = (root / "figures" / "report.md").read_text()
    md = (root / "compare" / "compare-tiny.md").read_text()
    data = json.loads((root / "compare" / "compare-tiny.json").read_text())

    sentence = FROM_CONFIG[0].upper() + FROM_CONFIG[1:] + "."
    assert sentence in report and sentence in md
    assert data["target"] == TARGET and data["target_source"] == "config"
    assert data["target_text"] == FROM_CONFIG
    reached = 0
    for strategy in STRATEGIES:
        name = f"tiny-{strategy}-s0"
        note = get_note(optuna.load_study(study_name=name, storage=url))  # the runner's
        assert FROM_CONFIG in _note_row(note)
        hand = _by_hand(url, name, TARGET)
        if hand is None:
            assert "not reached" in _note_row(note)
            assert _row(report, strategy)[1] == "not reached"  # ERT
            assert _row(report, strategy)[5] == "n/a (half or more not reached)"  # median
            assert data["strategies"][strategy]["eta_median_j"] is None
            assert data["ert"][strategy]["ert_j"] is None
            continue
        reached += 1
        by_hand, k = hand  # k >= 2: the failed first trial's energy counts
        assert _note_eta(note) == pytest.approx(by_hand, abs=0.051)
        assert f"({k} finished trials" in _note_row(note)
        # one seed: its ERT and the median are its energy to target
        for col in (1, 5):
            assert _number(_row(report, strategy)[col]) == pytest.approx(by_hand, rel=5e-3)
            assert _number(_row(md, strategy)[col]) == pytest.approx(by_hand, rel=5e-3)
        assert data["strategies"][strategy]["eta_median_j"] == pytest.approx(by_hand, rel=1e-9)
        assert data["ert"][strategy]["ert_j"] == pytest.approx(by_hand, rel=1e-9)
    assert reached, "no study reached the target: the comparison shows nothing"


def test_an_override_is_labelled_in_every_output(store, tmp_path):
    root, url, config, _ = store
    assert main(["figures", "--storage", url, "--out", str(tmp_path), "--target", "0.6"]) == 0
    assert "Target accuracy 0.6000 given with --target." in (tmp_path / "report.md").read_text()
    write_compare(url, load_config(config), tmp_path, target=0.6)
    assert "Target accuracy 0.6000 given with --target." in \
        (tmp_path / "compare-tiny.md").read_text()
    data = json.loads((tmp_path / "compare-tiny.json").read_text())
    assert (data["target"], data["target_source"]) == (0.6, "--target")
    study = optuna.load_study(study_name="tiny-bayes-s0", storage=url)
    assert "target accuracy 0.6000 given with --target" in dashboard.study_note(study, 0.6)

    best = _best(url)
    trials = an.trials_table(url)
    report = render_report([analyse(an.tidy(trials), "tiny", target_fraction=0.9)],
                           an.studies_info(url), trials, url)
    assert f"Target accuracy {0.9 * best:.4f} = 0.9 x the best accuracy of any trial in the " \
           f"comparison ({best:.4f}), given with --target-fraction." in report
    assert main(["figures", "--storage", url, "--out", str(tmp_path), "--target", "1.5"]) == 2


def test_without_target_accuracy_the_data_sets_the_target_and_the_outputs_say_so(store,
                                                                                   tmp_path):
    _, url, _, _ = store
    url = _copy(url, tmp_path)
    best = _best(url)
    for strategy in STRATEGIES:
        study = optuna.load_study(study_name=f"tiny-{strategy}-s0", storage=url)
        study.set_user_attr("config", {**study.user_attrs["config"], "target_accuracy": None})
        note = dashboard.study_note(study)
        assert "the config has no `target_accuracy`" in _note_row(note)
    trials = an.trials_table(url)
    report = render_report([analyse(an.tidy(trials), "tiny")], an.studies_info(url), trials, url)
    assert f"Target accuracy {0.99 * best:.4f} = 0.99 x the best accuracy of any trial in the " \
           f"comparison ({best:.4f}), because the config has no target_accuracy." in report
    data, _ = compare_summary(trials, "tiny")
    assert data["target"] == pytest.approx(0.99 * best) and data["target_source"] == "best"


def test_studies_stored_with_different_targets_are_an_error_naming_them(store, tmp_path,
                                                                        capsys):
    _, url, config, _ = store
    url = _copy(url, tmp_path)
    study = optuna.load_study(study_name="tiny-bayes-s0", storage=url)
    study.set_user_attr("config", {**study.user_attrs["config"], "target_accuracy": 0.6})
    assert main(["figures", "--storage", url, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "target_accuracy" in err and "0.5 (tiny-random-s0)" in err \
        and "0.6 (tiny-bayes-s0)" in err and "--target" in err
    with pytest.raises(TargetError, match="tiny-bayes-s0"):
        write_compare(url, load_config(config), tmp_path)
    # an explicit target still answers
    data, _ = compare_summary(an.trials_table(url), "tiny", target=0.5)
    assert data["target_source"] == "--target"


def test_the_printed_comparison_shows_charged_energy_and_its_estimate_label(store):
    _, url, _, printed = store
    lines = printed.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("study ") and "charged J" in ln)
    for strategy in STRATEGIES:
        name = f"tiny-{strategy}-s0"
        row = next(ln for ln in lines[head:] if ln.startswith(name + " "))
        cells = row.split()
        trials = _finished(url, name)
        assert _number(cells[4]) == pytest.approx(sum(_charged(t) for t in trials), abs=0.051)
        assert "estimate-cpu-tdp-tree (ESTIMATE)" in row
    bayes = _finished(url, "tiny-bayes-s0")
    assert sum(t.user_attrs["propose_energy_j"] for t in bayes) > 0.1  # the GP's share shows
    footer = "\n".join(lines[head:])
    assert "charged J: the training + proposing" in footer
    assert "energy method estimate-cpu-tdp-tree: an ESTIMATE (estimate-cpu-tdp-tree)" in footer
