from pathlib import Path

import pytest

from tuning_energy.config import load_config, parse_config
from tuning_energy.errors import ConfigError, TuningEnergyError

from .conftest import tiny_doc

REPO = Path(__file__).resolve().parents[1]


def test_default_config_parses_with_the_documented_space():
    cfg = load_config(REPO / "studies" / "default.toml")
    assert cfg.name == "default"
    assert cfg.data.dataset == "digits"
    space = {p.name: p for p in cfg.search_space}
    assert list(space) == ["n_conv", "n_linear", "relu", "lr", "beta1", "beta2"]
    assert (space["n_conv"].type, space["n_conv"].low, space["n_conv"].high) == ("int", 0, 3)
    assert space["lr"].log and space["lr"].low == 1e-4 and space["lr"].high == 1e-1
    assert space["relu"].choices == (False, True)
    assert cfg.train.torch_threads == 1


def test_config_is_frozen_and_serialisable():
    cfg = parse_config(tiny_doc())
    with pytest.raises(AttributeError):
        cfg.name = "other"  # type: ignore[misc]
    d = cfg.to_dict()
    assert d["search_space"][0]["name"] == "n_conv"
    assert d["budget"]["n_trials"] == 3


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (tiny_doc(colour="red"), "colour"),
        (tiny_doc(train={"epochs": "ten"}), "train.epochs"),
        (tiny_doc(train={"epochs": 0}), "train.epochs"),
        (tiny_doc(train={"bogus": 1}), "train.bogus"),
        (tiny_doc(data={"dataset": "mnist"}), "'digits', 'mnist1d', 'fashion-mnist', 'cifar10'"),
        (tiny_doc(meter={"kind": "wattmeter"}), "meter.kind"),
        (tiny_doc(budget={"n_trials": -1}), "budget.n_trials"),
        (tiny_doc(strategy={"bayes": {"acq_func": "UCB"}}), "strategy.bayes.acq_func"),
        (tiny_doc(search_space={"lr": {"type": "float", "low": 0.1, "high": 0.01}}),
         "search_space.lr: low = 0.1 > high = 0.01"),
        (tiny_doc(search_space={"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}),
         "search_space.lr.low"),
        (tiny_doc(search_space={"depth": {"type": "int", "low": 0, "high": 2}}),
         "search_space.depth"),
        (tiny_doc(search_space={"n_conv": {"type": "float", "low": 0, "high": 2}}),
         "search_space.n_conv.type"),
        (tiny_doc(search_space={"lr": {"type": "real", "low": 0, "high": 2}}),
         "'float', 'int', 'bool', 'categorical'"),
        (tiny_doc(search_space={"lr": {"type": "float", "low": 0.1}}), "search_space.lr.high"),
        (tiny_doc(fixed={"lr": 0.1}), "fixed.lr"),
        (tiny_doc(fixed={"n_conv": 1.5}), "fixed.n_conv"),
        # A categorical's choices are values of the parameter, of its type.
        (tiny_doc(search_space={"n_conv": {"type": "categorical", "choices": [1, 2.5]}}),
         "search_space.n_conv.choices[1] = 2.5: n_conv must be an integer"),
        (tiny_doc(search_space={"n_conv": {"type": "categorical", "choices": [True]}}),
         "search_space.n_conv.choices[0] = True"),
        (tiny_doc(search_space={"relu": {"type": "categorical", "choices": [True, "no"]}}),
         "search_space.relu.choices[1] = 'no': relu must be a boolean"),
        (tiny_doc(search_space={"lr": {"type": "categorical", "choices": [0.01, "big"]}}),
         "search_space.lr.choices[1]"),
    ],
)
def test_bad_config_names_the_key_and_allowed_values(doc, needle):
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert needle in str(err.value)
    assert isinstance(err.value, TuningEnergyError)


def test_unknown_key_lists_the_allowed_keys():
    with pytest.raises(ConfigError, match="allowed keys are .*epochs"):
        parse_config(tiny_doc(train={"epoch": 3}))


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_a_categorical_of_ints_is_accepted_for_an_int_parameter():
    cfg = parse_config(tiny_doc(search_space={"n_conv": {"type": "categorical",
                                                         "choices": [0, 2]}}))
    assert [p.choices for p in cfg.search_space if p.name == "n_conv"] == [(0, 2)]


def test_the_torch_floor_is_the_first_release_with_fused_adam_on_the_cpu():
    """train.fit uses torch.optim.Adam(fused=True) on CPU tensors: PyTorch 2.4 added the CPU
    kernel (pytorch#123074); 2.3 raises for CPU parameters."""
    import tomllib
    import torch
    from packaging.requirements import Requirement

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(Requirement(d) for d in deps if Requirement(d).name == "torch")
    assert not torch_req.specifier.contains("2.3.1")
    assert torch_req.specifier.contains("2.4.0")
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    torch.optim.Adam([p], fused=True).step()  # what the floor guarantees
    assert p.detach().lt(1).all()
