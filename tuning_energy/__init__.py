"""tuning-energy: what did this hyperparameter search cost in energy?"""

__version__ = "0.1.0"
