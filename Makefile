# tuning-energy: `make study STRATEGY=bayes`, `make test`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# This machine's pip takes torch 2.13.0 (CPU build) from local wheels; constraints.txt pins
# it so that no newer (CUDA, several GB) torch is pulled. Elsewhere, `make CONSTRAINTS=`
# installs whatever torch pip picks for pyproject's range.
CONSTRAINTS ?= constraints.txt
PIP_CONSTRAINT := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
EXTRAS ?= dev,postgres

STRATEGY ?= bayes
CONFIG ?= studies/default.toml
SEED ?= 0
STORAGE ?= sqlite:///studies/energy.db
TRIALS ?=
TRIALS_FLAG := $(if $(TRIALS),--trials $(TRIALS),)

.PHONY: install study test lint show clean bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_CONSTRAINT) -e '.[$(EXTRAS)]'
	@touch $@

study: install
	$(BIN)/tuning-energy study --config $(CONFIG) --strategy $(STRATEGY) --seed $(SEED) \
		--storage $(STORAGE) $(TRIALS_FLAG)

show: install
	$(BIN)/tuning-energy show --storage $(STORAGE)

test: install
	$(BIN)/python -m pytest -q

# Benchmarks (bench/RESULTS.md): at most ~10 minutes here; QUICK=1 is a smoke run (<= 2 min).
QUICK ?=
bench: install
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,)

lint: install
	$(BIN)/ruff check tuning_energy tests bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
