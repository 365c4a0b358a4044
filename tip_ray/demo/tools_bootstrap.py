"""Make the tool-using demo pair (the prices task) from the cached demo pair, and cache it.

The demo teacher and student already add numbers column by column (tip_ray.demo.bootstrap).
Here both learn the prices task's conversation: call the ``price`` tool for the item in the
prompt, read the tool's answer, add. The tokenizer grows by the characters a tool call needs
(the demo's ids stay where they were) and gets a chat template with a tool role; the models'
embeddings grow to match. The teacher is fine-tuned until it solves the task reliably; the
student gets a short fine-tune and stops while it still fails often, so that distillation has
something to fix. Accuracy is measured the way a run measures it: greedy episodes through the
real multi-turn driver and the ``prices`` tool, graded on the final answer.

Cache layout (``${XDG_CACHE_HOME:-~/.cache}/tip-ray/tools-v1``): ``tokenizer/ teacher/ student/
COMPLETE.json``, written like the demo cache (staging folder, marker, rename, file lock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tip_ray.demo.bootstrap import (
    DemoModels,
    SFTSettings,
    _recipe_record,
    build_into_cache,
    cached_models,
    ensure_demo_models,
    sft_train,
    training_threads,
)
from tip_ray.envs.driver import MultiTurnDriver
from tip_ray.envs.episode import ToolLimits
from tip_ray.envs.template import ToolMessageRenderer
from tip_ray.models.cache import torch_threads
from tip_ray.models.loading import load_causal_lm
from tip_ray.models.tiny import build_char_tokenizer, save_model, save_tokenizer
from tip_ray.rollout.backend import SamplingRequest
from tip_ray.rollout.hf import HFGenerateBackend
from tip_ray.tasks import arithmetic, prices

CACHE_VERSION = "tools-v1"
CONTEXT = 256  # prompt + call + tool answer + worked sum is about 150 tokens
MAX_NEW_TOKENS = 80  # per turn: a call is 67 tokens with its end token, a worked sum up to 55

# User, assistant and tool turns, one character each for the role; an assistant turn ends in
# the end token, as the multi-turn driver requires. The template ignores `tools`: the task's
# single tool is learned from the conversations, not described in the prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}"  # the demo models always saw <bos> first
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}U:{{ m['content'] }}|"
    "{% elif m['role'] == 'assistant' %}A:{{ m['content'] }}<eos>|"
    "{% elif m['role'] == 'tool' %}T:{{ m['content'] }}|"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}A:{% endif %}"
)

TOOL_LIMITS = ToolLimits(max_turns=4, max_tool_response_tokens=16, tool_timeout_s=5.0, max_total_tokens=200)
"""What the checks here and the shipped pipeline allow an episode."""


@dataclass(frozen=True)
class ToolsRecipe:
    """Everything that decides the tool-using pair; stored in the cache marker."""

    teacher_sft: SFTSettings = SFTSettings(steps=500, batch_size=32, lr=1e-3, warmup_steps=20, seed=30,
                                           target_accuracy=0.95, check_every=50, check_from=100, check_size=100)
    student_sft: SFTSettings = SFTSettings(steps=400, batch_size=32, lr=1e-3, warmup_steps=20, seed=40,
                                           schedule="constant", target_accuracy=0.3, check_every=25,
                                           check_from=50, check_size=100)
    eval_size: int = 200
    """Held-out problems (prices.EVAL_SEED) for the accuracies in the marker."""


DEFAULT_TOOLS_RECIPE = ToolsRecipe()


def default_cache_dir() -> Path:
    from tip_ray.demo.bootstrap import default_cache_dir as cache_dir

    return cache_dir(CACHE_VERSION)


def build_tools_tokenizer():
    """The demo tokenizer's characters first (their ids unchanged), then the tool call's."""
    return build_char_tokenizer(arithmetic.ALPHABET + prices.EXTRA_ALPHABET, chat_template=CHAT_TEMPLATE,
                                model_max_length=CONTEXT)


def prompt_ids(tokenizer, problem: prices.PriceProblem) -> list[int]:
    """The prompt as a run's data loader encodes it (chat template, generation prompt)."""
    from tip_ray.data.prompts import encode_prompt

    return encode_prompt(tokenizer, problem.prompt, use_chat_template=True)


def conversation_ids(tokenizer, renderer: ToolMessageRenderer, problem: prices.PriceProblem) -> tuple[list[int], list[bool]]:
    """The solved episode's ids exactly as the multi-turn driver lays them out, and which ones the
    model writes (the call and the worked sum with their end tokens; not the tool's answer)."""
    eos = tokenizer.eos_token_id

    def text(s: str) -> list[int]:
        return list(tokenizer(s, add_special_tokens=False)["input_ids"])

    call = text(prices.tool_call_text(problem.item)) + [eos]
    answer = renderer.delta_ids([str(problem.price)])
    worked = text(problem.worked_sum()) + [eos]
    prompt = prompt_ids(tokenizer, problem)
    ids = prompt + call + answer + worked
    written = [False] * len(prompt) + [True] * len(call) + [False] * len(answer) + [True] * len(worked)
    return ids, written


def _batch(tokenizer, renderer, problems) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = [conversation_ids(tokenizer, renderer, p) for p in problems]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (ids, written) in enumerate(rows):
        row = torch.tensor(ids)
        input_ids[r, : len(ids)] = row
        attention[r, : len(ids)] = 1
        labels[r, : len(ids)] = row.masked_fill(~torch.tensor(written), -100)
    return input_ids, attention, labels


def episode_accuracy(model, tokenizer, problems: list[prices.PriceProblem], batch_size: int = 100) -> float:
    """Greedy episodes through the multi-turn driver and the real tool, graded on the final answer."""
    from tip_ray.tasks.prices import prices_environment

    backend = HFGenerateBackend(model, tokenizer.eos_token_id, tokenizer.pad_token_id, batch_size)
    driver = MultiTurnDriver(backend, tokenizer, prices_environment(), TOOL_LIMITS)
    request = SamplingRequest(temperature=0.0, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS, n=1, seed=0)
    _, report = driver.generate([prompt_ids(tokenizer, p) for p in problems], request)
    return sum(prices.grade(text, p.answer) for text, p in zip(report.final_texts, problems)) / len(problems)


def fine_tune(model, tokenizer, settings: SFTSettings, desc: str, progress: bool = True) -> tuple[int, float | None]:
    """Teacher-forced training on solved episodes (loss on model-written tokens only); returns the
    steps taken and the last check's validation accuracy."""
    renderer = ToolMessageRenderer(tokenizer, TOOL_LIMITS.max_tool_response_tokens)
    validation = prices.make_problems(settings.check_size, prices.VALIDATION_SEED)
    outcome = sft_train(
        model, tokenizer, settings, desc=desc, progress=progress,
        make_batch=lambda rng: _batch(tokenizer, renderer, [prices.make_problem(rng) for _ in range(settings.batch_size)]),
        check=lambda: episode_accuracy(model, tokenizer, validation),
    )
    return outcome.steps, outcome.validation_accuracy


def _grown(path: Path, tokenizer):
    """A demo model with room for the new characters and the longer context."""
    model = load_causal_lm(str(path))
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.config.max_position_embeddings = CONTEXT
    return model


def build_tools_models(out_dir: Path, demo: DemoModels, recipe: ToolsRecipe = DEFAULT_TOOLS_RECIPE,
                       progress: bool = True) -> dict:
    tokenizer = build_tools_tokenizer()
    save_tokenizer(tokenizer, out_dir / "tokenizer")
    held_out = prices.make_problems(recipe.eval_size, prices.EVAL_SEED)
    record: dict = {"recipe": _recipe_record(recipe)}
    threads = training_threads()
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for role, source, sft in (("teacher", demo.teacher_path, recipe.teacher_sft),
                                  ("student", demo.student_path, recipe.student_sft)):
            start = time.perf_counter()
            model = _grown(source, tokenizer)
            steps, _ = fine_tune(model, tokenizer, sft, desc=f"teach the {role} the price tool", progress=progress)
            record[f"{role}_train_s"] = time.perf_counter() - start
            record[f"{role}_steps"] = steps
            record[f"{role}_accuracy"] = episode_accuracy(model, tokenizer, held_out)
            save_model(model, tokenizer, out_dir / role)
            if progress:
                tqdm.write(f"tools {role}: {record[f'{role}_accuracy']:.1%} of {recipe.eval_size} held-out episodes "
                           f"solved ({record[f'{role}_train_s']:.0f} s, {steps} steps)")
    record.update(threads=threads, torch=torch.__version__, demo_teacher_accuracy=demo.teacher_accuracy,
                  demo_student_accuracy=demo.student_accuracy)
    return record


def _root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def cached_tools_models(cache_dir: str | Path | None = None, recipe: ToolsRecipe = DEFAULT_TOOLS_RECIPE) -> DemoModels | None:
    return cached_models(_root(cache_dir), recipe)


def ensure_tools_models(cache_dir: str | Path | None = None, progress: bool = True,
                        recipe: ToolsRecipe = DEFAULT_TOOLS_RECIPE) -> DemoModels:
    """The cached tool-using pair, built first (from the demo pair, built first too) when missing."""
    root = _root(cache_dir)
    cached = cached_models(root, recipe)
    if cached is not None:
        return cached
    demo = ensure_demo_models(progress=progress)
    return build_into_cache(root, recipe, lambda folder: build_tools_models(folder, demo, recipe, progress))
