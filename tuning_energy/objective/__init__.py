"""The objective contract `function(params, ctx)`, the one energy-metered objective every strategy calls, and `metered()` for a plain Optuna objective."""
