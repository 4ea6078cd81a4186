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
EXTRAS ?= dev,postgres,crosscheck

STRATEGY ?= bayes
CONFIG ?= studies/default.toml
SEED ?= 0
STORAGE ?= sqlite:///studies/energy.db
TRIALS ?=
PORT ?= 8080
TRIALS_FLAG := $(if $(TRIALS),--trials $(TRIALS),)
PRUNER ?=
PRUNER_FLAG := $(if $(PRUNER),--pruner $(PRUNER),)

# WORKERS=N: N worker processes share each study (journal:/// or postgresql:// storage).
WORKERS ?=
WORKERS_FLAG := $(if $(WORKERS),--workers $(WORKERS),)

.PHONY: docs install study test test-optuna-range test-optuna-storages lint show clean dashboard compare suite figures paper paper-full envdemo bench bench-render postgres postgres-stop

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_CONSTRAINT) -e '.[$(EXTRAS)]'
	@touch $@

study: install
	$(BIN)/tuning-energy study --config $(CONFIG) --strategy $(STRATEGY) --seed $(SEED) \
		--storage $(STORAGE) $(TRIALS_FLAG) $(PRUNER_FLAG) $(WORKERS_FLAG)

show: install
	$(BIN)/tuning-energy show --storage $(STORAGE)

dashboard: install
	$(BIN)/tuning-energy dashboard --storage $(STORAGE) --port $(PORT)

test: install
	$(BIN)/python -m pytest -q

# The storage tests under the oldest and the newest Optuna that pyproject.toml allows.
test-optuna-range: install
	bash scripts/optuna_range.sh oldest
	bash scripts/optuna_range.sh newest

# Optuna's own storage test suite, from the sdist of the installed Optuna (cached in .cache/),
# against the workers' retrying storage (store/retry.py); on PostgreSQL too when
# TUNING_ENERGY_TEST_POSTGRES_URL is set (.ci/run sets it).
test-optuna-storages: install
	$(BIN)/python scripts/optuna_storage_suite.py

# Benchmarks (bench/RESULTS.md): at most ~10 minutes here; QUICK=1 is a smoke run (<= 2 min).
QUICK ?=
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,)

# bench/RESULTS.md again from the committed bench/results.json: runs no benchmark
bench-render: install
	$(BIN)/python -m bench.run --render-only

# EXTRAS and the `bench` extra (Zeus, timed beside our meter: meter_vs_zeus)
$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_CONSTRAINT) -e '.[$(EXTRAS),bench]'
	@touch $@

# The documentation site (MkDocs + Material + mkdocstrings) into site/, strictly: a broken
# link, a missing page or an unresolved API reference fails the build.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict
	@echo "docs: site/index.html"

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_CONSTRAINT) -e '.[$(EXTRAS),docs]'
	@touch $@

lint: install
	$(BIN)/ruff check tuning_energy tests bench

# ---- comparisons, figures, paper (analysis) ----
SEEDS ?= 5
STRATEGIES ?=
STRATEGIES_FLAG := $(if $(STRATEGIES),--strategies $(STRATEGIES),)
# OUT: where make figures writes (default figures/<store name>, figures/energy for the
# default store; figures/report.md is make paper's)
OUT ?=
OUT_FLAG := $(if $(OUT),--out $(OUT),)
TARGET ?=
TARGET_FLAG := $(if $(TARGET),--target $(TARGET),)
PAPER_STORAGE ?= sqlite:///studies/paper.db

# every strategy (or STRATEGIES=a,b) x seeds 0..SEEDS-1 of CONFIG into STORAGE
compare: install
	$(BIN)/tuning-energy compare --config $(CONFIG) --seeds $(SEEDS) $(STRATEGIES_FLAG) \
		--storage $(STORAGE) $(TRIALS_FLAG) $(WORKERS_FLAG)

# every problem x strategy x seed of SUITE (studies/suite.toml; PROBLEMS=mnist1d,hgb for
# some), resumable, into SUITE_STORAGE (default: a journal in the per-user data folder,
# ~/.local/share/tuning-energy/suite.log), then figures/suite.md and figures/suite.json
SUITE ?= studies/suite.toml
SUITE_STORAGE ?=
PROBLEMS ?=
suite: install
	$(BIN)/tuning-energy suite --suite $(SUITE) --no-progress \
		$(if $(SUITE_STORAGE),--storage $(SUITE_STORAGE),) $(if $(PROBLEMS),--problems $(PROBLEMS),) $(WORKERS_FLAG)

# figures (PNG + PDF) and report.md from STORAGE into OUT; no training
figures: install
	$(BIN)/tuning-energy figures --storage $(STORAGE) $(OUT_FLAG) $(TARGET_FLAG)

# the paper's studies scaled to digits on a CPU, then figures/ and figures/report.md.
# Resumes what PAPER_STORAGE already holds; `rm studies/paper.db` to start over.
paper: install
	$(BIN)/tuning-energy compare --config studies/paper-rq1-digits.toml --seeds 5 \
		--strategies grid,random,bayes --storage $(PAPER_STORAGE) --no-progress
	$(BIN)/tuning-energy compare --config studies/paper-rq2-digits.toml --seeds 3 \
		--strategies grid --storage $(PAPER_STORAGE) --no-progress
	$(BIN)/tuning-energy figures --storage $(PAPER_STORAGE) --out figures

# The paper's studies as published (Fashion-MNIST and CIFAR-10, 25 epochs, batch 512, 64
# trials, selection on the test set), then figures/paper-full/. Needs a GPU to finish in
# hours (README: an ESTIMATE of about 3-4 h on one recent GPU; far longer on a CPU). The
# datasets are downloaded on first use into the per-user cache. Resumes what
# PAPER_FULL_STORAGE holds.
PAPER_FULL_STORAGE ?= sqlite:///studies/paper-full.db
PAPER_FULL_DATASETS ?= fashion-mnist cifar10
paper-full: install
	@set -e; for d in $(PAPER_FULL_DATASETS); do \
	  s=$$([ $$d = cifar10 ] && echo -cifar10 || true); \
	  for c in paper-rq1 paper-rq1-5; do \
	    $(BIN)/tuning-energy compare --config studies/$$c$$s.toml --seeds 5 \
	      --strategies grid,random,bayes --storage $(PAPER_FULL_STORAGE) --no-progress \
	      --out figures/paper-full/$$c$$s; \
	  done; \
	  $(BIN)/tuning-energy compare --config studies/paper-rq2$$s.toml --seeds 3 \
	    --strategies grid --storage $(PAPER_FULL_STORAGE) --no-progress \
	    --out figures/paper-full/paper-rq2$$s; \
	done
	$(BIN)/tuning-energy figures --storage $(PAPER_FULL_STORAGE) --out figures/paper-full

# Environments side by side (README): the same small study at 1 and 2 torch threads, each
# in its own store and labelled, then one report over both (figures/envdemo/report.md).
ENVDEMO_DIR ?= studies/envdemo
envdemo: install
	@mkdir -p $(ENVDEMO_DIR)
	$(BIN)/tuning-energy compare --config studies/envdemo-threads1.toml --seeds 3 \
		--strategies random,bayes --environment cpu-1-thread \
		--storage sqlite:///$(ENVDEMO_DIR)/threads1.db --out $(ENVDEMO_DIR) --no-progress
	$(BIN)/tuning-energy compare --config studies/envdemo-threads2.toml --seeds 3 \
		--strategies random,bayes --environment cpu-2-threads \
		--storage sqlite:///$(ENVDEMO_DIR)/threads2.db --out $(ENVDEMO_DIR) --no-progress
	$(BIN)/tuning-energy figures --storage sqlite:///$(ENVDEMO_DIR)/threads1.db \
		--storage sqlite:///$(ENVDEMO_DIR)/threads2.db --out figures/envdemo

# A local PostgreSQL on 127.0.0.1:54329 (data in .cache/postgres); prints its URL.
postgres:
	@bash scripts/postgres.sh start

postgres-stop:
	@bash scripts/postgres.sh stop

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
