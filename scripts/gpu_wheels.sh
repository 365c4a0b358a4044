#!/usr/bin/env bash
# Wheels the tier-1 GPU check carries to a bare GPU machine that lacks them: pydantic and its
# dependencies (the learner's settings hold the typed config sections), at the versions pinned in
# requirements/cpu.lock, built for that machine's Python (3.12 by default; GPU_PYTHON=3.11 etc.).
# About 3 MB, written to gpucheck-wheels/; scripts/gpu_tier1.sh installs them when pydantic is missing.
#
#   bash scripts/gpu_wheels.sh            # or: make gpu-wheels
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
TARGET=${GPU_PYTHON:-3.12}
pins=()
for name in pydantic pydantic_core annotated-types typing-inspection typing_extensions; do
    pin=$(grep -i -E "^${name}==" requirements/cpu.lock) || { echo "gpu_wheels: $name is not pinned in requirements/cpu.lock" >&2; exit 1; }
    pins+=("$pin")
done
rm -rf gpucheck-wheels
"$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
    --python-version "$TARGET" --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d gpucheck-wheels "${pins[@]}"
ls gpucheck-wheels
