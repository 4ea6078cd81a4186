"""Optuna's RDBStorage with its hot read and write paths in SQLAlchemy Core.

A study on an RDB store reads trials through `get_trial` (each `study.ask` and `study.tell`)
and `_get_trials` (Optuna's cached storage, behind every study: the unfinished trials, for
the sampler and for each `ask`), and writes each parameter with `_set_trial_param`. Optuna
runs these through the ORM: a query per table with five `selectinload`s, a mapped object
per row, then a FrozenTrial built from the objects; ~1-2 ms per call on SQLite, ~2% of the
default study's charged energy. `FastRDBStorage` runs one Core query per table (joined to
`trials` on the same filter Optuna uses) and builds the FrozenTrial from the rows as
`RDBStorage._build_frozen_trial_from_trial_model` does; `_set_trial_param` reads the
trial's state and study with one Core query and inserts the row with Core.

The contract: the same FrozenTrials (numbers, states, values with inf, intermediate values
with inf and nan, params and distributions, attrs, datetimes, trial ids) and the same
errors as RDBStorage's (tests/test_fast_rdb.py; Optuna's own storage suite runs on it:
`make test-optuna-storages`). Everything else is RDBStorage's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Container, Iterable
from typing import Any

import optuna
from optuna import distributions
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

_logger = optuna.logging.get_logger(__name__)


def _tables():
    from optuna.storages._rdb import models

    return models


class FastRDBStorage(RDBStorage):
    """RDBStorage, with `get_trial`, `_get_trials` and `_set_trial_param` in Core."""

    def get_trial(self, trial_id: int) -> FrozenTrial:
        from optuna.storages._rdb.storage import _create_scoped_session

        models = _tables()
        with _create_scoped_session(self.scoped_session) as session:
            trials = _read_trials(session, [models.TrialModel.__table__.c.trial_id == trial_id])
        if not trials:
            raise KeyError(models.NOT_FOUND_MSG)
        return trials[0]

    def _get_trials(self, study_id: int, states: Container[TrialState] | None,
                    included_trial_ids: set[int], trial_id_greater_than: int,
                    ) -> list[FrozenTrial]:
        import sqlalchemy as sa
        from optuna.storages._rdb.storage import _create_scoped_session

        models = _tables()
        trials_t = models.TrialModel.__table__
        studies_t = models.StudyModel.__table__
        included = {i for i in included_trial_ids if i <= trial_id_greater_than}
        with _create_scoped_session(self.scoped_session) as session:
            if session.execute(sa.select(studies_t.c.study_id).where(
                    studies_t.c.study_id == study_id)).first() is None:
                raise KeyError(models.NOT_FOUND_MSG)
            where = [trials_t.c.study_id == study_id]
            if states is not None:
                assert isinstance(states, Iterable)
                where.append(trials_t.c.state.in_(states))
            if included and trial_id_greater_than > -1:
                ids = [sa.or_(trials_t.c.trial_id.in_(included),
                              trials_t.c.trial_id > trial_id_greater_than)]
            elif trial_id_greater_than > -1:
                ids = [trials_t.c.trial_id > trial_id_greater_than]
            else:
                ids = []
            try:
                return _read_trials(session, where + ids)
            except sa.exc.OperationalError as e:
                # As RDBStorage: likely too many variables in the IN clause.
                _logger.warning(f"Caught an error from sqlalchemy: {e!s}. "
                                "Falling back to a slower alternative.")
                session.rollback()
                return [t for t in _read_trials(session, where)
                        if t._trial_id in included or t._trial_id > trial_id_greater_than]

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: distributions.BaseDistribution,
                         previous_distribution: distributions.BaseDistribution | None,
                         ) -> None:
        import sqlalchemy as sa
        from optuna.storages._rdb.storage import _create_scoped_session

        models = _tables()
        trials_t = models.TrialModel.__table__
        params_t = models.TrialParamModel.__table__
        with _create_scoped_session(self.scoped_session, True) as session:
            row = session.execute(sa.select(trials_t.c.study_id, trials_t.c.state).where(
                trials_t.c.trial_id == trial_id)).first()
            if row is None:
                raise KeyError(models.NOT_FOUND_MSG)
            self.check_trial_is_updatable(trial_id, row.state)
            if previous_distribution is None:
                previous = session.execute(
                    sa.select(params_t.c.distribution_json)
                    .join(trials_t, trials_t.c.trial_id == params_t.c.trial_id)
                    .where(trials_t.c.study_id == row.study_id,
                           params_t.c.param_name == param_name)
                    .limit(1)).scalar()
                if previous is not None:
                    previous_distribution = distributions.json_to_distribution(previous)
            if previous_distribution is not None:
                distributions.check_distribution_compatibility(previous_distribution,
                                                               distribution)
            session.execute(params_t.insert().values(
                trial_id=trial_id, param_name=param_name, param_value=param_value_internal,
                distribution_json=distributions.distribution_to_json(distribution)))


def _read_trials(session: Any, where: list) -> list[FrozenTrial]:
    """The trials matching `where` (on Optuna's `trials` table), by trial id, built as
    RDBStorage._build_frozen_trial_from_trial_model builds them: one query per table."""
    import sqlalchemy as sa

    models = _tables()
    trials_t = models.TrialModel.__table__
    rows = session.execute(
        sa.select(trials_t.c.trial_id, trials_t.c.number, trials_t.c.state,
                  trials_t.c.datetime_start, trials_t.c.datetime_complete)
        .where(*where).order_by(trials_t.c.trial_id)).all()
    if not rows:
        return []

    def children(table, *columns, order=None):
        """{trial_id: [row, ...]} of a child table, for the trials matching `where`."""
        query = sa.select(table.c.trial_id, *[table.c[c] for c in columns]).join(
            trials_t, trials_t.c.trial_id == table.c.trial_id).where(*where)
        if order is not None:
            query = query.order_by(table.c[order])
        out: dict[int, list] = defaultdict(list)
        for r in session.execute(query):
            out[r[0]].append(r)
        return out

    value_model = models.TrialValueModel
    step_model = models.TrialIntermediateValueModel
    params = children(models.TrialParamModel.__table__, "param_name", "param_value",
                      "distribution_json", order="param_id")
    values = children(value_model.__table__, "objective", "value", "value_type")
    user = children(models.TrialUserAttributeModel.__table__, "key", "value_json")
    system = children(models.TrialSystemAttributeModel.__table__, "key", "value_json")
    steps = children(step_model.__table__, "step", "intermediate_value",
                     "intermediate_value_type")

    trials = []
    for trial_id, number, state, start, complete in rows:
        trial_values: list[float] | None = None
        if values.get(trial_id):
            trial_values = [0.0] * len(values[trial_id])
            for _, objective, value, kind in values[trial_id]:
                trial_values[objective] = value_model.stored_repr_to_value(value, kind)
        dists = {name: distributions.json_to_distribution(dist_json)
                 for _, name, _, dist_json in params.get(trial_id, ())}
        trials.append(FrozenTrial(
            number=number, state=state, value=None, values=trial_values,
            datetime_start=start, datetime_complete=complete,
            params={name: dists[name].to_external_repr(value)
                    for _, name, value, _ in params.get(trial_id, ())},
            distributions=dists,
            user_attrs={key: json.loads(v) for _, key, v in user.get(trial_id, ())},
            system_attrs={key: json.loads(v) for _, key, v in system.get(trial_id, ())},
            intermediate_values={
                step: step_model.stored_repr_to_intermediate_value(value, kind)
                for _, step, value, kind in steps.get(trial_id, ())},
            trial_id=trial_id))
    return trials
