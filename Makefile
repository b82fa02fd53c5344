# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup demo test test-fast test-slurm lint rehearsal docs docs-build clean

$(BIN)/activate: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(BIN)/activate

setup: $(BIN)/activate

demo: setup
	$(BIN)/snakemake --cores $(CORES) --profile profiles/local all

# snakemake --lint, less the warnings kept on purpose:
# - "Mixed rules and functions in same snakefile": a rule's input and params functions stay
#   beside the rule they serve; common.smk holds only what every rule file shares.
# - "Param data_root/root/truth_dir is a prefix of input or output file": they name the
#   archive's folder (or the demo truth's), read through DatasetLayout, not output prefixes.
WORKFLOW_LINTS_KEPT := Mixed rules and functions|Param (data_root|root|truth_dir) is a prefix

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/mkdocs build --strict --quiet
	@$(BIN)/snakemake --lint > .lint.log 2>&1 || true
	@if grep -E '^    \* ' .lint.log | grep -vE '$(WORKFLOW_LINTS_KEPT)'; then \
		cat .lint.log; echo "snakemake --lint: fix the warnings above"; exit 1; fi
	@rm -f .lint.log; echo "snakemake --lint: clean (less the kept warnings, see Makefile)"

test: lint
	OMP_NUM_THREADS=1 $(BIN)/pytest -n 2 --dist loadfile --durations=15

# The unit tests only (no end-to-end workflow runs, no SLURM): a few minutes.
test-fast: setup
	OMP_NUM_THREADS=1 $(BIN)/pytest -n 2 --dist loadfile -m "not slow and not slurm"

# The SLURM profile against a real single-node cluster (installs slurm-wlm when missing:
# needs root). The cluster is stopped again whatever the tests do.
SLURM_STATE := $(CURDIR)/.local-slurm
test-slurm: setup
	tools/local-slurm/start.sh $(SLURM_STATE)
	SLURM_CONF=/etc/slurm/slurm.conf $(BIN)/pytest -m slurm -rP -p no:cacheprovider \
		tests/test_slurm_profile.py; status=$$?; \
		tools/local-slurm/stop.sh $(SLURM_STATE); exit $$status

# The full-size rehearsal (bench/README.md): the archive's counts end to end, measured into
# bench/rehearsal.md. About an hour on 2 idle cores and ~10 GB under REHEARSAL (outside the
# repository): delete it after. Run it alone: its wall times are only meaningful so.
REHEARSAL ?= /tmp/glc-rehearsal
rehearsal: setup
	$(BIN)/python bench/rehearsal.py all $(REHEARSAL) --cores $(CORES)

# The manual (docs/) as a site: served at http://127.0.0.1:8000, or built into site/.
docs: setup
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: setup
	$(BIN)/mkdocs build --strict

clean:
	rm -rf results resources logs benchmarks .snakemake mlflow.db mlruns mlartifacts site
