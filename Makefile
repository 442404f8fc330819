# Two entry points: `make demo` and `make test`. Both create the virtual
# environment on first use; the rules find `largelr` on PATH through it.
VENV ?= .venv
PYTHON ?= python3
CORES ?= all
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo smoke test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

demo: install
	snakemake --cores $(CORES) demo

smoke: install
	snakemake --cores $(CORES) smoke

test: install
	pytest

clean:
	rm -rf results .snakemake
