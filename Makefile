# tip-ray: `make demo` runs the main job, `make test` runs the tests (both set up .venv first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-cpu
PYTEST := $(BIN)/python -m pytest
# torch is installed first and pinned: an unpinned torch requirement can pull a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: setup demo test test-slow test-vllm test-all bench lint clean

$(STAMP): pyproject.toml requirements/cpu.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -c requirements/cpu.lock -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/tip-ray demo

test: $(STAMP)
	$(PYTEST) -m "not slow and not vllm and not gpu" -q

test-slow: $(STAMP)
	$(PYTEST) -m "slow" -q

bench: $(STAMP)
	$(BIN)/pip install -q -c requirements/cpu.lock -e ".[bench]"
	$(BIN)/python benchmarks/selective_memory.py
	$(BIN)/python benchmarks/pipeline_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache
