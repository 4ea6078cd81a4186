"""`from tuning_energy.samplers import SkoptSampler`: the documented path to our samplers,
which live in search/samplers.py."""

from tuning_energy.search.samplers import *  # noqa: F401,F403
