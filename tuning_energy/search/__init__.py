"""How the next trial's parameters are chosen: strategies (each returns an Optuna sampler), our samplers, the skopt GP, the cost-aware strategies."""
