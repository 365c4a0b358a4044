"""Checks shared by the LoRA pipeline tests: the exported peft adapter, loaded on the base with
peft, reproduces the run's final evaluation and the merged export's greedy outputs."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def final_eval_row(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines() if line.strip()]
    return rows[-1]


def evaluate_with_state(config, state: dict, version: int):
    """The run's own evaluation (its rollout worker code, its benchmark and grader), in this
    process, with the given weights."""
    from tip_ray.pipeline.evaluation import RunEvaluator
    from tip_ray.pipeline.placement import plan_placement
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.stages import rollout_settings
    from tip_ray.rollout.worker import RolloutWorker
    from tip_ray.weights import WeightVersion

    prepared = prepare_run(config, write=False)
    worker = RolloutWorker(rollout_settings(prepared, plan_placement(config)["rollout"], 0))
    evaluator = RunEvaluator(config.eval, worker, config.data.chat_template == "auto", config.train.seed,
                             remote=False)
    return evaluator.run(WeightVersion(version=version, refs=(state,)))


def check_adapter_reproduces_run(config, summary) -> float:
    """Returns the final accuracy, after checking that (1) the adapter folder loads with peft's
    own loader on the base student, (2) its merge evaluates to exactly the run's final accuracy,
    and (3) greedy generation with the unmerged adapter equals the merged export's."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tip_ray.eval.hf_generate import HFGenerator, SamplingSettings

    student = str(summary_student_path(config))
    assert summary.final_adapter is not None and (summary.final_adapter / "adapter_config.json").is_file()
    adapter_config = json.loads((summary.final_adapter / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA" and adapter_config["r"] == config.learner.lora.rank

    base = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(summary.final_adapter)).eval()
    merged_by_peft = {k: v.clone() for k, v in
                      PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32),
                                                str(summary.final_adapter)).merge_and_unload().state_dict().items()}
    run_row = final_eval_row(summary.run_dir)
    report = evaluate_with_state(config, merged_by_peft, config.train.steps)
    assert report.mean.value == run_row["accuracy"], (report.mean.value, run_row)

    exported = load_file(str(summary.final_model / "model.safetensors"))
    from_export = evaluate_with_state(config, exported, config.train.steps)
    assert [o.responses for o in report.outcomes] == [o.responses for o in from_export.outcomes]

    tokenizer = AutoTokenizer.from_pretrained(student)
    sampling = SamplingSettings(max_new_tokens=config.eval.max_new_tokens, temperature=0.0)
    prompts = [o.prompt for o in report.outcomes]
    plain = AutoModelForCausalLM.from_pretrained(summary.final_model, dtype=torch.float32).eval()
    unmerged = HFGenerator(with_adapter, tokenizer, sampling, use_chat_template=False)(prompts, 1)
    merged = HFGenerator(plain, tokenizer, sampling, use_chat_template=False)(prompts, 1)
    assert unmerged == merged
    return report.mean.value


def summary_student_path(config) -> Path:
    from tip_ray.pipeline.prepare import prepare_run

    return Path(prepare_run(config, write=False).student_path)
