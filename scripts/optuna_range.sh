#!/usr/bin/env bash
# The storage tests under the oldest or the newest Optuna that pyproject.toml allows
# (optuna>=4.3,<6; store/storage.py and store/retry.py use Optuna internals, listed in
# tests/test_optuna_internals.py). A venv in ${TMPDIR:-/tmp} holds only that Optuna; every
# other package comes from the project's .venv (`make install` first).
#   scripts/optuna_range.sh oldest|newest        (make test-optuna-range: both)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    oldest) spec="optuna==4.3.0" ;;
    newest) spec="optuna>=4.3,<6" ;;
    *) echo "usage: $0 oldest|newest (the ends of pyproject's optuna range)" >&2; exit 2 ;;
esac
py="${VENV:-.venv}/bin/python"  # VENV: the project venv elsewhere
venv="${TMPDIR:-/tmp}/tuning-energy-optuna-$1"
if [ ! -x "$venv/bin/python" ]; then
    "$($py -c 'import sys; print(sys._base_executable)')" -m venv "$venv"
    # after the venv's own site-packages: its Optuna wins, the rest is .venv's
    purelib() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
    purelib "$py" > "$(purelib "$venv/bin/python")/zz_project_venv.pth"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --upgrade "$spec"
"$venv/bin/python" -c 'import optuna; print("optuna", optuna.__version__)'
PYTHONPATH="$PWD" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_optuna_internals.py tests/test_storage.py tests/test_storage_retry.py \
    tests/test_propose_store.py tests/test_fast_rdb.py tests/test_fast_rdb_writes.py \
    "tests/test_strategies.py::test_proposals_import_nothing"
