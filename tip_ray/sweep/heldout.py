"""A sweep's held-out reverse KL: how far each run's student still is from its teacher on prompts
it never trained on. The student before distillation is the same for every variant, so its
figure is measured once per seed and kept next to the results (an interrupted sweep does not
measure it again)."""

from __future__ import annotations

import json
from pathlib import Path

from tip_ray.config.pipeline import PipelineConfig
from tip_ray.sweep.spec import HeldoutKLSpec

BEFORE_FILE = "heldout_kl_before.jsonl"


class HeldoutKLMeasure:
    def __init__(self, spec: HeldoutKLSpec, base: PipelineConfig, report_dir: Path):
        from tip_ray.models.heal import read_prompts

        self.spec = spec
        self.prompts = read_prompts(spec.prompts, spec.field)[: spec.num_prompts]
        self.max_new_tokens = spec.max_new_tokens or base.rollout.sampling.max_new_tokens
        self.temperature = base.rollout.sampling.temperature
        self.before_path = report_dir / BEFORE_FILE

    def _measure(self, student: str, teacher: str, seed: int) -> float:
        from tip_ray.eval.heldout_kl import heldout_reverse_kl

        return heldout_reverse_kl(student, teacher, self.prompts, self.spec.samples_per_prompt,
                                  self.max_new_tokens, seed=seed, temperature=self.temperature).mean_reverse_kl

    def before(self, config: PipelineConfig, seed: int) -> float:
        """The untrained student's figure for `seed` (the seed fixes the held-out samples)."""
        known = self._known_before()
        if seed not in known:
            from tip_ray.pipeline.prepare import prepare_run

            prepared = prepare_run(config, write=False)
            known[seed] = self._measure(prepared.student_path, prepared.teacher_path, seed)
            with self.before_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"seed": seed, "reverse_kl": known[seed]}) + "\n")
        return known[seed]

    def after(self, final_model: Path, config: PipelineConfig, seed: int) -> float:
        from tip_ray.pipeline.prepare import prepare_run

        return self._measure(str(final_model), prepare_run(config, write=False).teacher_path, seed)

    def _known_before(self) -> dict[int, float]:
        if not self.before_path.exists():
            return {}
        rows = [json.loads(line) for line in self.before_path.read_text().splitlines() if line.strip()]
        return {int(r["seed"]): float(r["reverse_kl"]) for r in rows}
