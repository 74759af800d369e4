#!/usr/bin/env bash
# Set up, then run the whole check: ruff, mypy, the test suite, and the real-Blender tests under
# bpy 4.5 LTS and 5.0 (tests/blender, each in its own environment from scripts/setup_blender.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_blender.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Everything, the tests marked slow too (the default leaves them out: pyproject.toml, tests/blender/pytest.ini).
.venv/bin/python -m pytest -q -m "slow or not slow" "$@"
# Blender tests that start the real backend run it with the dev environment's Python.
export ADAIN_BACKEND_PYTHON="$PWD/.venv/bin/python"
for venv in .venv-bpy45 .venv-bpy50; do
  echo "== tests/blender with $("$venv/bin/python" -c 'import importlib.metadata as m; print("bpy", m.version("bpy"))')"
  "$venv/bin/python" -m pytest -q -m "slow or not slow" tests/blender
done
