"""The URL `make postgres` prints opens in every Optuna client, with no project code between.

`postgresql://` with no driver named: SQLAlchemy 2.1 takes psycopg (3) for it, which the
`postgres` extra installs. The project's own storages pick whichever driver is installed, so
a venv with only psycopg2 keeps working through tuning-energy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest

from tuning_energy.errors import StorageError
from tuning_energy.store.storage import open_storage

BIN = Path(sys.executable).parent


def test_the_bare_url_opens_with_plain_optuna_its_cli_and_the_dashboard(pg_url):
    assert pg_url.startswith("postgresql://")  # no +driver: as printed, as users share it
    name = f"plain-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=pg_url, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    loaded = optuna.load_study(study_name=name, storage=pg_url)
    assert len(loaded.trials) == 2

    # The `optuna` command line of this venv.
    out = subprocess.run([str(BIN / "optuna"), "studies", "--storage", pg_url, "-f", "json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert name in [s["name"] for s in json.loads(out.stdout)]

    # optuna-dashboard's loader for a URL (what `optuna-dashboard URL` calls), then its API.
    app = optuna_dashboard.wsgi(pg_url)
    environ = {"PATH_INFO": "/api/studies", "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("200"), body[:500]
    assert name in [s["study_name"] for s in json.loads(body)["study_summaries"]]

    optuna.delete_study(study_name=name, storage=pg_url)


@pytest.mark.parametrize("hidden, driver", [("psycopg", "psycopg2"), ("psycopg2", "psycopg")])
def test_the_project_opens_the_bare_url_with_whichever_driver_is_installed(
        pg_url, monkeypatch, hidden, driver):
    """A venv with only one of the two drivers (the other one hidden, as if not installed).

    psycopg2 comes with the `dev` extra, psycopg with the `postgres` one."""
    pytest.importorskip(driver)
    for module in list(sys.modules):
        if module == hidden or module.startswith(hidden + "."):
            monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, hidden, None)  # `import hidden` raises ImportError
    storage = open_storage(pg_url)
    assert storage.engine.driver == driver
    name = f"one-driver-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=storage)
    assert name in [s.study_name for s in optuna.get_all_study_summaries(storage, False)]
    optuna.delete_study(study_name=name, storage=storage)
    storage.engine.dispose()


def test_without_a_driver_the_error_says_what_to_install(monkeypatch):
    for hidden in ("psycopg", "psycopg2"):
        monkeypatch.setitem(sys.modules, hidden, None)
    with pytest.raises(StorageError) as err:
        open_storage("postgresql://tuner:s3cret-pw@127.0.0.1:5432/energy")
    message = str(err.value)
    assert "tuning-energy[postgres]" in message and "psycopg" in message
    assert "s3cret-pw" not in message
