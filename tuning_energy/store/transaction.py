"""One transaction on a FastRDBStorage's engine, and the statements run in it.

Each FastRDBStorage call (store/fast_rdb.py, fast_rdb_writes.py, trial_writes.py) runs in
one `transaction`, with the errors Optuna's `_create_scoped_session` raises. On SQLite the
statements are compiled by SQLAlchemy once per process and run on sqlite3's own connection
(`Raw`), unless the engine is watched (its events, echo); elsewhere, and then, on a
SQLAlchemy Connection (`Driver` on SQLite, `Core` on PostgreSQL). All three return rows as
tuples, with the column types' own bind and result processors: the same SQL, rows, values
and errors whichever runs them (tests/test_fast_rdb_reads.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna

_logger = optuna.logging.get_logger(__name__)


@contextmanager
def transaction(storage: Any, ignore_integrity_error: bool = False, write: bool = True,
                ) -> Iterator[Any]:
    """One transaction on `storage`'s engine, committed at the end when `write`, its errors
    as Optuna's `_create_scoped_session` raises them: an IntegrityError rolled back and
    raised (or ignored), any other SQLAlchemy error a StorageInternalError.

    Yields a `Raw` connection on SQLite (sqlite3, `_own_sql`) when nothing watches the
    engine (`_watched`), else a `Driver` (SQLite) or `Core` (PostgreSQL) one, on a
    SQLAlchemy Connection. Optuna's ORM session (its set-up, commit and close) cost as
    much as two statements; a read has nothing to commit, and is rolled back when its
    connection goes back to the pool."""
    import sqlalchemy as sa

    engine = storage.engine
    try:
        own_sql = _own_sql(engine.dialect)
        if own_sql and not _watched(engine):
            dbapi_error = engine.dialect.loaded_dbapi.Error
            try:
                pooled = engine.raw_connection()
            except dbapi_error as e:  # as SQLAlchemy's Connection wraps it
                raise _wrapped(e, engine.dialect) from e
            done = False
            try:
                yield Raw(pooled.driver_connection, engine.dialect)
                if write:
                    try:
                        pooled.commit()
                    except dbapi_error as e:
                        raise _wrapped(e, engine.dialect) from e
                done = write
            finally:
                try:
                    if not done:  # a read, or a write that failed: rolled back here, as
                        pooled.rollback()  # Optuna's session does (not left to the pool's
                except dbapi_error:  # reset-on-return, which an engine may turn off)
                    pass
                pooled.close()
        else:
            with engine.connect() as conn:
                yield (Driver if own_sql else Core)(conn)
                if write:
                    conn.commit()
    except sa.exc.IntegrityError as e:
        if not ignore_integrity_error:
            raise
        _logger.debug(f"Ignoring {e!r}. This happens due to a timing issue among "
                      "threads/processes/nodes. Another one might have committed a record "
                      "with the same key(s).")
    except sa.exc.SQLAlchemyError as e:
        raise optuna.exceptions.StorageInternalError(
            "An exception is raised during the commit. This typically happens due to "
            "invalid data in the commit, e.g. exceeding max length. ") from e


def _own_sql(dialect: Any) -> bool:
    """SQLite through sqlite3 with its `?` parameters (SQLAlchemy's default): the dialect
    whose SQL `_Compiled` renders."""
    return dialect.name == "sqlite" and dialect.driver == "pysqlite" and \
        dialect.paramstyle == "qmark"


def _wrapped(error: Exception, dialect: Any, sql: str | None = None,
             args: Any = None) -> Exception:
    """A DBAPI error as SQLAlchemy wraps it (sqlite3's OperationalError: SQLAlchemy's)."""
    import sqlalchemy as sa

    return sa.exc.DBAPIError.instance(sql, args, error, dialect.loaded_dbapi.Error,
                                      dialect=dialect)


#: The engine's and its dialect's events a statement run on sqlite3 itself would not fire.
_EVENTS = ("before_execute", "after_execute", "before_cursor_execute",
           "after_cursor_execute", "engine_connect", "begin", "commit", "rollback")
_DIALECT_EVENTS = ("do_execute", "do_execute_no_params", "do_executemany", "handle_error",
                   "do_setinputsizes")


def _watched(engine: Any) -> bool:
    """Whether the engine logs its statements (echo) or has listeners of `_EVENTS` (a
    user's instrumentation, a test's statement count): then its statements go through
    SQLAlchemy's Connection, which fires them. SQLAlchemy's own flags first (what its
    Connection checks before each event; ~40 µs less than asking each event)."""
    import logging

    try:
        return bool(engine._has_events or engine.dialect._has_events or
                    engine._should_log_info())
    except AttributeError:  # a SQLAlchemy without them: its listeners, one by one
        return bool(engine.echo) or engine.logger.isEnabledFor(logging.INFO) or any(
            getattr(engine.dispatch, name) for name in _EVENTS) or any(
            getattr(engine.dialect.dispatch, name) for name in _DIALECT_EVENTS)


class Core:
    """Statements run by SQLAlchemy on a Connection: rows as tuples, as `Raw`'s."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.dialect = conn.dialect

    def rows(self, stmt: Any, params: dict) -> list[tuple]:
        return [tuple(r) for r in self.conn.execute(stmt, params)]

    def first(self, stmt: Any, params: dict) -> tuple | None:
        row = self.conn.execute(stmt, params).first()
        return None if row is None else tuple(row)

    def run(self, stmt: Any, params: dict | list[dict]) -> Any:
        """An INSERT / UPDATE, once (a dict: an INSERT's new id) or per row (a list)."""
        result = self.conn.execute(stmt, params)
        return result.inserted_primary_key[0] if isinstance(params, dict) and \
            result.context.isinsert else None

    def rollback(self) -> None:
        self.conn.rollback()


class Raw(Core):
    """The same statements on SQLite's own connection (sqlite3), as SQLAlchemy runs them.

    SQLAlchemy's execute (the statement's cache key, its compiled-statement cache,
    parameter and result set-up) costs ~15 µs a statement more than sqlite3's own ~5 µs,
    and ~1 µs a row; a trial runs ~15 statements and reads ~150 rows. Each statement is
    compiled by SQLAlchemy once per process (`_sql`; an engine's cache compiles it again
    per engine, ~1-5 ms a statement), its values go through the column types' own bind
    and result processors (datetimes, enums) and a DBAPI error is wrapped as SQLAlchemy
    wraps it: the same SQL, rows, values and errors."""

    def __init__(self, dbapi_conn: Any, dialect: Any) -> None:
        self.conn = dbapi_conn
        self.dialect = dialect

    def _execute(self, sql: str, args: Any, many: bool) -> Any:
        try:
            return (self.conn.executemany if many else self.conn.execute)(sql, args)
        except self.dialect.loaded_dbapi.Error as e:
            raise _wrapped(e, self.dialect, sql, args) from e

    def _call(self, stmt: Any, params: dict | list[dict]) -> tuple[Any, _Compiled]:
        many = isinstance(params, list)
        rows = params if many else [params]
        compiled = _sql(stmt, self.dialect, rows[0])
        args = [compiled.args(row) for row in rows]
        return self._execute(compiled.sql_for(rows[0]), args if many else args[0],
                             many), compiled

    def rows(self, stmt: Any, params: dict) -> list[tuple]:
        cursor, compiled = self._call(stmt, params)
        rows = cursor.fetchall()
        procs = compiled.processors
        if procs is None:
            return [tuple(r) for r in rows]
        return [tuple(v if p is None else p(v) for v, p in zip(r, procs, strict=True))
                for r in rows]

    def first(self, stmt: Any, params: dict) -> tuple | None:
        rows = self.rows(stmt, params)
        return rows[0] if rows else None

    def run(self, stmt: Any, params: dict | list[dict]) -> Any:
        cursor, compiled = self._call(stmt, params)
        return cursor.lastrowid if compiled.isinsert and isinstance(params, dict) else None


class Driver(Raw):
    """`Raw`'s SQL on a SQLAlchemy Connection (`exec_driver_sql`): its events fire, as
    for any statement of Optuna's."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.dialect = conn.dialect

    def _execute(self, sql: str, args: Any, many: bool) -> Any:
        return self.conn.exec_driver_sql(sql, [tuple(a) for a in args] if many
                                         else tuple(args))


class _Compiled:
    """A statement compiled for SQLite, for one set of parameter names: its SQL (IN
    lists rendered per length, one `?` a value, as SQLAlchemy renders them at execution),
    parameter names in order, their bind processors, the statement's own values (a
    LIMIT's), the result columns' processors (None: none)."""

    def __init__(self, stmt: Any, dialect: Any, params: dict) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(params))
        self.sql = compiled.string
        self.names = list(compiled.positiontup)
        self.expanding = {n for n in self.names if compiled.binds[n].expanding}
        self.binds = [compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect)
                      for n in self.names]
        # SQLAlchemy's error for a missing value, and the statement's own values
        self.constants = {n: v for n, v in compiled.construct_params(params).items()
                          if n not in params and n in self.names}
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None)
                      for c in getattr(stmt, "selected_columns", ())]
        self.processors = processors if any(processors) else None
        self.isinsert = bool(compiled.isinsert)
        self._by_lengths: dict[tuple, str] = {}

    def args(self, row: dict) -> list:
        values: list = []
        for name, process in zip(self.names, self.binds, strict=True):
            value = row[name] if name in row else self.constants[name]
            if name in self.expanding:
                values.extend(value if process is None else map(process, value))
            else:
                values.append(value if process is None else process(value))
        return values

    def sql_for(self, row: dict) -> str:
        if not self.expanding:
            return self.sql
        lengths = tuple(len(row[n]) for n in sorted(self.expanding))
        sql = self._by_lengths.get(lengths)
        if sql is None:
            sql = self.sql
            for name, n in zip(sorted(self.expanding), lengths, strict=True):
                # an empty list: no value is in it (SQLAlchemy renders an empty subquery)
                sql = sql.replace(f"(__[POSTCOMPILE_{name}])",
                                  "(" + ", ".join(["?"] * n) + ")" if n else
                                  "(SELECT 1 WHERE 0)")
            if len(self._by_lengths) > 64:
                self._by_lengths.clear()
            self._by_lengths[lengths] = sql
        return sql


def _sql(stmt: Any, dialect: Any, params: dict) -> _Compiled:
    """`stmt` compiled for this SQLite dialect (an engine's) and these parameter names (an
    INSERT / UPDATE sets the columns they name), once per process: `_SQL`."""
    key = (id(stmt), id(dialect), tuple(params))
    compiled = _SQL.get(key)
    if compiled is None:
        compiled = _SQL[key] = _Compiled(stmt, dialect, params)
        _KEEP[id(stmt)], _KEEP[id(dialect)] = stmt, dialect  # their ids stay their own
    return compiled


#: `_sql`'s statements by (statement id, parameter names); the statements, kept.
_SQL: dict[tuple, _Compiled] = {}
_KEEP: dict[int, Any] = {}
