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
    def __init__(self, spec: HeldoutKLSpec, config: PipelineConfig, report_dir: Path):
        """`config`: any run of the sweep (its variants differ in rule and seed only, so they share
        the teacher, the untrained student and the sampling settings)."""
        from tip_ray.models.heal import read_prompts

        self.spec = spec
        self.config = config
        self.prompts = read_prompts(spec.prompts, spec.field, place="sweep.heldout_kl.prompts",
                                    field_key="sweep.heldout_kl.field")[: spec.num_prompts]
        self.max_new_tokens = spec.max_new_tokens or config.rollout.sampling.max_new_tokens
        self.temperature = config.rollout.sampling.temperature
        self.before_path = report_dir / BEFORE_FILE
        self._folders: tuple[str, str] | None = None

    def _student_and_teacher(self) -> tuple[str, str]:
        """The untrained student's and the teacher's folders, resolved once for the whole sweep."""
        if self._folders is None:
            from tip_ray.pipeline.prepare import prepare_run

            prepared = prepare_run(self.config, write=False)
            self._folders = (prepared.student_path, prepared.teacher_path)
        return self._folders

    def _measure(self, student: str, seed: int) -> float:
        from tip_ray.eval.heldout_kl import heldout_reverse_kl

        teacher = self._student_and_teacher()[1]
        return heldout_reverse_kl(student, teacher, self.prompts, self.spec.samples_per_prompt,
                                  self.max_new_tokens, seed=seed, temperature=self.temperature).mean_reverse_kl

    def before(self, seed: int) -> float:
        """The untrained student's figure for `seed` (the seed fixes the held-out samples)."""
        known = self._known_before()
        if seed not in known:
            known[seed] = self._measure(self._student_and_teacher()[0], seed)
            with self.before_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"seed": seed, "reverse_kl": known[seed]}) + "\n")
        return known[seed]

    def after(self, final_model: Path, seed: int) -> float:
        return self._measure(str(final_model), seed)

    def _known_before(self) -> dict[int, float]:
        if not self.before_path.exists():
            return {}
        rows = [json.loads(line) for line in self.before_path.read_text().splitlines() if line.strip()]
        return {int(r["seed"]): float(r["reverse_kl"]) for r in rows}
