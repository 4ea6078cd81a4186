"""Optuna's own storage test suite, run against the project's RDB storages.

    python scripts/optuna_storage_suite.py [--layer fast|retry] [PYTEST ARGS]
                                                            (make test-optuna-storages)

Each layer is one pytest run (without --layer: both, one after the other):

- `fast`: `tuning_energy.store.fast_rdb.FastRDBStorage`, what `open_storage` builds for
  SQLite and PostgreSQL (a study's storage);
- `retry`: the workers' retrying storage over it (`tuning_energy.store.retry.wrap_storage`).

The suite (tests/storages_tests/test_storages.py and test_heartbeat.py, with the
`optuna.testing` helpers they use) comes from the source distribution of the Optuna installed
here: downloaded once with pip into .cache/optuna-suite/ (gitignored), so reruns are offline.
Every RDB storage the suite opens is made the layer's:

- modes `sqlite` (the layer) and `cached_sqlite` (Optuna's _CachedStorage over it, as a
  study opened on it gets), the suite's other modes (in-memory, journal, gRPC) left
  out: they open no RDB storage;
- with TUNING_ENERGY_TEST_POSTGRES_URL set (.ci/run sets it), also `postgresql` and
  `cached_postgresql`: each storage in a schema of its own on that server, dropped after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import optuna
import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "optuna-suite"
SUITE = ["tests/storages_tests/test_storages.py", "tests/storages_tests/test_heartbeat.py"]
#: What the suite files need from the tests tree besides themselves, where the sdist has it.
SUPPORT = ["tests/__init__.py", "tests/conftest.py", "tests/storages_tests/__init__.py"]
POSTGRES_ENV = "TUNING_ENERGY_TEST_POSTGRES_URL"
LAYERS = ("fast", "retry")
LIMIT_S = 30.0  # the wrapper's reconnect limit: nothing is cut here, any value works


def suite_dir(version: str = optuna.__version__) -> Path:
    """The suite's files of Optuna `version`, extracted from its sdist (downloaded once)."""
    root = CACHE / version
    done = root / "extracted"
    if done.is_file():
        return root
    sdist = CACHE / f"optuna-{version}.tar.gz"
    if not sdist.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", "--dest", str(CACHE), f"optuna=={version}"],
                       check=True)
    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
        for name in SUITE + SUPPORT:
            member = f"optuna-{version}/{name}"
            if member not in names and name in SUPPORT:
                continue
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(tar.extractfile(member).read())  # KeyError: not there
    done.write_text(f"{sdist.name}\n")
    return root


def _postgres_storage(url: str, schema: str, **kwargs) -> optuna.storages.RDBStorage:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"options": f"-csearch_path={schema}"}},
            **kwargs)
    except BaseException:  # the suite checks that bad arguments raise: no __exit__ then
        _drop_schema(url, schema)
        raise


def _drop_schema(url: str, schema: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


class WrapRDBStorages:
    """Pytest plugin: the suite's storages are the layer's (see the module docstring)."""

    def __init__(self, postgres_url: str | None, layer: str = "retry"):
        self.postgres_url = postgres_url
        self.layer = layer

    def pytest_configure(self, config) -> None:
        from optuna.storages import RDBStorage, _CachedStorage
        from optuna.testing import storages as testing

        from tuning_energy.store.fast_rdb import FastRDBStorage
        from tuning_energy.store.retry import wrap_storage

        modes = ["sqlite", "cached_sqlite"]
        if self.postgres_url:
            modes += ["postgresql", "cached_postgresql"]
        testing.STORAGE_MODES[:] = modes  # the lists the suite's parametrize reads
        testing.STORAGE_MODES_HEARTBEAT[:] = modes
        url = self.postgres_url
        enter, exit_ = testing.StorageSupplier.__enter__, testing.StorageSupplier.__exit__

        layer = self.layer

        def wrap(storage):
            # FastRDBStorage adds methods only, no state: the suite's RDBStorage becomes one
            storage.__class__ = FastRDBStorage
            if layer == "fast":
                return storage
            return wrap_storage(storage, "the suite's store", LIMIT_S)

        def __enter__(supplier):
            if "postgresql" in supplier.storage_specifier:
                supplier.schema = f"optuna_suite_{uuid.uuid4().hex[:12]}"
                rdb = _postgres_storage(url, supplier.schema, **supplier.extra_args)
                storage = rdb if "cached" not in supplier.storage_specifier \
                    else _CachedStorage(rdb)
            else:
                storage = enter(supplier)
            if isinstance(storage, _CachedStorage):
                storage._backend = wrap(storage._backend)
            elif isinstance(storage, RDBStorage):
                storage = wrap(storage)
            supplier.storage = storage  # what later Optunas' __exit__ closes (5.1's does)
            return storage

        def __exit__(supplier, *exc):
            exit_(supplier, *exc)
            if getattr(supplier, "schema", None):
                storage = supplier.storage
                getattr(storage, "_backend", storage).engine.dispose()
                _drop_schema(url, supplier.schema)

        testing.StorageSupplier.__enter__ = __enter__
        testing.StorageSupplier.__exit__ = __exit__


def main(argv: list[str]) -> int:
    layers = list(LAYERS)
    if argv[:1] == ["--layer"] and len(argv) > 1 and argv[1] in LAYERS:
        layers, argv = [argv[1]], argv[2:]
    elif argv[:1] == ["--layer"]:
        print(f"--layer takes one of {', '.join(LAYERS)}", file=sys.stderr)
        return 2
    if len(layers) > 1:  # one pytest process per layer: the suite's modules import once
        codes = [subprocess.run([sys.executable, __file__, "--layer", layer, *argv]).returncode
                 for layer in layers]
        return max(codes)
    root = suite_dir()
    url = os.environ.get(POSTGRES_ENV) or None
    what = {"fast": "tuning_energy.store.fast_rdb.FastRDBStorage",
            "retry": "tuning_energy.store.retry's wrapper over FastRDBStorage"}[layers[0]]
    print(f"Optuna {optuna.__version__}'s storage suite ({root}), the RDB storages: {what}; "
          f"PostgreSQL: {'yes' if url else f'no ({POSTGRES_ENV} not set)'}", flush=True)
    args = ["-q", "-p", "no:cacheprovider", "--rootdir", str(root),
            "-c", os.devnull, "-W", "ignore::optuna.exceptions.ExperimentalWarning",
            "-W", "ignore:Passing a non-Collection iterable",  # the suite's, for pytest 10
            *[str(root / name) for name in SUITE], *argv]
    return int(pytest.main(args, plugins=[WrapRDBStorages(url, layers[0])]))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
