"""MNIST-1D is generated here by the mnist1d package, offline and the same every time."""

from __future__ import annotations

import random
import socket

import numpy as np
import pytest
import torch

from tuning_energy.cnn.data import load_dataset
from tuning_energy.cnn.datasets.mnist1d import make_mnist1d
from tuning_energy.cnn.models import ModelSpec, build_model
from tuning_energy.cnn.train import Hyper, fit
from tuning_energy.config import DataConfig


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt (a download) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network used while generating MNIST-1D: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_generated_offline_and_identical_each_time(no_network):
    a, b = make_mnist1d(), make_mnist1d()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    x_train, y_train, x_test, y_test = a
    assert x_train.shape == (4000, 1, 40) and x_test.shape == (1000, 1, 40)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert set(np.unique(y_train)) == set(range(10)) and set(np.unique(y_test)) == set(range(10))


def test_generation_leaves_the_global_random_streams_alone(no_network):
    np.random.seed(7)
    random.seed(7)
    expected = (np.random.rand(), random.random())
    np.random.seed(7)
    random.seed(7)
    make_mnist1d()
    assert (np.random.rand(), random.random()) == expected


def test_dataset_is_signals_that_a_1d_cnn_learns(no_network):
    data = load_dataset(DataConfig(dataset="mnist1d"))
    assert data.input_shape == (1, 40)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (3000, 1000, 1000)
    torch.manual_seed(0)
    model = build_model(ModelSpec(2, 1, True), data.input_shape, data.n_classes)
    result = fit(model, data.x_train, data.y_train, data.x_val, data.y_val,
                 Hyper(lr=3e-3, beta1=0.9, beta2=0.999, epochs=2, batch_size=128),
                 torch.Generator().manual_seed(0), test=(data.x_test, data.y_test))
    assert result.accuracy > 0.3  # chance is 0.1
    assert result.test_accuracy is not None
