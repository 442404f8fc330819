#!/usr/bin/env bash
# Runs once inside the new environment, from the workflow's directory (the repository
# root): installs largelr and its dependencies as pinned by pyproject.toml.
set -euo pipefail
python -m pip install --quiet --disable-pip-version-check -e .
