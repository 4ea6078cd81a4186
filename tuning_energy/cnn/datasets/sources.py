"""Where each dataset's files live (torchvision's layout) and where they come from.

The URLs and MD5 checksums are the ones torchvision publishes
(`torchvision/datasets/mnist.py: FashionMNIST.resources`, `cifar.py: CIFAR10`), so that a
folder torchvision downloaded works here and the other way round:

    ROOT/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}

A `Source` is plain data: tests build one with their own base URL and checksums and send
it through the same download code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """One dataset's files, where they go under the root and where to download them.

    folder: the files' folder relative to the root (torchvision's layout).
    files: file name -> published MD5 of the file as it lies in `folder` (None: not
        published; the file is checked by its format when read).
    archive: the file to download (a tarball holding `folder`), or None when the files are
        downloaded one by one, each as `<name>.gz` with MD5 `downloads[<name>.gz]`.
    downloads: downloaded file name -> published MD5.
    base_url: downloads come from base_url + file name.
    homepage: where a person gets the files by hand.
    """

    dataset: str
    folder: str
    files: dict[str, str | None]
    downloads: dict[str, str]
    base_url: str
    homepage: str
    archive: str | None = None
    gzipped_ok: bool = False  # a file may lie as <name>.gz instead of <name>

    def replace(self, **changes) -> Source:
        return dataclasses.replace(self, **changes)

    def url(self, download_name: str) -> str:
        return self.base_url.rstrip("/") + "/" + download_name

    def expected_names(self) -> list[str]:
        """The file names a person must put in `folder`, as a message shows them."""
        if self.gzipped_ok:
            return [f"{n}.gz" for n in self.files]
        return list(self.files)

    def missing(self, root: Path) -> list[str]:
        """The files of `folder` under `root` that are not there (a .gz counts where allowed)."""
        folder = root / self.folder
        return [n for n in self.files
                if not (folder / n).is_file()
                and not (self.gzipped_ok and (folder / f"{n}.gz").is_file())]

    def how_to_get(self, root: Path) -> str:
        """The sentence an error ends with: which files, where, from where."""
        where = root / self.folder
        if self.archive is not None:
            fetch = (f"download {self.url(self.archive)} (MD5 {self.downloads[self.archive]}), "
                     f"unpack it in {root} (it holds the folder {self.folder}/)")
        else:
            fetch = f"download them from {self.base_url} (see {self.homepage})"
        gz = " (gzipped .gz as downloaded, or unpacked without .gz)" if self.gzipped_ok else ""
        return (f"it expects {', '.join(self.expected_names())}{gz} in {where}; {fetch}, or "
                f"set data.root to a folder that holds {self.folder}/ as torchvision leaves "
                f"it (torchvision.datasets.{_TORCHVISION[self.dataset]}(root, download=True) "
                f"writes the same files)")


_TORCHVISION = {"fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}

FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

FASHION_MNIST = Source(
    dataset="fashion-mnist",
    folder="FashionMNIST/raw",
    files=dict.fromkeys(FASHION_MNIST_FILES),
    downloads={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    gzipped_ok=True,
)

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))

CIFAR10 = Source(
    dataset="cifar10",
    folder="cifar-10-batches-py",
    files={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    downloads={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    base_url="https://www.cs.toronto.edu/~kriz/",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    archive="cifar-10-python.tar.gz",
)

SOURCES = {s.dataset: s for s in (FASHION_MNIST, CIFAR10)}
