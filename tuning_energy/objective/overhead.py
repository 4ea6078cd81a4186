"""What a trial is charged beside its training: proposing, preparation and storage.

The runner's trial loop is covered by meter windows end to end, so that training +
proposing + storage is everything the study's process spent over its trial loop
(accounting.py; tests/test_accounting_identity.py):

    ...training of trial k | recording trial k (its attrs, Optuna's tell), the loop,
    the budget check, ask, suggest (nested: the sampler's calls), preparation (nested:
    the model build) | training of trial k+1 (nested, with a pruner: its storage writes per report) | ...

- The *proposal window* of trial k+1 opens the moment trial k's training window closes
  (`Objective.begin_proposal`), and closes the moment trial k+1's training window opens.
  Nested in it: the sampler's calls (`MeteredSampler`, with the sampler's `after_trial`
  of trial k, inside Optuna's tell), and the objective's `prepare` (the CNN's model build).
- The *training window* (`energy_j`) is the function's work, less the storage writes of
  each `ctx.report` (Optuna's report and should_prune, each in a nested window) when a
  pruner is on; without one the reported values are written with the trial's attrs when it
  ends, in one transaction (store/trial_writes.py), so they are the next proposal window's.

A trial's accounts (its attrs):

    propose_energy_j, propose_s   the strategy's own computation + the preparation
    setup_energy_j, setup_s       of which building the sampler (the run's first trial)
    prepare_energy_j, prepare_s   of which the preparation (functions with a `prepare`)
    store_energy_j, store_s       the rest of the proposal window (recording the trial
                                  before, Optuna's ask, the parameters: one commit with
                                  these attrs, trial_writes.written_at_once, a worker's
                                  claim) + the report writes
    energy_j                      the training window less the report writes

Building the strategy's sampler (its libraries' imports, its model template:
`search.resumable.import_libraries`) happens before the loop; the runner meters it and
charges it to the run's first proposal (`propose_*` of that trial; metered_sampler.py).
The rest of the start-up (Optuna's, torch's and the data's imports, the CNN's warm-up) is
no trial's: every strategy pays it alike.

A finished trial takes no attrs, so the recording of the run's last trial (its attrs and
tell) is on no trial: the runner stores it on the study (`tail_store_energy_j`,
`tail_store_s`: this process's; with workers, the last one's), and the workers' shared
ledger books it as unattributed (`Objective.end_tail`, shared.py).

A trial killed in training keeps what was written on it: the proposal window's figures
from `propose` (so far), replaced with the whole window's by the heartbeat's partial
writes (`TrialWindowMeter.partial_attrs`), and the training energy so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuning_energy.energy import Measurement, Window
from tuning_energy.search.metered_sampler import SamplerCost


def _sum(values: list[float | None]) -> float | None:
    """None when any part is unknown: never a made-up 0."""
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


@dataclass
class TrialBooks:
    """One trial's proposal window and what was nested in it or in its training window."""

    over: Window | None  # the proposal window (None: run without a proposal)
    own: SamplerCost | None  # the sampler's calls; None: a plain sampler (all proposing)
    prepare: Measurement | None = None
    over_m: Measurement | None = None  # the proposal window, once closed
    reports: list[Measurement] = field(default_factory=list)

    def close(self) -> None:
        """End the proposal window (right before the training window begins)."""
        if self.over is not None and self.over_m is None:
            self.over_m = self.over.meter.end(self.over)

    def attrs(self, reports: bool = True) -> dict[str, Any]:
        """propose_*, prepare_*, store_* (see the module doc); before `close`, the proposal
        window so far (written at once, so that a trial killed in training keeps them).
        reports=False: without the report writes (a partial write, whose energy so far
        holds them)."""
        over = self.over_m
        if over is None and self.over is not None:
            over = self.over.meter.peek(self.over)
        done = self.reports if reports else []
        rep_s = sum(m.duration_s for m in done)
        rep_j = _sum([m.energy_j for m in done])
        prep_s = self.prepare.duration_s if self.prepare is not None else 0.0
        prep_j = self.prepare.energy_j if self.prepare is not None else 0.0
        out: dict[str, Any] = {}
        if self.prepare is not None:
            out.update(prepare_s=prep_s, prepare_energy_j=prep_j)
        if over is None:  # no proposal window: the report writes only
            if done:
                out.update(store_s=rep_s, store_energy_j=rep_j)
            return out
        if self.own is None:  # a plain sampler: the proposal window is all proposing
            out.update(propose_s=over.duration_s, propose_energy_j=over.energy_j)
            if done:
                out.update(store_s=rep_s, store_energy_j=rep_j)
            return out
        own_s, own_j = self.own.duration_s, self.own.energy_j
        # nested in the window: the sampler's calls, not its construction (before it)
        in_s, out_j = own_s - self.own.outside_s, self.own.outside_j
        in_j = None if own_j is None or out_j is None else own_j - out_j
        parts = [over.energy_j, in_j, prep_j, rep_j]
        if self.own.outside_s:
            out.update(setup_s=self.own.outside_s, setup_energy_j=out_j)
        out.update(
            propose_s=own_s + prep_s, propose_energy_j=_sum([own_j, prep_j]),
            store_s=over.duration_s - in_s - prep_s + rep_s,
            store_energy_j=None if _sum(parts) is None
            else over.energy_j - in_j - prep_j + rep_j)  # type: ignore[operator]
        return out
