"""Fashion-MNIST and CIFAR-10 without torchvision: readers of tiny files in the exact formats,
and the download code against a server on 127.0.0.1 (success, checksum mismatch, a server
that breaks off mid-file, retry, no network)."""

from __future__ import annotations

import gzip
import pickle
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from tuning_energy.cnn.datasets import CIFAR10, FASHION_MNIST, ensure
from tuning_energy.cnn.datasets.cifar import read_cifar10
from tuning_energy.cnn.datasets.download import DownloadError, fetch
from tuning_energy.cnn.datasets.idx import read_fashion_mnist, read_idx
from tuning_energy.errors import DataError

from .fake_datasets import (
    FileServer,
    cifar_files,
    cifar_source,
    fashion_mnist_files,
    fashion_source,
    md5,
    write_cifar10,
    write_fashion_mnist,
)

FAST = {"timeout_s": 2.0, "backoff_s": 0.01, "progress": False}


def no_extra_files(folder: Path) -> list[str]:
    """Every file in folder (hidden .part files included)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------- readers


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_torchvisions_layout_gzipped_or_not(tmp_path, gz):
    folder = write_fashion_mnist(tmp_path, gz=gz, n_train=50, n_test=20)
    x_train, y_train, x_test, y_test = read_fashion_mnist(folder)
    files = fashion_mnist_files(n_train=50, n_test=20)
    assert x_train.shape == (50, 28, 28) and x_test.shape == (20, 28, 28)
    # the bytes after the 16-byte header are the pixels, row by row
    assert x_train.tobytes() == files["train-images-idx3-ubyte"][16:]
    assert y_test.tobytes() == files["t10k-labels-idx1-ubyte"][8:]
    assert sorted(np.unique(y_train)) == list(range(10))


def test_a_truncated_idx_file_is_refused_naming_it(tmp_path):
    folder = write_fashion_mnist(tmp_path, gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        read_fashion_mnist(folder)
    (folder / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(folder / "junk")


def test_cifar10_reads_the_python_batches(tmp_path):
    files = cifar_files(per_batch=20, n_test=30)
    folder = write_cifar10(tmp_path, files)
    x_train, y_train, x_test, y_test = read_cifar10(folder)
    assert x_train.shape == (100, 3, 32, 32) and x_train.dtype == np.uint8
    assert x_test.shape == (30, 3, 32, 32) and len(y_test) == 30
    first = pickle.loads(files["data_batch_1"], encoding="bytes")
    # channel-first: the first 1,024 values of a row are the red plane
    assert (x_train[0, 0].ravel() == first[b"data"][0, :1024]).all()
    assert list(y_train[:20]) == first[b"labels"]


class Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/tuning-energy-pickle-ran",))


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    files = cifar_files()
    files["data_batch_3"] = pickle.dumps({b"data": Boom(), b"labels": []}, protocol=2)
    folder = write_cifar10(tmp_path, files)
    Path("/tmp/tuning-energy-pickle-ran").unlink(missing_ok=True)
    with pytest.raises(DataError, match=r"data_batch_3.*refused to load \w+\.system"):
        read_cifar10(folder)
    assert not Path("/tmp/tuning-energy-pickle-ran").exists()


# ---------------------------------------------------------------- downloads


def test_fashion_mnist_downloads_verified_into_torchvisions_layout(tmp_path):
    files = fashion_mnist_files()
    with FileServer({}) as server:
        source, served = fashion_source(server.url, files)
        server.files.update(served)
        folder = ensure(source, tmp_path, **FAST)
        assert folder == tmp_path / "FashionMNIST" / "raw"
        assert no_extra_files(folder) == sorted(served)  # no .part left
        assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == \
            served["train-images-idx3-ubyte.gz"]
        assert read_fashion_mnist(folder)[0].shape == (100, 28, 28)
        ensure(source, tmp_path, **FAST)  # present: nothing downloaded again
        assert set(server.requests.values()) == {1}


def test_a_checksum_mismatch_leaves_no_file(tmp_path):
    with FileServer({}) as server:
        source, served = fashion_source(server.url, fashion_mnist_files())
        name = "t10k-labels-idx1-ubyte.gz"
        server.files.update(served)
        server.files[name] = gzip.compress(b"not the published file")
        with pytest.raises(DataError) as err:
            ensure(source, tmp_path, **FAST)
    msg = str(err.value)
    assert "checksum mismatch" in msg and source.downloads[name] in msg
    assert name not in no_extra_files(tmp_path)
    assert not [n for n in no_extra_files(tmp_path) if n.endswith(".part")]


def test_a_transfer_broken_off_is_retried_and_then_completes(tmp_path):
    name = "train-images-idx3-ubyte.gz"
    with FileServer({}, break_first={name: 2}) as server:
        source, served = fashion_source(server.url, fashion_mnist_files())
        server.files.update(served)
        folder = ensure(source, tmp_path, retries=2, **FAST)
        assert server.requests[name] == 3
    assert (folder / name).read_bytes() == served[name]


def test_a_server_gone_mid_file_leaves_no_half_file(tmp_path):
    files = fashion_mnist_files()
    name = "train-images-idx3-ubyte.gz"
    with FileServer({}, break_first={name: 99}) as server:
        source, served = fashion_source(server.url, files)
        server.files.update(served)
        with pytest.raises(DataError, match="broken off after .* bytes .*tried 3 times"):
            ensure(source, tmp_path, retries=2, **FAST)
        assert server.requests[name] == 3
        server.stop()  # now gone altogether: the next try cannot even connect
        with pytest.raises(DownloadError, match="cannot reach"):
            fetch(source.url(name), tmp_path / name, source.downloads[name], **FAST)
    left = no_extra_files(tmp_path)
    assert name not in left and not [n for n in left if n.endswith(".part")]


def test_a_stale_part_file_of_a_killed_download_is_never_read_and_is_cleaned(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    stale = folder / ".train-images-idx3-ubyte.gz.abc123.part"
    stale.write_bytes(b"half a file")
    old = time.time() - 3600
    import os

    os.utime(stale, (old, old))
    with FileServer({}) as server:
        source, served = fashion_source(server.url, fashion_mnist_files())
        assert "train-images-idx3-ubyte" in source.missing(tmp_path)
        server.files.update(served)
        ensure(source, tmp_path, **FAST)
    assert not stale.exists()


def test_cifar10_downloads_the_tarball_and_unpacks_only_its_folder(tmp_path):
    files = cifar_files()
    with FileServer({}) as server:
        source, served = cifar_source(server.url, files)
        server.files.update(served)
        folder = ensure(source, tmp_path, **FAST)
    assert folder == tmp_path / "cifar-10-batches-py"
    assert no_extra_files(folder) == sorted(files)
    assert all(md5((folder / n).read_bytes()) == source.files[n] for n in files)
    assert read_cifar10(folder)[0].shape == (100, 3, 32, 32)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_network_the_error_names_dataset_folder_files_and_source_in_seconds(tmp_path):
    for source in (FASHION_MNIST, CIFAR10):
        offline = source.replace(base_url=f"http://127.0.0.1:{_closed_port()}/")
        t0 = time.perf_counter()
        with pytest.raises(DataError) as err:
            ensure(offline, tmp_path / "empty", **FAST)
        assert time.perf_counter() - t0 < 5
        msg = str(err.value)
        assert f"data.dataset = {source.dataset!r}" in msg
        assert str(tmp_path / "empty" / source.folder) in msg
        assert "cannot reach the host" in msg
        for name in source.expected_names():
            assert name in msg
        assert source.homepage in msg or source.archive in msg
        assert "data.root" in msg


def test_an_http_404_is_not_retried(tmp_path):
    with FileServer({}) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch(server.url + "nothing.gz", tmp_path / "nothing.gz", None, **FAST)
        assert server.requests["nothing.gz"] == 1
