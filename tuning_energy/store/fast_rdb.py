"""Optuna's RDBStorage with its hot read and write paths in SQLAlchemy Core.

A study on an RDB store reads trials through `get_trial` (each `study.ask` and `study.tell`)
and `_get_trials` (Optuna's cached storage, behind every study: the unfinished trials, for
the sampler and for each `ask`), and writes each parameter with `_set_trial_param`. Optuna
runs these through the ORM: a query built per call, five `selectinload`s, a mapped object
per row, then a FrozenTrial built from the objects, several times per trial.
`FastRDBStorage` reads them with two Core statements, each built once with bound
parameters: the trials on the filter Optuna uses (a study's existence checked in the same
query), then their five child tables in one UNION ALL (`_statements`), and builds the
FrozenTrial from the rows as `RDBStorage._build_frozen_trial_from_trial_model` does;
`_set_trial_param` reads the trial's state and study with one Core query and inserts the
row with Core. Each `study.tell` (`set_trial_state_values`) and `study.ask`
(`_create_new_trial` without a template trial) writes in Core too:
store/fast_rdb_writes.py, with RDBStorage's locks. Each call is one `transaction`
(store/transaction.py): on SQLite, the statements run on sqlite3's own connection unless
something watches the engine (no ORM session, no SQLAlchemy execute per statement).
Datetimes are read as the installed Optuna reads them (`fast_rdb_writes.read_datetime`).

The contract: the same FrozenTrials (numbers, states, values with inf, intermediate values
with inf and nan, params and distributions, attrs, datetimes, trial ids), the same stored
rows and the same errors as RDBStorage's (tests/test_fast_rdb.py, test_fast_rdb_writes.py;
Optuna's own storage suite runs on it: `make test-optuna-storages`). Everything else is
RDBStorage's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Container, Iterable, Sequence
from typing import Any

import optuna
from optuna import distributions
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.store import fast_rdb_writes
from tuning_energy.store.fast_rdb_writes import _models, read_datetime
from tuning_energy.store.transaction import transaction

_logger = optuna.logging.get_logger(__name__)


class FastRDBStorage(RDBStorage):
    """RDBStorage, with `get_trial`, `_get_trials`, `(_)set_trial_param`,
    `set_trial_state_values` and `_create_new_trial` in Core."""

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        return fast_rdb_writes.set_trial_state_values(self, trial_id, state, values)

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None,
                          ) -> FrozenTrial:
        if template_trial is not None:
            return super()._create_new_trial(study_id, template_trial)
        return fast_rdb_writes.create_new_trial(self, study_id)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with transaction(self, write=False) as conn:
            trials = _read_trials(conn, ("trial",), {"trial_id": trial_id})
        if not trials:
            raise KeyError(_models().NOT_FOUND_MSG)
        return trials[0]

    def _get_trials(self, study_id: int, states: Container[TrialState] | None,
                    included_trial_ids: set[int], trial_id_greater_than: int,
                    ) -> list[FrozenTrial]:
        import sqlalchemy as sa

        included = {i for i in included_trial_ids if i <= trial_id_greater_than}
        params: dict[str, Any] = {"study_id": study_id}
        if states is not None:
            assert isinstance(states, Iterable)
            params["states"] = list(states)
        if included and trial_id_greater_than > -1:
            ids = "included_or_above"
            params.update(included=sorted(included), above=trial_id_greater_than)
        elif trial_id_greater_than > -1:
            ids, params["above"] = "above", trial_id_greater_than
        else:
            ids = "all"
        with transaction(self, write=False) as conn:
            try:
                return _read_trials(conn, ("study", states is not None, ids), params)
            except sa.exc.OperationalError as e:
                # As RDBStorage: likely too many variables in the IN clause.
                _logger.warning(f"Caught an error from sqlalchemy: {e!s}. "
                                "Falling back to a slower alternative.")
                conn.rollback()
                return [t for t in _read_trials(conn, ("study", states is not None, "all"),
                                                params)
                        if t._trial_id in included or t._trial_id > trial_id_greater_than]

    def hold(self, trial_id: int, batch: Any) -> None:
        """Hold the parameters this thread sets on `trial_id` in `batch.params` (written
        later by whoever holds them: store/trial_writes.py); `batch` None: stop holding."""
        held = self.__dict__.setdefault("_held", {})
        if batch is None:
            held.pop(trial_id, None)
        else:
            held[trial_id] = (threading.get_ident(), batch)

    def held(self, trial_id: int) -> Any:
        """The batch holding this thread's writes to `trial_id`, or None."""
        thread, batch = self.__dict__.get("_held", {}).get(trial_id, (None, None))
        return batch if thread == threading.get_ident() else None

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: distributions.BaseDistribution) -> None:
        # RDBStorage's since Optuna 5; before it, Optuna's cached storage called this one
        # (an ORM path with the same check): both go to the Core write.
        self._set_trial_param(trial_id, param_name, param_value_internal, distribution, None)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: distributions.BaseDistribution,
                         previous_distribution: distributions.BaseDistribution | None,
                         ) -> None:
        held = self.held(trial_id)
        if held is not None:  # written with the trial's attrs (store/trial_writes.py); its
            # distribution checked now, as Optuna checks it, so that a refused one fails
            # the suggest (and Optuna's cache never keeps it)
            if previous_distribution is None:
                with transaction(self, write=False) as conn:
                    row = updatable_row(self, conn, trial_id)
                    check_param(conn, row[0], param_name, distribution, None)
            else:
                check_param(None, None, param_name, distribution, previous_distribution)
            held.params.append(param_row(trial_id, param_name, param_value_internal,
                                         distribution))
            return
        with transaction(self, ignore_integrity_error=True) as conn:
            row = updatable_row(self, conn, trial_id)
            check_param(conn, row[0], param_name, distribution, previous_distribution)
            conn.run(_statement("add_param"), param_row(
                trial_id, param_name, param_value_internal, distribution))


def updatable_row(storage: RDBStorage, conn: Any, trial_id: int) -> Any:
    """The trial's (study_id, state) row on `conn` (a `transaction` (store/transaction.py)'s);
    KeyError when there is none, Optuna's error (`storage.check_trial_is_updatable`) when
    it is finished."""
    row = conn.first(_statement("trial"), {"trial_id": trial_id})
    if row is None:
        raise KeyError(_models().NOT_FOUND_MSG)
    storage.check_trial_is_updatable(trial_id, row[1])
    return row


def check_param(conn: Any, study_id: int | None, name: str,
                distribution: distributions.BaseDistribution,
                previous: distributions.BaseDistribution | None) -> None:
    """Optuna's check of a parameter's distribution: compatible with `previous` (what the
    cached storage knows), else with the first one stored for `name` in the study."""
    if previous is None:
        row = conn.first(_statement("distribution"), {"study_id": study_id,
                                                      "param_name": name})
        stored = None if row is None else row[0]
        previous = None if stored is None else distributions.json_to_distribution(stored)
    if previous is not None:
        distributions.check_distribution_compatibility(previous, distribution)


def param_row(trial_id: int, name: str, value: float,
              distribution: distributions.BaseDistribution) -> dict[str, Any]:
    """A trial_params row."""
    return {"trial_id": trial_id, "param_name": name, "param_value": value,
            "distribution_json": distributions.distribution_to_json(distribution)}


def _statement(name: str) -> Any:
    """The statements of FastRDBStorage's own checks and writes, built once: "trial"
    (:trial_id's study and state), "distribution" (the first stored distribution of
    :param_name in :study_id), "add_param" (a trial_params row). (A study's existence is
    checked in `_statements`' trials query.)"""
    if name in _STATEMENTS:
        return _STATEMENTS[name]
    import sqlalchemy as sa

    models = _models()
    t, p = models.TrialModel.__table__, models.TrialParamModel.__table__
    _STATEMENTS[name] = {
        "trial": lambda: sa.select(t.c.study_id, t.c.state).where(
            t.c.trial_id == sa.bindparam("trial_id")),
        "distribution": lambda: sa.select(p.c.distribution_json)
        .join(t, t.c.trial_id == p.c.trial_id)
        .where(t.c.study_id == sa.bindparam("study_id"),
               p.c.param_name == sa.bindparam("param_name")).limit(1),
        "add_param": lambda: p.insert(),
    }[name]()
    return _STATEMENTS[name]


#: Statements built once (building and keying a statement costs about as much as running
#: it): `_statement`'s by name, `_statements`' by filter shape.
_STATEMENTS: dict[Any, Any] = {}

#: The child tables, in the tag order of `_statements`' union: (model, its primary key,
#: its integer key, its text key, its float, its text value); None: no such column.
_CHILDREN = (
    ("TrialParamModel", "param_id", None, "param_name", "param_value", "distribution_json"),
    ("TrialValueModel", "trial_value_id", "objective", None, "value", "value_type"),
    ("TrialUserAttributeModel", "trial_user_attribute_id", None, "key", None, "value_json"),
    ("TrialSystemAttributeModel", "trial_system_attribute_id", None, "key", None,
     "value_json"),
    ("TrialIntermediateValueModel", "trial_intermediate_value_id", "step", None,
     "intermediate_value", "intermediate_value_type"),
)
PARAMS, VALUES, USER, SYSTEM, STEPS = range(len(_CHILDREN))


def _statements(shape: tuple) -> tuple:
    """The trials query and the child tables' query for a filter shape: ("trial",) one
    trial (:trial_id); ("study", states?, ids) a study's trials (:study_id, :states,
    :included, :above), ids one of "all", "above", "included_or_above".

    The study's trials come from `studies` LEFT JOIN `trials`: no row, no such study
    (Optuna's KeyError), a row with a NULL trial id, a study without such trials. The five
    child tables come in one UNION ALL, one row per record: (tag = its table's index in
    `_CHILDREN`, trial_id, primary key, integer key, text key, float, text value), in the
    database's order (Optuna's has no ORDER BY either; the parameters are sorted by their
    id afterwards, as Optuna sorts them); a study's trials filter is a CTE, its bound
    parameters once in the statement (SQLite's limit on them is reached as by Optuna's
    own query). Enums are cast to text (PostgreSQL stores them in enum types) and read
    back by name."""
    if shape in _STATEMENTS:
        return _STATEMENTS[shape]
    import sqlalchemy as sa

    models = _models()
    t = models.TrialModel.__table__
    columns = (t.c.trial_id, t.c.number, t.c.state, t.c.datetime_start, t.c.datetime_complete)
    if shape[0] == "trial":
        trials = sa.select(*columns).where(t.c.trial_id == sa.bindparam("trial_id"))

        def of_trials(table: Any) -> Any:
            return table.c.trial_id == sa.bindparam("trial_id")
    else:
        _, states, ids = shape
        where = [t.c.study_id == sa.bindparam("study_id")]
        if states:
            where.append(t.c.state.in_(sa.bindparam("states", expanding=True)))
        if ids == "above":
            where.append(t.c.trial_id > sa.bindparam("above"))
        elif ids == "included_or_above":
            where.append(sa.or_(t.c.trial_id.in_(sa.bindparam("included", expanding=True)),
                                t.c.trial_id > sa.bindparam("above")))
        studies = models.StudyModel.__table__
        trials = sa.select(*columns).select_from(studies.outerjoin(
            t, sa.and_(t.c.study_id == studies.c.study_id, *where[1:]))).where(
            studies.c.study_id == sa.bindparam("study_id")).order_by(t.c.trial_id)
        ids_cte = sa.select(t.c.trial_id).where(*where).cte("ids")

        def of_trials(table: Any) -> Any:
            return table.c.trial_id.in_(sa.select(ids_cte.c.trial_id))
    types = (sa.Integer, sa.String, sa.Float, sa.Text)
    branches = []
    for tag, (model, key, *cols) in enumerate(_CHILDREN):
        table = getattr(models, model).__table__
        picked = []
        for name, type_ in zip(cols, types, strict=True):
            if name is None:
                picked.append(sa.cast(sa.null(), type_))
            elif isinstance(table.c[name].type, sa.Enum):
                picked.append(sa.cast(table.c[name], sa.String))
            else:
                picked.append(table.c[name])
        branches.append(sa.select(
            sa.literal_column(str(tag), sa.Integer).label("tag"), table.c.trial_id,
            table.c[key].label("ord"), *[c.label(f"c{i}") for i, c in enumerate(picked)],
        ).where(of_trials(table)))
    children = sa.union_all(*branches)
    _STATEMENTS[shape] = (trials, children)
    return _STATEMENTS[shape]


def _read_trials(conn: Any, shape: tuple, params: dict) -> list[FrozenTrial]:
    """The trials of a filter shape (`_statements`), by trial id, built as
    RDBStorage._build_frozen_trial_from_trial_model builds them; KeyError for a study
    shape's missing study."""
    models = _models()
    trials_q, children_q = _statements(shape)
    rows = conn.rows(trials_q, params)
    if not rows:
        if shape[0] == "study":
            raise KeyError(models.NOT_FOUND_MSG)
        return []
    if rows[0][0] is None:  # the study, without such trials
        return []
    tables: list[dict[int, list]] = [{} for _ in _CHILDREN]
    for tag, trial_id, *record in conn.rows(children_q, params):
        tables[tag].setdefault(trial_id, []).append(record)
    for records in tables[PARAMS].values():
        records.sort()  # by param_id, as Optuna orders them
    params_, values, user, system, steps = tables
    value_model = models.TrialValueModel
    value_type = value_model.TrialValueType
    step_model = models.TrialIntermediateValueModel
    step_type = step_model.TrialIntermediateValueType

    trials = []
    for trial_id, number, state, start, complete in rows:
        trial_values: list[float] | None = None
        if trial_id in values:
            trial_values = [0.0] * len(values[trial_id])
            for _, objective, _, value, kind in values[trial_id]:
                trial_values[objective] = value_model.stored_repr_to_value(
                    value, value_type[kind])
        dists = {name: distributions.json_to_distribution(dist_json)
                 for _, _, name, _, dist_json in params_.get(trial_id, ())}
        trials.append(FrozenTrial(
            number=number, state=state, value=None, values=trial_values,
            datetime_start=read_datetime(start), datetime_complete=read_datetime(complete),
            params={name: dists[name].to_external_repr(value)
                    for _, _, name, value, _ in params_.get(trial_id, ())},
            distributions=dists,
            user_attrs={key: _loads(v) for _, _, key, _, v in user.get(trial_id, ())},
            system_attrs={key: _loads(v) for _, _, key, _, v in system.get(trial_id, ())},
            intermediate_values={
                step: step_model.stored_repr_to_intermediate_value(value, step_type[kind])
                for _, step, _, value, kind in steps.get(trial_id, ())},
            trial_id=trial_id))
    return trials


def _loads(text: str) -> Any:
    """json.loads(text), as Optuna decodes an attr; a number, string, bool or None is kept
    by its text (`_DECODED`): a study reads its running trial, two dozen attrs, several
    times, and decoding was a third of a read. A list or dict is decoded anew each time:
    each FrozenTrial has its own, which its user may change."""
    value = _DECODED.get(text, _DECODED)
    if value is _DECODED:
        value = json.loads(text)
        if type(value) in _IMMUTABLE:
            if len(_DECODED) >= 4096:
                _DECODED.clear()
            _DECODED[text] = value
    return value


#: `_loads`' immutable values by their JSON text (at most 4096: cleared when full).
_DECODED: dict[str, Any] = {}
_IMMUTABLE = (str, int, float, bool, type(None))
