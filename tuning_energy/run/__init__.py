"""Running studies: the runner's trial loop, its trial sources (one process or workers), the worker pool and ledger, comparisons, the summary a run prints."""
