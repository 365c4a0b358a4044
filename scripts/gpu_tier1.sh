#!/usr/bin/env bash
# Tier-1 GPU check, for a bare GPU machine with only torch and transformers installed (no Ray or
# vLLM, no network; pydantic comes from carried wheels, see below): the method core in bf16 against float64, the learner's loss-step
# memory and time at Qwen3-4B's dimensions, the FSDP2 learner step of a 0.6B Qwen3-shaped model,
# Hugging Face generate. At most 7 minutes (each section has its own time budget); 2-4 expected.
#
#   bash scripts/gpu_tier1.sh                         # results in $OUT, else ./gpucheck-out
#   bash scripts/gpu_tier1.sh --sections loss_step    # extra arguments go to python -m tip_ray.gpucheck
#
# Where pydantic is not installed, the wheels in gpucheck-wheels/ (made here by
# `make gpu-wheels`, about 3 MB) are installed into a temporary folder first: carry that folder.
#
# Writes tier1.json (everything), tier1.md (the table for docs/benchmarks.md), tier1.log (each
# section's output) and parts/<section>.json. Exit status 0 when every section finished and every
# numerical check passed. docs/gpu.md says how to read the results.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export OUT=${OUT:-$PWD/gpucheck-out}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$OUT"
if ! "$PY" -c "import pydantic" 2>/dev/null; then
    if ! ls gpucheck-wheels/*.whl >/dev/null 2>&1; then
        echo "gpu_tier1: pydantic is not installed here and gpucheck-wheels/ is missing: run" \
             "'make gpu-wheels' on a machine with network and carry gpucheck-wheels/ along" >&2
        exit 2
    fi
    SITE=$(mktemp -d)/site
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --target "$SITE" gpucheck-wheels/*.whl \
        || { echo "gpu_tier1: installing gpucheck-wheels/ failed (built for another Python? GPU_PYTHON=3.x make gpu-wheels)" >&2; exit 2; }
    export PYTHONPATH="$PYTHONPATH:$SITE"
fi
{ echo "== nvidia-smi"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1; } >> "$OUT/tier1.log"
exec "$PY" -m tip_ray.gpucheck --out "$OUT" "$@"
