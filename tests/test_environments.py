"""Environments side by side: the `environment` study attr (--environment or a label from
device, CPU/GPU model and threads) and `figures --storage A --storage B` with its
Environments section, on real SQLite stores run at 1 and 2 torch threads."""

from __future__ import annotations

import shutil

import optuna
import pytest

from tuning_energy import analysis as an
from tuning_energy.analysis.environments import read_stores
from tuning_energy.cli import main
from tuning_energy.energy.hardware import environment_label, environment_of
from tuning_energy.errors import TuningEnergyError

from .conftest import write_tiny


def test_the_default_label_is_device_model_and_threads():
    xeon = {"cpu": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "gpus": ["NVIDIA H100"]}
    assert environment_label("cpu", xeon, 2) == "cpu: Intel Xeon Platinum 8375C, 2 threads"
    assert environment_label("cpu", xeon, 1).endswith(", 1 thread")
    assert environment_label("cuda", xeon, 1) == "cuda: NVIDIA H100"
    # a study stored before the attr existed: from its hardware, device and threads
    old = {"hardware": xeon, "torch_threads": 1, "config": {"train": {"device": "auto"}}}
    assert environment_of(old) == "cuda: NVIDIA H100"
    assert environment_of({**old, "environment": "laptop"}) == "laptop"


def _compare(tmp_path, threads: int, environment: str | None = None) -> str:
    config = tmp_path / f"tiny{threads}.toml"
    write_tiny(config, target_accuracy=None, train={"torch_threads": threads})
    url = f"sqlite:///{tmp_path / f'threads{threads}.db'}"
    args = ["compare", "--config", str(config), "--seeds", "2", "--strategies", "random,bayes",
            "--storage", url, "--no-progress", "--out", str(tmp_path / f"cmp{threads}")]
    assert main(args + (["--environment", environment] if environment else [])) == 0
    return url


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("env")
    return root, _compare(root, 1), _compare(root, 2)


def _tiny_study(tmp_path) -> tuple[str, list[str]]:
    """(store URL, `study` arguments) of a random study of the tiny config in tmp_path."""
    config = tmp_path / "t.toml"
    write_tiny(config, target_accuracy=None)
    url = f"sqlite:///{tmp_path / 's.db'}"
    return url, ["study", "--config", str(config), "--strategy", "random", "--storage", url,
                 "--no-progress"]


def test_study_stores_its_environment_and_refuses_to_resume_under_another(tmp_path, capsys):
    url, base = _tiny_study(tmp_path)
    assert main(base + ["--environment", "laptop"]) == 0
    study = optuna.load_study(study_name="tiny-random-s0", storage=url)
    assert study.user_attrs["environment"] == "laptop"
    assert main(base + ["--environment", "gpu-server", "--trials", "4"]) == 2
    assert "environment: stored 'laptop', now 'gpu-server'" in capsys.readouterr().err
    assert main(base + ["--environment", "  "]) == 2


def test_a_resume_without_environment_keeps_the_stored_label(tmp_path, capsys):
    """The label is descriptive: a resume that leaves out --environment goes on under the
    stored label (and the stored config keeps it, so naming it again still resumes)."""
    url, base = _tiny_study(tmp_path)
    assert main(base + ["--environment", "laptop"]) == 0
    assert main(base + ["--trials", "4"]) == 0, capsys.readouterr().err
    assert main(base + ["--trials", "5", "--environment", "laptop"]) == 0, \
        capsys.readouterr().err
    study = optuna.load_study(study_name="tiny-random-s0", storage=url)
    assert len(study.trials) == 5
    assert study.user_attrs["environment"] == "laptop"
    assert study.user_attrs["config"]["environment"] == "laptop"
    assert main(base + ["--trials", "6", "--environment", "gpu-server"]) == 2
    assert "leave it out to keep the stored label" in capsys.readouterr().err


def test_each_store_carries_its_default_environment(stores):
    _, one, two = stores
    envs = {u: set(an.trials_table(u)["environment"]) for u in (one, two)}
    assert len(envs[one]) == len(envs[two]) == 1
    assert next(iter(envs[one])).endswith(", 1 thread")
    assert next(iter(envs[two])).endswith(", 2 threads")


def test_figures_over_two_stores_puts_the_environments_side_by_side(stores):
    root, one, two = stores
    out = root / "both"
    assert main(["figures", "--storage", one, "--storage", two, "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert report.count("## Environments") == 1
    section = report.split("## Environments")[1].split("_Methods")[0]
    env1, env2 = sorted(set(read_stores([one, two])[0]["environment"]))
    for env in (env1, env2):
        assert f"| {env} | estimate-cpu-tdp-tree | 4 |" in section  # 2 strategies x 2 seeds
    for metric in ("energy per trial (J)", "energy per epoch (J)", "average power (W)",
                   "energy to target, bayes", "energy to target, random"):
        assert f"| {metric} | {env2} | {env1} |" in section
    assert "is an ESTIMATE" in section
    # one comparison section (and set of figures) per environment
    assert report.count("## Comparison `tiny@cpu-") == 2
    assert len(list(out.glob("tiny@cpu-*-best-so-far.png"))) == 2


def test_one_store_has_no_environments_section(stores):
    root, one, _ = stores
    assert main(["figures", "--storage", one, "--out", str(root / "one")]) == 0
    report = (root / "one" / "report.md").read_text()
    assert "## Environments" not in report and "## Comparison `tiny`" in report


def test_the_same_study_and_environment_in_two_stores_is_refused(stores, tmp_path):
    _, one, _ = stores
    copy = tmp_path / "copy.db"
    shutil.copy(one.removeprefix("sqlite:///"), copy)
    with pytest.raises(TuningEnergyError, match="different --environment labels"):
        read_stores([one, f"sqlite:///{copy}"])


def _env_trials():
    """Two environments of one config, built by hand: `gpu` metered by `auto` without
    readable RAPL (NVML + the CPU estimate) in one study and by rapl in the other; `laptop`
    by rapl. Every trial: 10 J training, 2 J proposing, 1 J storage."""
    import pandas as pd

    rows = []
    for env, studies in (("gpu", {"tiny-random-s0": "nvml-counter+estimate-cpu-tdp-tree",
                                  "tiny-random-s1": "rapl"}),
                         ("laptop", {"tiny-random-s0": "rapl", "tiny-random-s1": "rapl"})):
        for study, method in studies.items():
            for i, acc in enumerate((0.6, 0.9)):
                estimated = method.startswith("nvml")
                rows.append({
                    "comparison": "tiny", "config_name": "tiny", "study": study,
                    "strategy": "random", "seed": int(study[-1]), "trial": i, "number": i,
                    "state": "COMPLETE", "accuracy": acc, "energy_j": 10.0, "duration_s": 1.0,
                    "propose_energy_j": 2.0, "store_energy_j": 1.0, "epochs_run": 1,
                    "energy_method": method, "environment": env, "target_accuracy": 0.85,
                    "energy_dev_gpu0_j": 6.0 if estimated else None,
                    "energy_dev_cpu0_j": 4.0 if estimated else 10.0})
    return pd.DataFrame(rows)


def test_the_environments_section_uses_the_one_charge_and_the_one_label():
    import pandas as pd

    from tuning_energy.analysis.environments import environment_table, report_lines
    from tuning_energy.report.markdown import md_table

    trials = _env_trials()
    info = pd.DataFrame([{"config_name": "tiny", "environment": env, "store": "s.db",
                          "hardware": {"cpu": "x"}, "torch_threads": 1, "energy_method": m}
                         for env, m in (("gpu", "nvml-counter+estimate-cpu-tdp-tree"),
                                        ("laptop", "rapl"))])
    section = "\n".join(report_lines(trials, info, md_table))
    table = environment_table(trials).set_index("environment")
    # the search energy is what the trials are charged: 4 trials x (10 + 2 + 1) J
    assert table.loc["gpu", "total_energy_j"] == 4 * 13.0
    assert "search energy, charged (J)" in section
    # two distinct methods are a list, not a made-up composite method
    assert table.loc["gpu", "energy_method"] == "nvml-counter+estimate-cpu-tdp-tree, rapl"
    assert "| gpu | nvml-counter+estimate-cpu-tdp-tree, rapl |" in section
    # partly estimated says so, naming the estimated device, as every other output does
    partly = "partly an ESTIMATE: cpu0 from estimate-cpu-tdp-tree"
    finding = next(ln for ln in section.splitlines() if ln.startswith("- Energy in `gpu`"))
    assert partly in finding
    assert not any(ln.startswith("- Energy in `laptop`") for ln in section.splitlines())
    env_line = next(ln for ln in section.splitlines() if ln.startswith("- `gpu`"))
    assert partly in env_line

