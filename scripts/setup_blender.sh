#!/usr/bin/env bash
# Create (or update) the real-Blender test environments: .venv-bpy45 (bpy 4.5 LTS) and .venv-bpy50
# (bpy 5.0), each bpy from PyPI (a full background Blender as a Python module) with what the add-on and
# its tests need: numpy (the version Blender bundles), pyzmq and msgpack (the versions the add-on zip
# bundles as wheels: scripts/build_addon.py --print-requirements) and pytest.
# Idempotent: an environment that already has exactly these versions is left alone (no network).
# Run the Blender tests with:  .venv-bpy45/bin/python -m pytest tests/blender   (likewise .venv-bpy50)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: bpy needs CPython 3.11; $PY is $("$PY" -V 2>&1). Set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

mapfile -t WHEEL_PINS < <("$PY" scripts/build_addon.py --print-requirements)
[ "${#WHEEL_PINS[@]}" -gt 0 ] || { echo "error: scripts/build_addon.py --print-requirements gave nothing" >&2; exit 2; }
COMMON=("numpy==1.26.4" "${WHEEL_PINS[@]}" "pytest==9.2.0")

# True when every NAME==VERSION given is installed in that exact version.
HAS_PINS='
import importlib.metadata as md, sys
try:
    sys.exit(any(md.version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
except md.PackageNotFoundError:
    sys.exit(1)
'

setup_one() {  # VENV_DIR BPY_VERSION
  local venv=$1 pins=("bpy==$2" "${COMMON[@]}")
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$HAS_PINS" "${pins[@]}" 2>/dev/null; then
    echo "$venv: up to date (${pins[*]})"
    return
  fi
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  echo "$venv: installing ${pins[*]}"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}"
  "$venv/bin/python" -c "$HAS_PINS" "${pins[@]}"
}

setup_one .venv-bpy45 4.5.15
setup_one .venv-bpy50 5.0.1
