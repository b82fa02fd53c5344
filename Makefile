# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup demo test test-slurm lint clean

$(BIN)/activate: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(BIN)/activate

setup: $(BIN)/activate

demo: setup
	$(BIN)/snakemake --cores $(CORES) --profile profiles/local all

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules

test: lint
	OMP_NUM_THREADS=1 $(BIN)/pytest -n 2 --dist loadfile

# The SLURM profile against a real single-node cluster (installs slurm-wlm when missing:
# needs root). The cluster is stopped again whatever the tests do.
SLURM_STATE := $(CURDIR)/.local-slurm
test-slurm: setup
	tools/local-slurm/start.sh $(SLURM_STATE)
	SLURM_CONF=/etc/slurm/slurm.conf $(BIN)/pytest -m slurm -rP -p no:cacheprovider \
		tests/test_slurm_profile.py; status=$$?; \
		tools/local-slurm/stop.sh $(SLURM_STATE); exit $$status

clean:
	rm -rf results resources logs benchmarks .snakemake mlflow.db mlruns mlartifacts
