#!/usr/bin/env bash
# Tier-2 GPU check, for your own GPU machine with Ray, vLLM and the project installed (the bare
# machine check, with torch and transformers only, is tier 1: scripts/gpu_tier1.sh). On a machine
# with a CUDA GPU (and no network needed), in under 8 minutes:
#   1. the GPU-marked tests (vLLM engine on CUDA: log-probs, weight sync, sleep/wake, and with
#      2+ GPUs the NCCL broadcast from a learner process and tensor parallelism);
#   2. rollout throughput, vLLM vs Hugging Face generate, batch 64, plus one weight sync;
#   3. a few pipeline steps with teacher and student on separate devices, then two more with the
#      weights broadcast from the learner to the engine instead of going through the object store;
# then a short table, printed last. Exit status: 0 only when every part passed.
#
#   bash scripts/gpu_tier2.sh            # PYTHON=... to pick the interpreter, OUT=... to keep results
#
# Needs the official vllm package (pip install -e ".[vllm]") and a CUDA build of torch.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
OUT=${OUT:-$(mktemp -d -t tip-ray-gpu-tier2.XXXXXX)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export VLLM_ENABLE_V1_MULTIPROCESSING=${VLLM_ENABLE_V1_MULTIPROCESSING:-0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)

run_part() {  # name, time limit (s), command...: output to $OUT/<name>.log, status to $OUT/<name>.rc
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    local t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$rc $(( $(date +%s) - t0 ))" > "$OUT/$name.rc"
    tail -n 3 "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpus.txt" 2>&1 || true
"$PY" -c "import torch, vllm, transformers, ray; print(f'torch {torch.__version__} cuda {torch.version.cuda}, vllm {vllm.__version__}, transformers {transformers.__version__}, ray {ray.__version__}')" > "$OUT/versions.txt" 2>&1

run_part gpu_tests 200 "$PY" -m pytest tests -m gpu -q -p no:cacheprovider --junitxml "$OUT/gpu_tests.xml"
run_part throughput 110 "$PY" benchmarks/rollout_throughput.py --device cuda --batch 64 \
    --max-new-tokens 128 --repeats 1 --no-write --out "$OUT/throughput.json" --note "gpu check"
run_part pipeline 150 "$PY" scripts/gpu_pipeline_check.py --steps 3 --out "$OUT/pipeline.json"
run_part pipeline_broadcast 120 "$PY" scripts/gpu_pipeline_check.py --steps 2 --weight-sync broadcast \
    --out "$OUT/pipeline_broadcast.json"

echo "== results in $OUT ($(( $(date +%s) - start ))s in all)"
"$PY" scripts/gpu_tier2_table.py "$OUT"
