"""Tiny Fashion-MNIST and CIFAR-10 files in the exact formats and layout torchvision leaves,
and a loopback HTTP server that serves them (or breaks off mid-file) for the download code.

IDX: big-endian magic 0x00 0x00 0x08 <ndim>, ndim uint32 sizes, unsigned bytes.
CIFAR-10: pickled dicts with bytes keys (as Python 2 wrote them), protocol 2, in
cifar-10-batches-py/, and the same folder in a cifar-10-python.tar.gz.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuning_energy.cnn.datasets.sources import CIFAR10, FASHION_MNIST, Source


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def labels(n: int, seed: int) -> np.ndarray:
    """n labels, every class of 0..9 equally often (n a multiple of 10), shuffled."""
    return np.random.default_rng(seed).permutation(np.arange(n) % 10).astype(np.uint8)


def images(y: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Noise with a class-dependent brightness, so that a model can learn something."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 100, size=(len(y), *shape))
    return (base + 15 * y.reshape(-1, *[1] * len(shape))).clip(0, 255).astype(np.uint8)


def fashion_mnist_files(n_train: int = 100, n_test: int = 20) -> dict[str, bytes]:
    """{'train-images-idx3-ubyte': bytes, ...}: the four IDX files, not compressed."""
    out = {}
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        y = labels(n, seed)
        out[f"{split}-images-idx3-ubyte"] = idx_bytes(images(y, (28, 28), seed))
        out[f"{split}-labels-idx1-ubyte"] = idx_bytes(y)
    return out


def write_fashion_mnist(root: Path, gz: bool = True, **sizes) -> Path:
    folder = root / "FashionMNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in fashion_mnist_files(**sizes).items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def cifar_batch(n: int, seed: int) -> bytes:
    y = labels(n, seed)
    x = images(y, (3, 32, 32), seed).reshape(n, 3072)
    return pickle.dumps({b"batch_label": b"training batch", b"labels": [int(v) for v in y],
                         b"data": x, b"filenames": [b"x.png"] * n}, protocol=2)


def cifar_files(per_batch: int = 20, n_test: int = 20) -> dict[str, bytes]:
    out = {f"data_batch_{i}": cifar_batch(per_batch, i) for i in range(1, 6)}
    out["test_batch"] = cifar_batch(n_test, 9)
    out["batches.meta"] = pickle.dumps({b"num_cases_per_batch": per_batch, b"num_vis": 3072,
                                        b"label_names": [b"airplane", b"automobile", b"bird",
                                                         b"cat", b"deer", b"dog", b"frog",
                                                         b"horse", b"ship", b"truck"]},
                                       protocol=2)
    return out


def write_cifar10(root: Path, files: dict[str, bytes] | None = None) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (files or cifar_files()).items():
        (folder / name).write_bytes(data)
    return folder


def cifar_tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def fashion_source(base_url: str, files: dict[str, bytes]) -> tuple[Source, dict[str, bytes]]:
    """The published Fashion-MNIST source with this server's base URL and the tiny files'
    checksums, and the gzipped bytes to serve by download name."""
    served = {f"{n}.gz": gzip.compress(d, mtime=0) for n, d in files.items()}
    return FASHION_MNIST.replace(base_url=base_url,
                                 downloads={n: md5(d) for n, d in served.items()}), served


def cifar_source(base_url: str, files: dict[str, bytes]) -> tuple[Source, dict[str, bytes]]:
    tarball = cifar_tarball(files)
    return CIFAR10.replace(base_url=base_url, files={n: md5(d) for n, d in files.items()},
                           downloads={CIFAR10.archive: md5(tarball)}), \
        {CIFAR10.archive: tarball}


@dataclass
class FileServer:
    """Serves `files` on 127.0.0.1; `break_first[name] = k`: the first k requests of `name`
    get the full Content-Length but only half the bytes, then the connection closes."""

    files: dict[str, bytes]
    break_first: dict[str, int] = field(default_factory=dict)
    requests: Counter = field(default_factory=Counter)

    def __enter__(self) -> FileServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                name = self.path.rsplit("/", 1)[-1]
                server.requests[name] += 1
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.requests[name] <= server.break_first.get(name, 0):
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()

    def __exit__(self, *exc) -> None:
        self.stop()
