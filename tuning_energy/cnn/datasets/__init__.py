"""The paper's datasets in torchvision's layout, read with numpy alone (no torchvision).

    sources.py   where the files lie under data.root and where they come from (URLs, MD5s)
    download.py  download on first use: verified, atomic, retried, quick to give up
    idx.py       Fashion-MNIST (IDX, gzipped or not)
    cifar.py     CIFAR-10 (the python pickles, read by an unpickler that loads arrays only)

`tuning_energy.cnn.data.load_dataset` puts them together into tensors with a validation split.
"""

from tuning_energy.cnn.datasets.download import ensure
from tuning_energy.cnn.datasets.sources import CIFAR10, FASHION_MNIST, SOURCES, Source

__all__ = ["CIFAR10", "FASHION_MNIST", "SOURCES", "Source", "ensure"]
