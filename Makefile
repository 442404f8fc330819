# Entry points: `make demo`, `make test`, and `make slurm-profile` once before running
# on a Slurm cluster. All create the virtual environment on first use; the rules find
# `largelr` on PATH through it.
VENV ?= .venv
PYTHON ?= python3
CORES ?= all
# Where Snakemake looks up `--profile NAME` (besides ./NAME and /etc/xdg/snakemake).
SNAKEMAKE_PROFILES ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/snakemake
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Every job is a fresh Python process: without cached bytecode each one compiles torch's modules
# again (`import torch, pandas, matplotlib` 9.4 s instead of 3.4 s), so bytecode is cached in .venv
# even where the environment sets PYTHONDONTWRITEBYTECODE.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install demo smoke test test-notice local-slurm fashion-mnist slurm-profile clean

install: $(VENV)/.installed

# A current pip first: it resolves the ~100 dependencies in a fraction of the time the venv's
# bundled pip takes. --no-compile: pip would byte-compile every module of torch's 5 GB (most never
# imported); Python compiles the ones a job imports on first use instead.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-compile -e ".[test]"
	touch $@

# The demo, its HTML report, then the one-screen summary (trends over the learning rate per pair).
demo: install
	snakemake --cores $(CORES) demo
	snakemake --cores $(CORES) demo --report results/report.html
	largelr summary --cells results/demo/cells.parquet --where \
		"figures: results/figures/demo/ (PNG and PDF)" \
		"tables:  results/tables/demo_{table1,stats,trends,mechanism}.md (and .parquet)" \
		"report:  results/report.html (figures, summary and captions in one page)"

smoke: install
	snakemake --cores $(CORES) smoke

test: test-notice install local-slurm fashion-mnist
	pytest

# `make test` changes the machine before it tests: say what, first.
test-notice:
	@echo "make test will:"
	@echo "  1. create the virtual environment $(VENV) and install largelr with its test extras (about 5 GB, once);"
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "  2. as root: apt-get install slurm-wlm and munge, and start a single-node Slurm"; \
		echo "     cluster on this machine (tools/local_slurm.sh), which keeps running afterwards;"; \
	else \
		echo "  2. not root with apt-get: start no Slurm; the Slurm tests will be skipped;"; \
	fi
	@echo "  3. run the full test suite (pytest; about 15-30 min on 2 cores)."
	@if [ -n "$$CI" ] || [ ! -t 0 ]; then exit 0; fi; \
	echo "Starting in 10 s (Ctrl-C to stop)."; sleep 10

# A single-node Slurm on this machine for the Slurm tests (root with apt-get only).
# Elsewhere those tests are skipped; under CI (CI set) they fail instead.
local-slurm:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		tools/local_slurm.sh || { echo "make: local Slurm could not be started" >&2; [ -z "$$CI" ] || exit 1; }; \
	else \
		echo "make: not root with apt-get: the Slurm tests will be skipped (see tools/local_slurm.sh)"; \
	fi

# Real Fashion-MNIST offline: Debian's dataset-fashion-mnist (root with apt-get only); the tests then
# read the real files end to end, and the lr_fashion study runs. Elsewhere: `largelr download fashion_mnist`.
fashion-mnist:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
		echo "make: Fashion-MNIST present in /usr/share/datasets/fashion-mnist"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } \
			|| { echo "make: dataset-fashion-mnist could not be installed" >&2; [ -z "$$CI" ] || exit 1; }; \
	else \
		echo "make: not root with apt-get: run 'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu) or"; \
		echo "      'largelr download fashion_mnist' (online); until then the real-file tests are skipped"; \
	fi

# `snakemake --profile slurm` finds this repository's profile after this one step.
slurm-profile:
	mkdir -p $(SNAKEMAKE_PROFILES)
	ln -sfn $(abspath profiles/slurm) $(SNAKEMAKE_PROFILES)/slurm
	@echo "linked $(SNAKEMAKE_PROFILES)/slurm -> $(abspath profiles/slurm)"

clean:
	rm -rf results .snakemake
