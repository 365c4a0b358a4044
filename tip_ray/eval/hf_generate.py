"""A ``generate_fn`` for evaluation backed by Hugging Face ``generate`` (CPU or one GPU).

The pipeline's rollout backends plug into ``evaluate`` the same way; this one exists so the demo
and ``evaluate`` work on their own, with nothing but a model and its tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class SamplingSettings:
    """How responses are sampled."""

    max_new_tokens: int = 512
    """Longest response, in tokens."""
    temperature: float = 0.0
    """0 means greedy decoding (then the n samples of a prompt are identical)."""
    top_p: float = 1.0
    """Nucleus sampling mass (used only when temperature > 0)."""
    seed: int = 0
    """Seed of the sampling RNG; the same seed and inputs give the same samples."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingSettings.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"SamplingSettings.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingSettings.top_p must be in (0, 1], got {self.top_p}")


def uses_chat_template(tokenizer: PreTrainedTokenizerBase, use_chat_template: bool | None) -> bool:
    """Whether prompts get the chat template; ``None`` means: when the tokenizer has one."""
    has_template = getattr(tokenizer, "chat_template", None) is not None
    if use_chat_template is None:
        return has_template
    if use_chat_template and not has_template:
        raise ValueError(
            f"use_chat_template=True but the tokenizer {tokenizer.name_or_path!r} has no chat "
            "template; set it to False or None"
        )
    return use_chat_template


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str, use_chat_template: bool | None) -> str:
    """The text the model sees: the chat template around ``prompt`` when it applies, else ``prompt``."""
    if not uses_chat_template(tokenizer, use_chat_template):
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


class HFGenerator:
    """``generate_fn(prompts, n) -> n responses per prompt`` with ``model.generate``, batched.

    Batches hold ``batch_size`` sequences (prompts times samples), left-padded. Responses are
    the decoded new tokens without special tokens.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        sampling: SamplingSettings = SamplingSettings(),
        batch_size: int = 64,
        use_chat_template: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"HFGenerator.batch_size must be >= 1, got {batch_size}")
        if tokenizer.pad_token_id is None:
            raise ValueError(
                f"HFGenerator: tokenizer {tokenizer.name_or_path!r} has no pad token; batched "
                "generation needs one (set tokenizer.pad_token = tokenizer.eos_token)"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.sampling = sampling
        self.batch_size = batch_size
        self.use_chat_template = use_chat_template

    @torch.no_grad()
    def _generate_batch(self, texts: Sequence[str], add_special_tokens: bool) -> list[str]:
        previous_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            batch = self.tokenizer(
                list(texts), return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
            ).to(self.model.device)
        finally:
            self.tokenizer.padding_side = previous_side
        greedy = self.sampling.temperature == 0
        sampling_args = {} if greedy else {"temperature": self.sampling.temperature, "top_p": self.sampling.top_p}
        output = self.model.generate(
            **batch,
            max_new_tokens=self.sampling.max_new_tokens,
            do_sample=not greedy,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            **sampling_args,
        )
        new_tokens = output[:, batch["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def __call__(self, prompts: Sequence[str], n: int) -> list[list[str]]:
        if n < 1:
            raise ValueError(f"HFGenerator: n must be >= 1, got {n}")
        texts = [format_prompt(self.tokenizer, p, self.use_chat_template) for p in prompts]
        # A template already holds the special tokens it wants; plain prompts get the usual ones.
        add_special_tokens = not uses_chat_template(self.tokenizer, self.use_chat_template)
        greedy = self.sampling.temperature == 0
        # Greedy samples are identical: generate once per prompt and repeat.
        copies = 1 if greedy else n
        flat = [t for t in texts for _ in range(copies)]
        was_training = self.model.training
        self.model.eval()
        responses: list[str] = []
        device = self.model.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.sampling.seed)
            for start in range(0, len(flat), self.batch_size):
                responses.extend(self._generate_batch(flat[start:start + self.batch_size], add_special_tokens))
        self.model.train(was_training)
        grouped = [responses[i * copies:(i + 1) * copies] for i in range(len(prompts))]
        return [g * n if greedy else g for g in grouped]
