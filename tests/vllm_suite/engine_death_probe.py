"""Run as a script by test_vllm_bad_inputs.py: start a multi-process vLLM engine, kill its engine
core process (started by this script), then ask for samples. Prints one line starting with
RESULT: the error type and message the caller saw, or OK if none was raised."""

from __future__ import annotations

import os
import signal
import sys
import time

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"  # the engine core in a child process

import psutil  # noqa: E402

from tip_ray.models.tiny import build_char_tokenizer  # noqa: E402
from tip_ray.rollout.backend import SamplingRequest  # noqa: E402
from tip_ray.rollout.vllm_backend import VLLMBackend  # noqa: E402


def main(model_path: str) -> None:
    tokenizer = build_char_tokenizer()
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    backend = VLLMBackend(model_path, tokenizer=tokenizer, dtype="float32", max_model_len=128)
    request = SamplingRequest(temperature=1.0, top_p=1.0, max_new_tokens=4, n=1, seed=0)
    prompt = [tokenizer("1+1=")["input_ids"]]
    backend.generate(prompt, request)  # alive and serving
    started = [p for p in me.children(recursive=True) if p.pid not in before]
    if not started:
        print("RESULT: NO_CHILD engine core did not run in a child process", flush=True)
        return
    for child in started:
        os.kill(child.pid, signal.SIGKILL)
    time.sleep(2.0)
    try:
        backend.generate(prompt, request)
    except Exception as exc:  # the point: which error, with which message
        print(f"RESULT: {type(exc).__name__}: {' '.join(str(exc).split())}", flush=True)
    else:
        print("RESULT: OK", flush=True)
    finally:
        backend.close()


if __name__ == "__main__":
    main(sys.argv[1])
