"""A comparison: every strategy for every seed of one config, into one store.

Studies run in one process, seeds outer and strategies inner, so that no strategy always
runs first or last on a machine that warms up or heats up. Before the first study a short
unmetered warm-up fit runs: the first training in a process pays one-off costs (torch's
kernel selection, allocator, thread pool) that would otherwise be charged to whichever
trial happens to be first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import torch

from .config import StudyConfig
from .data import load_dataset
from .errors import ConfigError
from .models import ModelSpec, build_model
from .runner import StudySummary, resolve_device, run_study, set_threads
from .strategies import STRATEGIES, check_strategy
from .train import Hyper, fit


def warm_up(config: StudyConfig) -> float:
    """One unmetered epoch of the deepest model in the space; returns its seconds."""
    t0 = time.perf_counter()
    set_threads(config.train.torch_threads)
    device = resolve_device(config.train.device)
    data = load_dataset(config.data).to(device)
    params = config.param_values({})
    for p in config.search_space:
        if p.type == "int" and p.name in ("n_conv", "n_linear"):
            params[p.name] = int(p.high)
        elif p.type in ("bool", "categorical"):
            params[p.name] = p.choices[-1]
        elif p.type in ("float", "int"):
            params[p.name] = p.low
    spec = ModelSpec.from_params(params)
    torch.manual_seed(0)
    model = build_model(spec, data.input_shape, data.n_classes).to(device)
    hyper = Hyper(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, epochs=1,
                  batch_size=config.train.batch_size)
    fit(model, data.x_train, data.y_train, data.x_val, data.y_val, hyper,
        torch.Generator().manual_seed(0))
    return time.perf_counter() - t0


def run_comparison(config: StudyConfig, seeds: int, strategies: Sequence[str] | None = None,
                   storage_url: str = "sqlite:///studies/energy.db", progress: bool = True,
                   out=None) -> list[StudySummary]:
    """Run (or resume) `{config.name}-{strategy}-s{seed}` for seeds 0..seeds-1."""
    out = out or sys.stdout
    names = list(strategies) if strategies else list(STRATEGIES)
    for s in names:
        check_strategy(s)
    if seeds <= 0:
        raise ConfigError(f"--seeds = {seeds}: must be > 0")
    print(f"warm-up (not metered): {warm_up(config):.1f} s", file=out)
    summaries = []
    for seed in range(seeds):
        for strategy in names:
            summary = run_study(config, strategy, seed, storage_url, progress=progress, out=out)
            summaries.append(summary)
            if summary.interrupted:
                return summaries
    return summaries
