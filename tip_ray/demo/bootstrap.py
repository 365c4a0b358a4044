"""Make the demo's teacher and student with nothing downloaded, and cache them.

The teacher is trained from scratch on the arithmetic task (tip_ray.tasks.arithmetic) until it is
accurate; the student, a smaller model, gets a short supervised fine-tune on the same kind of
generated solutions, so it starts clearly below the teacher and on-policy distillation has
something to fix. Both share one character-level tokenizer.

Cache layout (``${XDG_CACHE_HOME:-~/.cache}/tip-ray/demo-v1``):

    tokenizer/  teacher/  student/  COMPLETE.json

The folder is built under a temporary name and renamed into place after ``COMPLETE.json`` (the
marker, with the recipe and the measured accuracies) is written, so a half-written cache is never
used; a file lock keeps two processes from building it at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tip_ray.tasks import arithmetic as task
from tip_ray.tasks.registry import DEMO_TASK, get_task
from tip_ray.eval.benchmarks import load_task_benchmark
from tip_ray.eval.evaluate import evaluate
from tip_ray.eval.hf_generate import HFGenerator, SamplingSettings
from tip_ray.models.cache import exclusive_lock, torch_threads
from tip_ray.models.tiny import (
    TinyModelSpec,
    build_char_tokenizer,
    build_tiny_model,
    save_model,
    save_tokenizer,
)

CACHE_VERSION = "demo-v1"
MARKER_FILE = "COMPLETE.json"
# Longest demo response is 46 characters plus <eos>; a little slack lets wrong answers run on.
MAX_NEW_TOKENS = 64


@dataclass(frozen=True)
class SFTSettings:
    """One supervised run on freshly generated problems (no example is seen twice, in effect)."""

    steps: int
    """Optimizer steps (the most, when ``target_accuracy`` stops the run earlier)."""
    batch_size: int = 64
    """Problems per step."""
    lr: float = 2e-3
    """Peak AdamW learning rate, after a linear warm-up."""
    warmup_steps: int = 50
    schedule: Literal["cosine", "constant"] = "cosine"
    """``cosine`` decays to 10% of ``lr`` over ``steps``; ``constant`` keeps it (for early stops)."""
    seed: int = 0
    """Seed of the problem stream (the model init has its own seed)."""
    target_accuracy: float | None = None
    """Stop at the first check whose greedy accuracy on the validation split reaches this."""
    check_every: int = 25
    """Steps between accuracy checks (only with ``target_accuracy``)."""
    check_size: int = 100
    """Validation problems per check."""
    check_from: int = 0
    """No checks before this step (they cost time and cannot succeed that early)."""


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that decides the demo models; stored in the cache marker."""

    teacher_spec: TinyModelSpec = TinyModelSpec(
        hidden_size=128, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=512,
        max_position_embeddings=128,
    )
    student_spec: TinyModelSpec = TinyModelSpec(
        hidden_size=96, num_layers=2, num_heads=3, num_kv_heads=1, intermediate_size=384,
        max_position_embeddings=128,
    )
    # Cosine over at most 650 steps, stopped at 96% validation accuracy. Measured (1 thread):
    # checks at steps 400/450/500/550/600 gave 85/97/96/97/98%, so it stops at 450 with ~97%.
    teacher_sft: SFTSettings = SFTSettings(steps=650, seed=10, target_accuracy=0.96, check_every=50,
                                           check_from=400)
    # A constant rate, stopped once about half-competent. Measured: at this rate the student's
    # greedy accuracy climbs from ~0 to ~50% between steps 300 and 450 and then stays near 50%
    # up to step 700 (the rate is too high to settle further); 30 steps of OPD at lr 3e-4 took
    # students stopped at steps 450/550/700 from 64/59/48% to 77/79/85% (lr 1e-3 made it worse).
    student_sft: SFTSettings = SFTSettings(steps=700, seed=20, schedule="constant", target_accuracy=0.4,
                                           check_every=25, check_from=450)
    init_seed: int = 0
    eval_size: int = task.EVAL_SIZE
    """Held-out problems (task.EVAL_SEED) for the reported greedy accuracies."""


DEFAULT_RECIPE = DemoRecipe()


@dataclass(frozen=True)
class DemoModels:
    """Paths of the cached demo models and their greedy accuracy on the held-out set."""

    tokenizer_path: Path
    teacher_path: Path
    student_path: Path
    teacher_accuracy: float
    student_accuracy: float


def default_cache_dir(version: str = CACHE_VERSION) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/tip-ray/<version>`` (demo-v1 by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tip-ray" / version


def training_threads() -> int:
    """Torch threads for the bootstrap: one, unless ``TIP_RAY_DEMO_THREADS`` asks for more.

    One thread makes the demo models the same on every machine with this torch build: with two,
    the reductions add up in another order, the first 60 teacher steps already end on another
    loss, and the validation-based stop can fall on another step. Measured on the 2-core machine,
    quiet: 0.39 s a teacher step with one thread, 0.26 s with two (under load two threads were
    slower still: 3.5 s against 0.87 s, spinning while descheduled).
    """
    requested = os.environ.get("TIP_RAY_DEMO_THREADS")
    if requested:
        try:
            return max(1, int(requested))
        except ValueError:
            raise ValueError(f"TIP_RAY_DEMO_THREADS={requested!r}: expected a whole number of threads") from None
    return 1


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Right-padded (input_ids, attention_mask, labels) of one training step."""


def _encode_batch(tokenizer: PreTrainedTokenizerBase, problems: list[task.ArithmeticProblem]) -> Batch:
    """Right-padded (input_ids, attention_mask, labels), each [batch, T] int64; labels are -100
    on the prompt and padding so only the solution and its <eos> are learned."""
    prompts = tokenizer([p.prompt for p in problems])["input_ids"]
    solutions = tokenizer([p.solution for p in problems], add_special_tokens=False)["input_ids"]
    sequences = [p + s + [tokenizer.eos_token_id] for p, s in zip(prompts, solutions)]
    length = max(map(len, sequences))
    input_ids = torch.full((len(sequences), length), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(sequences), length), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, (prompt, sequence) in enumerate(zip(prompts, sequences)):
        input_ids[row, :len(sequence)] = torch.tensor(sequence)
        attention_mask[row, :len(sequence)] = 1
        labels[row, len(prompt):len(sequence)] = torch.tensor(sequence[len(prompt):])
    return input_ids, attention_mask, labels


def _learning_rate(settings: SFTSettings, step: int) -> float:
    warmup = min(1.0, (step + 1) / max(1, settings.warmup_steps))
    if settings.schedule == "constant":
        return settings.lr * warmup
    progress = step / max(1, settings.steps)
    return settings.lr * warmup * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class SFTOutcome:
    """What a supervised run did."""

    steps: int
    """Optimizer steps taken."""
    final_loss: float
    """Mean training loss over the last 20 steps."""
    validation_accuracy: float | None
    """Greedy accuracy at the last check (None without ``target_accuracy``)."""


def sft_train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    settings: SFTSettings,
    desc: str = "sft",
    progress: bool = True,
    make_batch: Callable[[random.Random], Batch] | None = None,
    check: Callable[[], float] | None = None,
) -> SFTOutcome:
    """Train ``model`` in place on generated task solutions (teacher forcing, loss on the solution).

    By default on the arithmetic task: ``make_batch`` draws ``settings.batch_size`` problems from
    the run's generator and encodes them, ``check`` is greedy accuracy on the validation split.
    Another task passes its own (the tool-using pair: episodes, and accuracy through the driver).
    """
    rng = random.Random(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.98), weight_decay=0.0)
    checking = settings.target_accuracy is not None
    if make_batch is None:
        def make_batch(rng: random.Random) -> Batch:
            return _encode_batch(tokenizer, [task.make_problem(rng) for _ in range(settings.batch_size)])
    if checking and check is None:
        validation = task.make_problems(settings.check_size, task.VALIDATION_SEED)

        def check() -> float:
            return _accuracy_on(model, tokenizer, validation)
    model.train()
    recent: list[float] = []
    accuracy: float | None = None
    steps_taken = 0
    bar = tqdm(range(settings.steps), desc=desc, disable=not progress, unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(settings, step)
        input_ids, attention_mask, labels = make_batch(rng)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps_taken = step + 1
        recent = (recent + [loss.item()])[-20:]
        if step % 10 == 0:
            bar.set_postfix(loss=f"{recent[-1]:.4f}", **({} if accuracy is None else {"acc": f"{accuracy:.0%}"}))
        if checking and steps_taken >= settings.check_from and steps_taken % settings.check_every == 0:
            accuracy = check()
            model.train()
            if accuracy >= settings.target_accuracy:
                break
    bar.close()
    model.eval()
    return SFTOutcome(steps=steps_taken, final_loss=sum(recent) / max(1, len(recent)), validation_accuracy=accuracy)


def _accuracy_on(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 problems: list[task.ArithmeticProblem]) -> float:
    generator = HFGenerator(model, tokenizer, SamplingSettings(max_new_tokens=MAX_NEW_TOKENS), batch_size=250)
    responses = generator([p.prompt for p in problems], 1)
    return sum(task.grade(r[0], p.answer) for r, p in zip(responses, problems)) / len(problems)


def greedy_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, eval_size: int, progress: bool = False
) -> float:
    """Fraction of the held-out demo problems the model answers correctly with greedy decoding."""
    generator = HFGenerator(model, tokenizer, SamplingSettings(max_new_tokens=MAX_NEW_TOKENS), batch_size=250)
    report = evaluate(generator, load_task_benchmark("demo", n=eval_size), n=1, grader=get_task(DEMO_TASK).grade_all,
                      chunk_size=250, progress=progress)
    return report.mean.value


def _models_from(root: Path, marker: dict) -> DemoModels:
    return DemoModels(
        tokenizer_path=root / "tokenizer",
        teacher_path=root / "teacher",
        student_path=root / "student",
        teacher_accuracy=float(marker["teacher_accuracy"]),
        student_accuracy=float(marker["student_accuracy"]),
    )


def _recipe_record(recipe) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(recipe)))


def build_demo_models(out_dir: Path, recipe: DemoRecipe = DEFAULT_RECIPE, progress: bool = True) -> dict:
    """Train the tokenizer/teacher/student into ``out_dir`` (no marker); returns the marker record."""
    tokenizer = build_char_tokenizer(task.ALPHABET, model_max_length=recipe.teacher_spec.max_position_embeddings)
    save_tokenizer(tokenizer, out_dir / "tokenizer")
    vocab_size = len(tokenizer)
    timings: dict[str, float | int] = {}
    accuracies: dict[str, float] = {}
    threads = training_threads()
    with torch_threads(threads):
        for role, spec, sft, init_offset in (
            ("teacher", recipe.teacher_spec, recipe.teacher_sft, 0),
            ("student", recipe.student_spec, recipe.student_sft, 1),
        ):
            start = time.perf_counter()
            model = build_tiny_model(spec, vocab_size, seed=recipe.init_seed + init_offset)
            outcome = sft_train(model, tokenizer, sft, desc=f"train demo {role}", progress=progress)
            timings[f"{role}_train_s"] = time.perf_counter() - start
            timings[f"{role}_steps"] = outcome.steps
            accuracies[role] = greedy_accuracy(model, tokenizer, recipe.eval_size)
            save_model(model, tokenizer, out_dir / role)
            if progress:
                tqdm.write(f"demo {role}: greedy accuracy {accuracies[role]:.1%} on {recipe.eval_size} "
                           f"held-out problems ({timings[f'{role}_train_s']:.0f} s training)")
    if accuracies["teacher"] < 0.9 or accuracies["student"] >= accuracies["teacher"]:
        warnings.warn(
            f"demo models off target: teacher {accuracies['teacher']:.1%} (want >= 90%), student "
            f"{accuracies['student']:.1%} (want clearly below the teacher)", stacklevel=2,
        )
    return {
        "recipe": _recipe_record(recipe),
        "teacher_accuracy": accuracies["teacher"],
        "student_accuracy": accuracies["student"],
        **timings,
        "threads": threads,
        "torch": torch.__version__,
    }


def _read_marker(root: Path) -> dict | None:
    marker = root / MARKER_FILE
    if not marker.is_file():
        return None
    return json.loads(marker.read_text())


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def cached_models(root: Path, recipe) -> DemoModels | None:
    """The pair cached in `root` when the cache is complete and built from `recipe`; never builds."""
    marker = _read_marker(root)
    if marker is not None and marker.get("recipe") == _recipe_record(recipe):
        return _models_from(root, marker)
    return None


def build_into_cache(root: Path, recipe, build: Callable[[Path], dict]) -> DemoModels:
    """The pair cached in `root`, built first by ``build(folder) -> marker record`` when missing,
    incomplete or from another recipe: in a staging folder, under a file lock, renamed into place
    after the marker is written, so that a half-written cache is never used."""
    cached = cached_models(root, recipe)
    if cached is not None:
        return cached
    with exclusive_lock(root.parent / f".{root.name}.lock"):
        cached = cached_models(root, recipe)  # another process may have finished it meanwhile
        if cached is not None:
            return cached
        if root.exists():
            unexpected = sorted(p.name for p in root.iterdir() if p.name not in ("tokenizer", "teacher", "student", MARKER_FILE))
            if unexpected:
                raise RuntimeError(
                    f"demo cache {root} holds files it did not write ({unexpected[:5]}); "
                    "pass another cache_dir or remove that folder"
                )
        # Builders hold the lock, so any staging folder seen here is left from a killed build.
        for stale in root.parent.glob(f".{root.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = root.parent / f".{root.name}.partial-{os.getpid()}"
        staging.mkdir(parents=True)
        try:
            record = build(staging)
            (staging / MARKER_FILE).write_text(json.dumps(record, indent=2) + "\n")
            if root.exists():  # incomplete or built from another recipe
                shutil.rmtree(root)
            staging.rename(root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _models_from(root, record)


def cached_demo_models(cache_dir: str | Path | None = None, recipe: DemoRecipe = DEFAULT_RECIPE) -> DemoModels | None:
    """The cached demo models when the cache is complete and built from `recipe`; never builds."""
    return cached_models(_cache_root(cache_dir), recipe)


def ensure_demo_models(
    cache_dir: str | Path | None = None,
    progress: bool = True,
    recipe: DemoRecipe = DEFAULT_RECIPE,
) -> DemoModels:
    """The cached demo models, built first when the cache is missing, incomplete or from another recipe."""
    return build_into_cache(_cache_root(cache_dir), recipe, lambda folder: build_demo_models(folder, recipe, progress))
