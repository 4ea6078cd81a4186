"""Environments side by side: the `environment` study attr (--environment or a label from
device, CPU/GPU model and threads) and `figures --storage A --storage B` with its
Environments section, on real SQLite stores run at 1 and 2 torch threads."""

from __future__ import annotations

import shutil

import optuna
import pytest

from tuning_energy import analysis as an
from tuning_energy.cli import main
from tuning_energy.environments import read_stores
from tuning_energy.errors import TuningEnergyError
from tuning_energy.hardware import environment_label, environment_of

TINY = """
name = "tiny"
[data]
dataset = "digits"
[train]
epochs = 1
batch_size = 256
torch_threads = {threads}
[budget]
n_trials = 3
[meter]
kind = "estimate"
idle_s = 0
[strategy.bayes]
n_initial_points = 2
n_points = 100
[search_space.n_conv]
type = "int"
low = 0
high = 1
[search_space.lr]
type = "float"
low = 1e-3
high = 1e-1
log = true
"""


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
    config.write_text(TINY.format(threads=threads))
    url = f"sqlite:///{tmp_path / f'threads{threads}.db'}"
    args = ["compare", "--config", str(config), "--seeds", "2", "--strategies", "random,bayes",
            "--storage", url, "--no-progress", "--out", str(tmp_path / f"cmp{threads}")]
    assert main(args + (["--environment", environment] if environment else [])) == 0
    return url


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("env")
    return root, _compare(root, 1), _compare(root, 2)


def test_study_stores_its_environment_and_refuses_to_resume_under_another(tmp_path, capsys):
    config = tmp_path / "t.toml"
    config.write_text(TINY.format(threads=1))
    url = f"sqlite:///{tmp_path / 's.db'}"
    base = ["study", "--config", str(config), "--strategy", "random", "--storage", url,
            "--no-progress"]
    assert main(base + ["--environment", "laptop"]) == 0
    study = optuna.load_study(study_name="tiny-random-s0", storage=url)
    assert study.user_attrs["environment"] == "laptop"
    assert main(base + ["--environment", "gpu-server", "--trials", "4"]) == 2
    assert "environment: stored 'laptop', now 'gpu-server'" in capsys.readouterr().err
    assert main(base + ["--environment", "  "]) == 2


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
        assert f"| {env} | estimate-cpu-tdp | 4 |" in section  # 2 strategies x 2 seeds
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
