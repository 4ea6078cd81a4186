"""Training, validation and test sets of every dataset: val_fraction and split_seed honoured,
stratified, the test set held out (or used for selection with validation = "test"), and
Fashion-MNIST / CIFAR-10 through `load_dataset` and the CLI from torchvision's layout."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from tuning_energy.cli import main
from tuning_energy.cnn.data import default_root, load_dataset
from tuning_energy.config import DataConfig
from tuning_energy.search.strategies import STRATEGIES

from .conftest import write_tiny
from .fake_datasets import (
    FileServer,
    cifar_files,
    cifar_source,
    fashion_mnist_files,
    fashion_source,
    write_cifar10,
    write_fashion_mnist,
)

REPO = Path(__file__).resolve().parents[1]
N_TRAIN = {"digits": 1797 - 360, "fashion-mnist": 100, "cifar10": 100}
N_TEST = {"digits": 360, "fashion-mnist": 20, "cifar10": 20}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    fm, cf = tmp_path_factory.mktemp("fm"), tmp_path_factory.mktemp("cifar")
    write_fashion_mnist(fm)
    write_cifar10(cf)
    return {"digits": None, "fashion-mnist": str(fm), "cifar10": str(cf)}


def load(roots, dataset, **kw):
    return load_dataset(DataConfig(dataset=dataset, root=roots[dataset], **kw))


def rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist", "cifar10"])
def test_val_fraction_and_split_seed_shape_a_stratified_validation_set(roots, dataset):
    a = load(roots, dataset, val_fraction=0.2, split_seed=0)
    b = load(roots, dataset, val_fraction=0.4, split_seed=0)
    c = load(roots, dataset, val_fraction=0.2, split_seed=1)
    again = load(roots, dataset, val_fraction=0.2, split_seed=0)
    for d in (a, b, c):
        assert d.validation == "split"
        assert len(d.x_train) + len(d.x_val) == N_TRAIN[dataset]
        assert len(d.x_test) == N_TEST[dataset]
        assert not rows(d.x_train) & rows(d.x_val)  # validation is not trained on
        assert not rows(d.x_test) & (rows(d.x_train) | rows(d.x_val))  # test is held out
        # stratified: each class's share of the validation set is its share overall
        y = torch.cat([d.y_train, d.y_val]).numpy()
        share = np.bincount(y, minlength=10) / len(y)
        val_share = np.bincount(d.y_val.numpy(), minlength=10) / len(d.y_val)
        assert np.abs(val_share - share).max() <= 1 / len(d.y_val) + 1e-9
    assert len(b.x_val) > len(a.x_val) and len(b.x_train) < len(a.x_train)
    assert len(c.x_val) == len(a.x_val) and rows(c.x_val) != rows(a.x_val)
    assert rows(again.x_val) == rows(a.x_val)
    assert rows(a.x_test) == rows(b.x_test) == rows(c.x_test)  # one test set


@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist", "cifar10"])
def test_validation_test_trains_on_everything_and_selects_on_the_test_set(roots, dataset):
    d = load(roots, dataset, validation="test")
    assert d.validation == "test" and len(d.x_train) == N_TRAIN[dataset]
    assert d.x_val is d.x_test and d.y_val is d.y_test
    assert "TEST set" in d.describe() and "optimistic" in d.describe()
    moved = d.to("cpu")
    assert moved.x_val is moved.x_test


def test_images_are_scaled_channel_first_float(roots):
    fm, cf = load(roots, "fashion-mnist"), load(roots, "cifar10")
    assert fm.input_shape == (1, 28, 28) and cf.input_shape == (3, 32, 32)
    for d in (fm, cf):
        assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
        assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0


@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10"])
def test_load_dataset_downloads_on_first_use_then_reads_the_files(tmp_path, dataset):
    files = fashion_mnist_files() if dataset == "fashion-mnist" else cifar_files()
    make = fashion_source if dataset == "fashion-mnist" else cifar_source
    with FileServer({}) as server:
        source, served = make(server.url, files)
        server.files.update(served)
        cfg = DataConfig(dataset=dataset, root=str(tmp_path))
        first = load_dataset(cfg, source=source)
        second = load_dataset(cfg, source=source)
        assert sum(server.requests.values()) == len(served)  # downloaded once
    assert len(first.x_train) + len(first.x_val) == 100
    assert torch.equal(first.x_val, second.x_val)


def test_default_root_is_a_per_user_cache():
    assert default_root({"XDG_CACHE_HOME": "/c"}) == Path("/c/tuning-energy/data")
    assert default_root({}) == Path.home() / ".cache" / "tuning-energy" / "data"


def _fm_config(path, dataset: str, root, **data):
    """The tiny config on `dataset` in `root`: 2 trials, a 2-level grid."""
    return write_tiny(path, name="fm", data={"dataset": dataset, "root": str(root), **data},
                      train={"batch_size": 32}, budget={"n_trials": 2},
                      strategy={"grid_levels": 2, "bayes": {"n_initial_points": 1, "n_points": 50}},
                      search_space={"n_conv": {"type": "int", "low": 0, "high": 2}})


def test_every_strategy_runs_on_fashion_mnist_from_torchvisions_layout(roots, tmp_path):
    config = _fm_config(tmp_path / "fm.toml", "fashion-mnist", roots["fashion-mnist"])
    url = f"sqlite:///{tmp_path / 'fm.db'}"
    assert main(["compare", "--config", str(config), "--seeds", "1", "--storage", url,
                 "--no-progress", "--strategies", ",".join(STRATEGIES),
                 "--out", str(tmp_path / "out")]) == 0
    for strategy in STRATEGIES:
        study = optuna.load_study(study_name=f"fm-{strategy}-s0", storage=url)
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        assert len(done) == 2, strategy
        assert all(0 <= t.user_attrs["test_accuracy"] <= 1 for t in done)


def test_a_cifar10_study_runs_from_torchvisions_layout(roots, tmp_path, capsys):
    config = _fm_config(tmp_path / "cf.toml", "cifar10", roots["cifar10"])
    url = f"sqlite:///{tmp_path / 'cf.db'}"
    assert main(["study", "--config", str(config), "--strategy", "random", "--storage", url,
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "data: cifar10, 75 train / 25 validation / 20 test" in out
    assert f"files in {roots['cifar10']}/cifar-10-batches-py" in out


def test_without_files_or_network_the_cli_fails_in_seconds_without_a_traceback(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    empty = tmp_path / "nothing-here"
    config = _fm_config(tmp_path / "fm.toml", "fashion-mnist", empty,
                        mirror=f"http://127.0.0.1:{port}/")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tuning_energy.cli", "study", "--config",
                           str(config), "--storage", f"sqlite:///{tmp_path / 's.db'}",
                           "--no-progress"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    err = proc.stderr
    assert "data.dataset = 'fashion-mnist'" in err and str(empty / "FashionMNIST/raw") in err
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in err
    assert "github.com/zalandoresearch/fashion-mnist" in err
    assert elapsed < 60  # process start and imports included; the download gives up at once
