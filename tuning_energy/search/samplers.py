"""Our samplers, ordinary Optuna samplers that work in any study:

    from tuning_energy.search.samplers import SkoptSampler
    study = optuna.create_study(direction="maximize", sampler=SkoptSampler(seed=0))

- `SkoptSampler` (bayes.py): scikit-optimize's Gaussian-process `Optimizer` (the `bayes`
  strategy; `cost_attr="energy_j"` gives `bayes-eips`).
- `ResumableRandomSampler`, `ResumableTPESampler`, `ResumableGPSampler` (resumable.py):
  Optuna's, reseeded from (seed, trial number) before each trial, so that a resumed study
  continues with new points and stays reproducible.
"""

from tuning_energy.search.bayes import (  # noqa: F401
    SkoptSampler,
    fitted_hyperparameters,
    observed_value,
)
from tuning_energy.search.resumable import (  # noqa: F401
    ResumableGPSampler,
    ResumableRandomSampler,
    ResumableTPESampler,
    derive_seed,
    import_libraries,
)
from tuning_energy.search.skopt_space import (  # noqa: F401 (their home before)
    _decode,
    _encode,
    _encoded,
    _step_count,
    fast_acquisition,
    fast_transform,
    skopt_dimension,
)
