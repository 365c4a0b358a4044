"""A multi-turn step's time split into generation, tool time and teacher scoring.

    python benchmarks/agentic_step.py [--trajectories 16] [--sleep 0.5] [--repeats 2] [--threads 1]

The student is the tiny tool model of the agentic tests (a real Qwen2 model trained here in
seconds to write `<tool_call>{"name":"add",...}</tool_call>`, then the answer), sampled greedily
by Hugging Face `generate` through the multi-turn driver; its `add` tool sleeps `--sleep`
seconds before answering. Every trajectory calls the tool once, so a step has
`--trajectories` calls: run one after another they would take trajectories x sleep; the driver
runs the calls of all trajectories concurrently, so the tool time should stay near one sleep.
The teacher (the same model, as `TeacherScorer` with the hidden-state signal) then scores the
packed trajectories in one forward each. Times are wall-clock seconds per step (best of
`--repeats`); on a shared CPU they vary with the load, which is printed next to them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=16)
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds each tool call sleeps")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()

    import torch

    from tests.agentic.tool_model import build_tool_model, prompt_ids
    from tip_ray.config.teacher import TeacherConfig
    from tip_ray.envs.base import Environment
    from tip_ray.envs.driver import MultiTurnDriver
    from tip_ray.envs.episode import ToolLimits
    from tip_ray.models.loading import load_causal_lm, load_tokenizer
    from tip_ray.records import PromptBatch
    from tip_ray.rollout.backend import SamplingRequest
    from tip_ray.rollout.hf import HFGenerateBackend
    from tip_ray.rollout.pack import pack_rollout
    from tip_ray.teacher.scorer import ScorerSettings, TeacherScorer

    torch.set_num_threads(args.threads)

    def sleepy_add(a: int, b: int) -> int:
        time.sleep(args.sleep)
        return int(a) + int(b)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder, steps = build_tool_model(Path(tmp) / "tool_model")
        print(f"tool model trained in {time.perf_counter() - start:.1f} s ({steps} steps)")
        tokenizer = load_tokenizer(str(folder))
        backend = HFGenerateBackend(load_causal_lm(str(folder), dtype="float32"), tokenizer.eos_token_id,
                                    tokenizer.pad_token_id, batch_size=args.trajectories)
        limits = ToolLimits(max_turns=4, max_tool_response_tokens=64, tool_timeout_s=30.0, max_total_tokens=200)
        driver = MultiTurnDriver(backend, tokenizer, Environment("sleepy", {"add": sleepy_add}), limits)
        scorer = TeacherScorer(ScorerSettings(model_path=str(folder), teacher=TeacherConfig(), num_threads=args.threads))
        prompt = tuple(prompt_ids(tokenizer, "add"))
        request = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=80, n=1, seed=0)
        batch = PromptBatch(batch_id=0, prompt_ids=(prompt,) * args.trajectories, answers=(None,) * args.trajectories,
                            prompt_rows=tuple(range(args.trajectories)))

        best = None
        for _ in range(args.repeats):
            step_start = time.perf_counter()
            samples, report = driver.generate(batch.prompt_ids, request)
            rollout = pack_rollout(batch, samples, policy_version=0, pad_token_id=tokenizer.pad_token_id,
                                   texts=report.final_texts, seconds=0.0, environment=report.counts())
            score_start = time.perf_counter()
            scorer.score(rollout)
            scoring = time.perf_counter() - score_start
            total = time.perf_counter() - step_start
            counts = report.counts()
            row = {"generation_s": report.generation_seconds, "tool_s": report.tool_seconds,
                   "scoring_s": scoring, "step_s": total, "tool_calls": counts["tool_calls"],
                   "turns": counts["turns"], "model_tokens": counts["model_tokens"],
                   "environment_tokens": counts["environment_tokens"]}
            if best is None or row["step_s"] < best["step_s"]:
                best = row

    calls = int(best["tool_calls"])
    if calls != args.trajectories:
        print(f"warning: {calls} tool calls for {args.trajectories} trajectories (the model did not call the tool "
              "in every trajectory)")
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"] * 3
    print(f"{args.trajectories} trajectories, {calls} tool calls of {args.sleep:g} s each, "
          f"{int(best['turns'])} turns, {int(best['model_tokens'])} model-written + "
          f"{int(best['environment_tokens'])} environment tokens; best of {args.repeats} steps:")
    print(f"  generation {best['generation_s']:.2f} s | tools {best['tool_s']:.2f} s | "
          f"teacher scoring {best['scoring_s']:.2f} s | whole step {best['step_s']:.2f} s")
    print(f"  tool calls one after another would take {calls * args.sleep:.2f} s; concurrent: "
          f"{best['tool_s']:.2f} s = {best['tool_s'] / args.sleep:.2f} x one sleep "
          f"(one tool round: every trajectory calls once)")
    print(f"  load average {' '.join(load)} ({os.cpu_count()} CPUs, shared: times vary with the load)")


if __name__ == "__main__":
    main()
