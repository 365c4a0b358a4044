"""Bad inputs to the vLLM backend fail with an error that names the problem and the fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.vllm_suite.conftest import require_vllm
from tip_ray.models.tiny import build_char_tokenizer

require_vllm()
pytestmark = pytest.mark.vllm

from tip_ray.rollout.vllm_backend import VLLMBackend  # noqa: E402
from tip_ray.vllm_engine.engine import VLLMLoadError  # noqa: E402
from tip_ray.vllm_engine.tokenizer_check import TokenizerMismatchError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_a_model_vllm_cannot_load(student_dir, tokenizer, tmp_path):
    path, _ = student_dir
    bad = tmp_path / "unknown-arch"
    shutil.copytree(path, bad)
    config = json.loads((bad / "config.json").read_text())
    config.update(architectures=["NoSuchModelForCausalLM"], model_type="no_such_model")
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(VLLMLoadError) as caught:
        VLLMBackend(str(bad), tokenizer=tokenizer, max_model_len=128)
    message = str(caught.value)
    assert str(bad) in message and "NoSuchModelForCausalLM" in message
    assert "rollout.backend.type: hf" in message


def test_a_folder_that_is_not_a_model(tokenizer, tmp_path):
    with pytest.raises(VLLMLoadError, match="no config.json"):
        VLLMBackend(str(tmp_path), tokenizer=tokenizer)


def test_a_tokenizer_with_more_tokens_than_the_model(student_dir):
    path, _ = student_dir
    bigger = build_char_tokenizer(alphabet="abcdefghijklmnopqrstuvwxyz0123456789" + "".join(map(chr, range(0x3B1, 0x3F0))))
    with pytest.raises(TokenizerMismatchError, match="vocabulary of"):
        VLLMBackend(path, tokenizer=bigger)


def test_a_tokenizer_with_another_mapping(student_dir, tokenizer):
    path, _ = student_dir
    alphabet = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])][4:]
    shuffled = build_char_tokenizer(alphabet="".join(reversed(alphabet)))
    assert len(shuffled) == len(tokenizer)
    with pytest.raises(TokenizerMismatchError, match="does not match the one in"):
        VLLMBackend(path, tokenizer=shuffled)


def test_an_engine_that_dies_mid_run(student_dir):
    """Multi-process engine whose core is killed between two calls: the next call raises a clear
    VLLMEngineError (run in a child process: vLLM's engine mode is fixed per process)."""
    path, _ = student_dir
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/vllm_suite/engine_death_probe.py"), path],
        capture_output=True, text=True, timeout=420, env=env, cwd=REPO,
    )
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT:")]
    assert results, f"probe printed no result (exit {done.returncode}):\n{done.stderr[-3000:]}"
    assert results[-1].startswith("RESULT: VLLMEngineError"), results[-1]
    assert "failed while sampling" in results[-1] and path in results[-1]
