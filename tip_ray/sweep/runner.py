"""Run every (variant, seed) of a sweep on one Ray session and record what each run measured.

Results are appended to <report_dir>/results.jsonl as each run finishes, so an interrupted
sweep continues where it stopped (finished runs are not redone).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tip_ray.pipeline.metrics import read_metrics
from tip_ray.pipeline.step_row import quadrant_column
from tip_ray.sweep.shared_teacher import SweepTeacher, service_override, shared_teacher_reason
from tip_ray.sweep.spec import LoadedSweep
from tip_ray.tip.taxonomy import QUADRANTS



@dataclass(frozen=True)
class RunRecord:
    label: str
    rule: str
    ratio: float
    seed: int
    initial_accuracy: float | None
    final_accuracy: float | None
    tokens_trained: int
    response_tokens: int
    peak_learner_mib: float
    wall_seconds: float
    quadrant_shares: dict[str, float]  # mean over steps of each quadrant's share of response tokens
    curve: list[tuple[int, float]]  # (selected tokens trained so far, eval accuracy)
    # Held-out reverse KL to the teacher (nats per token), when the sweep measures it.
    initial_kl: float | None = None
    final_kl: float | None = None


def read_results(path: Path) -> list[RunRecord]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            row["curve"] = [tuple(p) for p in row["curve"]]
            records.append(RunRecord(**row))
    return records


def record_from_run(label: str, rule: str, ratio: float, seed: int, summary, run_dir: Path,
                    kl: tuple[float, float] | None = None) -> RunRecord:
    rows = read_metrics(run_dir)
    evals = dict(summary.evals)
    cumulative = {0: 0}
    total = 0
    for row in rows:
        total += row["selected_tokens"]
        cumulative[row["step"]] = total
    shares = {
        f"q{q}": sum(r[quadrant_column("share", q)] for r in rows) / max(len(rows), 1) for q in QUADRANTS
    }
    return RunRecord(
        label=label,
        rule=rule,
        ratio=ratio,
        seed=seed,
        initial_accuracy=evals.get(0),
        final_accuracy=evals.get(summary.steps),
        tokens_trained=summary.tokens_trained,
        response_tokens=summary.response_tokens,
        peak_learner_mib=summary.peak_learner_mib,
        wall_seconds=summary.wall_seconds,
        quadrant_shares=shares,
        curve=[(cumulative.get(step, total), acc) for step, acc in sorted(evals.items())],
        initial_kl=kl[0] if kl else None,
        final_kl=kl[1] if kl else None,
    )


def forget_runs(loaded: LoadedSweep) -> None:
    """Start a sweep over: its results, its measured start figures and its run folders go (the
    report's hand-written discussion stays)."""
    import shutil

    from tip_ray.sweep.heldout import BEFORE_FILE
    from tip_ray.sweep.start import START_FILE

    for name in ("results.jsonl", BEFORE_FILE, START_FILE):
        (loaded.report_dir / name).unlink(missing_ok=True)
    shutil.rmtree(loaded.runs_dir, ignore_errors=True)


def run_sweep(loaded: LoadedSweep, *, address: str | None = None, log=print,
              shared_teacher: bool = True) -> list[RunRecord]:
    """Run what is not done yet. With `shared_teacher`, runs that share a teacher score with one
    teacher service built once for the sweep (sweep.shared_teacher) instead of one each."""
    import ray

    from tip_ray.pipeline.ray_lifecycle import init_ray

    report_dir = loaded.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    results_path = report_dir / "results.jsonl"
    done = {(r.label, r.seed) for r in read_results(results_path)}
    # Seed-major order: an interrupted sweep has seen every variant before repeating any.
    todo = [(run, seed) for seed in loaded.spec.seeds for run in loaded.spec.runs if (run.label, seed) not in done]
    log(f"sweep {loaded.path.name}: {len(todo)} runs to do, {len(done)} already done")
    started = init_ray(loaded.base, address)
    try:
        why_not = shared_teacher_reason([loaded.run_config(run, seed) for run, seed in todo]) if todo else "no runs"
        if shared_teacher and why_not is None:
            with SweepTeacher(loaded.run_config(*todo[0]), log=log) as teacher:
                _run_each(loaded, todo, results_path, log, service_override(teacher.name))
        else:
            if shared_teacher and todo:
                log(f"each run starts its own teacher: {why_not}")
            _run_each(loaded, todo, results_path, log, None)
    finally:
        if started:
            ray.shutdown()
    return read_results(results_path)


def _run_each(loaded: LoadedSweep, todo: list, results_path: Path, log, teacher_override: dict | None) -> None:
    from tip_ray.pipeline.supervisor import run_pipeline
    from tip_ray.sweep.heldout import HeldoutKLMeasure

    heldout = loaded.spec.heldout_kl and HeldoutKLMeasure(
        loaded.spec.heldout_kl, loaded.run_config(loaded.spec.runs[0], loaded.spec.seeds[0]), loaded.report_dir)
    for index, (run, seed) in enumerate(todo, start=1):
        config = loaded.run_config(run, seed, teacher_override)
        run_dir = Path(config.logging.run_dir)
        if (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()  # an unfinished earlier attempt: start it over
        begin = time.perf_counter()
        kl_before = heldout.before(seed) if heldout else None
        summary = run_pipeline(config)
        kl = None
        if heldout:  # load_sweep made sure every run exports its final model
            kl = (kl_before, heldout.after(summary.final_model, seed))
        record = record_from_run(run.label, run.rule.type, run.rule.ratio, seed, summary, run_dir, kl)
        with results_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(record)) + "\n")
        measured = (f"held-out reverse KL {record.initial_kl:.3f} -> {record.final_kl:.3f}" if kl else
                    f"accuracy {record.initial_accuracy} -> {record.final_accuracy}")
        log(f"[{index}/{len(todo)}] {run.label} seed {seed}: {measured}, {record.tokens_trained} tokens, "
            f"{time.perf_counter() - begin:.0f} s")
