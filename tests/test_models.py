import pytest
import torch
from torch import nn

from tuning_energy.cnn.models import ModelSpec, build_model, count_params, flops_per_sample


@pytest.mark.parametrize("n_conv", [0, 1, 2, 3])
@pytest.mark.parametrize("n_linear", [1, 2, 3])
@pytest.mark.parametrize("relu", [False, True])
def test_every_depth_builds_and_classifies_8x8_digits(n_conv, n_linear, relu):
    model = build_model(ModelSpec(n_conv, n_linear, relu), (1, 8, 8), 10)
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8 * 3**i for i in range(n_conv)]
    assert sum(isinstance(m, nn.Linear) for m in model) == n_linear + 1
    assert any(isinstance(m, nn.ReLU) for m in model) == relu


def test_flops_counted_by_hand_for_one_conv_block():
    # conv 1->8, 3x3 same on 8x8: 2*1*9*8*64 + 8*64 (bias) = 9216 + 512
    # batchnorm: 2*8*64 = 1024; relu: 8*64 = 512; pool to 4x4: 3*8*16 = 384
    # linear 128->128: 2*128*128 + 128; relu: 128; classifier 128->10: 2*128*10 + 10
    model = build_model(ModelSpec(1, 1, True), (1, 8, 8), 10)
    expected = 9216 + 512 + 1024 + 512 + 384 + (32768 + 128) + 128 + (2560 + 10)
    assert flops_per_sample(model, (1, 8, 8)) == expected


def test_conv_depth_dominates_flops_and_params_grow():
    shallow = build_model(ModelSpec(1, 1, True), (1, 8, 8), 10)
    deep = build_model(ModelSpec(3, 1, True), (1, 8, 8), 10)
    assert flops_per_sample(deep, (1, 8, 8)) > 2 * flops_per_sample(shallow, (1, 8, 8))
    assert count_params(deep) > count_params(shallow)


@pytest.mark.parametrize("n_conv", [0, 1, 2, 3])
@pytest.mark.parametrize("relu", [False, True])
def test_every_depth_builds_in_1d_and_classifies_mnist1d_signals(n_conv, relu):
    model = build_model(ModelSpec(n_conv, 2, relu), (1, 40), 10)
    assert model(torch.zeros(5, 1, 40)).shape == (5, 10)
    convs = [m for m in model if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [8 * 3**i for i in range(n_conv)]
    assert not any(isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.MaxPool2d) for m in model)
    assert sum(isinstance(m, nn.MaxPool1d) for m in model) == n_conv  # 40 -> 20 -> 10 -> 5
    assert sum(isinstance(m, nn.Linear) for m in model) == 3
    assert any(isinstance(m, nn.ReLU) for m in model) == relu


def test_1d_flops_counted_by_hand_for_one_conv_block():
    # conv 1->8, kernel 3 same on 40: 2*1*3*8*40 + 8*40 (bias) = 1920 + 320
    # batchnorm: 2*8*40 = 640; relu: 8*40 = 320; pool to 20: 1 comparison * 8*20 = 160
    # linear 160->128: 2*160*128 + 128; relu: 128; classifier 128->10: 2*128*10 + 10
    model = build_model(ModelSpec(1, 1, True), (1, 40), 10)
    expected = 1920 + 320 + 640 + 320 + 160 + (40960 + 128) + 128 + (2560 + 10)
    assert flops_per_sample(model, (1, 40)) == expected


def test_1d_conv_depth_dominates_flops():
    flops = [flops_per_sample(build_model(ModelSpec(n, 1, True), (1, 40), 10), (1, 40))
             for n in range(4)]
    assert flops == sorted(flops) and flops[3] > 2 * flops[1]


def test_an_input_that_is_neither_a_signal_nor_an_image_is_refused():
    with pytest.raises(ValueError, match=r"\(C, L\) for 1-D signals or \(C, H, W\)"):
        build_model(ModelSpec(1, 1, True), (40,), 10)
