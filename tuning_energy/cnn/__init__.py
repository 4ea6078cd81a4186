"""The built-in objective: the paper's CNN family, its training loop, and its datasets."""
