"""The end of a run: the trained student exported (and a LoRA run's adapters), and the summary the
commands print, read back from the whole run folder (across resumes)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from tip_ray.pipeline.metrics import read_metrics
from tip_ray.pipeline.session_state import SessionState
from tip_ray.weights import WeightVersion, resolve_state_dict


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    steps: int
    final_loss: float
    tokens_trained: int  # selected tokens the learner trained on (skipped steps excluded)
    response_tokens: int  # tokens sampled
    peak_learner_mib: float
    wall_seconds: float
    evals: tuple[tuple[int, float], ...]  # (step, accuracy)
    final_model: Path | None  # Hugging Face folder of the trained student
    resumed_from: int | None = None  # checkpoint step this process last resumed from
    resumes: int = 0
    batches_redone: int = 0
    in_flight_relaunched: int = 0
    actor_restarts: int = 0
    skipped_steps: int = 0
    final_adapter: Path | None = None  # peft adapter folder of a LoRA run (final_model is merged)


def final_summary(session: SessionState, weights: WeightVersion) -> RunSummary:
    run_dir = session.prepared.run_dir
    final_model = run_dir / "final_model"
    if weights.refs is not None:
        from tip_ray.learner.export import export_hf

        final_model = export_hf(resolve_state_dict(weights), session.prepared.student_path, final_model)
    final_adapter = None
    if session.config.learner.lora is not None:
        from tip_ray.learner.lora import LoraSettings
        from tip_ray.pipeline.adapter_export import export_final_adapter

        final_adapter = export_final_adapter(
            session.actors.learners, LoraSettings.from_config(session.config.learner.lora),
            session.prepared.student_path, run_dir / "final_adapter", session.config.train.stage_timeout_s)
    rows = read_metrics(run_dir)  # the whole run, across resumes
    evals = []
    path = run_dir / "evals.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and json.loads(line).get("accuracy") is not None:
                evals.append((int(json.loads(line)["step"]), float(json.loads(line)["accuracy"])))
    return RunSummary(
        run_dir=run_dir,
        steps=session.config.train.steps,
        final_loss=rows[-1]["loss"] if rows else float("nan"),
        tokens_trained=sum(r["selected_tokens"] for r in rows if not r.get("skipped")),
        response_tokens=sum(r["response_tokens"] for r in rows),
        peak_learner_mib=max((r["learner_peak_mib"] for r in rows), default=0.0),
        wall_seconds=time.perf_counter() - session.start_wall,
        evals=tuple(evals),
        final_model=final_model if final_model.exists() else None,
        resumed_from=session.resumed_from,
        resumes=session.faults.resumes,
        batches_redone=session.faults.batches_redone,
        in_flight_relaunched=session.faults.in_flight_relaunched,
        actor_restarts=session.faults.actor_restarts,
        skipped_steps=session.training.skipped_steps,
        final_adapter=final_adapter,
    )
