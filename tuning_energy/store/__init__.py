"""Optuna stores: the URL, opening a store, retries, which run wrote each trial."""
