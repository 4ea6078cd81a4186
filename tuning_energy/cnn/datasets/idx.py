"""Fashion-MNIST's files: the IDX format (LeCun's MNIST format), gzipped or not.

    magic: 0x00 0x00 <type> <ndim>   type 0x08 = unsigned byte
    ndim big-endian uint32 sizes, then the values in row-major (C) order

Images are `idx3` (N, 28, 28), labels `idx1` (N,). Read with numpy alone; a file that is
truncated or not IDX raises DataError naming it.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from tuning_energy.cnn.datasets.sources import FASHION_MNIST_FILES
from tuning_energy.errors import DataError

UBYTE = 0x08


def _open_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); delete it "
                        f"to download it again") from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes as a uint8 array of its declared shape."""
    raw = _open_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number); delete it to download "
                        f"it again")
    dtype, ndim = raw[2], raw[3]
    if dtype != UBYTE:
        raise DataError(f"{path}: IDX type 0x{dtype:02x}, expected 0x08 (unsigned byte)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: IDX header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise DataError(f"{path}: {len(raw) - header:,} bytes of data, its header says "
                        f"{size:,} ({' x '.join(map(str, shape))}); the file is truncated or "
                        f"damaged: delete it to download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _file(folder: Path, name: str) -> Path:
    """The file as torchvision leaves it: unpacked `name` first, else `name.gz`."""
    plain = folder / name
    return plain if plain.is_file() else folder / f"{name}.gz"


def read_fashion_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from `ROOT/FashionMNIST/raw`: images uint8
    (N, 28, 28), labels uint8 (N,) in 0..9."""
    arrays = {}
    for name in FASHION_MNIST_FILES:
        path = _file(folder, name)
        a = read_idx(path)
        want = 3 if "images" in name else 1
        if a.ndim != want:
            raise DataError(f"{path}: {a.ndim} dimensions, expected {want} "
                            f"({'images' if want == 3 else 'labels'})")
        if want == 1 and a.size and a.max() > 9:
            raise DataError(f"{path}: label {int(a.max())} outside 0..9")
        arrays[name] = (a, path)
    out = []
    for split in ("train", "t10k"):
        (x, xp), (y, yp) = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if len(x) != len(y):
            raise DataError(f"{xp} has {len(x):,} images but {yp} has {len(y):,} labels")
        out += [x, y]
    return out[0], out[1], out[2], out[3]
