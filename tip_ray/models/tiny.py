"""Tiny causal LMs and a character-level tokenizer, built from a spec with nothing downloaded.

Tests and the demo need real Hugging Face models (the same classes a user trains) that are
small enough for a 2-core CPU. Everything here is standard: a ``tokenizers`` WordLevel model
over single characters wrapped as a fast tokenizer, and stock Qwen2/Llama configs, so the saved
folders load with ``AutoModelForCausalLM`` (and vLLM) like any hub model, and their tokenizer
with ``load_tokenizer`` (see ``save_tokenizer``).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
# Special tokens take the first ids, in this order, so ids are the same for every alphabet.
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(len(SPECIAL_TOKENS))

# Printable ASCII without the rarely wanted control whitespace (tab, CR, VT, FF).
DEFAULT_ALPHABET = string.digits + string.ascii_letters + string.punctuation + " \n"


def build_char_tokenizer(
    alphabet: str = DEFAULT_ALPHABET,
    chat_template: str | None = None,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """A tokenizer with one token per character of ``alphabet`` plus <pad>, <bos>, <eos>, <unk>.

    Encoding prepends <bos> (the models are trained that way); characters outside the alphabet
    become <unk>; decoding joins characters with nothing in between. Padding is on the left,
    as batched generation needs. No chat template unless one is given, so prompts stay plain
    text (a pipeline applies a template only when the tokenizer has one).
    """
    chars = list(dict.fromkeys(alphabet))  # unique, order kept
    if not chars:
        raise ValueError("build_char_tokenizer: alphabet is empty; pass the characters to encode")
    clashes = [c for c in chars if c in SPECIAL_TOKENS]
    if clashes:
        raise ValueError(f"build_char_tokenizer: alphabet entries {clashes} clash with special tokens")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({c: len(SPECIAL_TOKENS) + i for i, c in enumerate(chars)})

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # [\s\S] (not ".") so that newlines match too: every character becomes its own token.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B",
        special_tokens=[(BOS_TOKEN, BOS_ID)],
    )
    backend.add_special_tokens(list(SPECIAL_TOKENS))

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        # The default clean-up would turn " ," into ",", changing character-level text.
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny decoder-only model; maps one-to-one onto a stock Qwen2 or Llama config."""

    arch: Literal["qwen2", "llama"] = "qwen2"
    """Model family; both load in transformers and vLLM without custom code."""
    hidden_size: int = 64
    """Width d of the residual stream (and of the teacher hidden states sent to the learner)."""
    num_layers: int = 2
    """Number of transformer blocks."""
    num_heads: int = 2
    """Attention heads; head_dim = hidden_size / num_heads (keep it >= 16 for vLLM kernels)."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention); must divide num_heads."""
    intermediate_size: int = 256
    """Width of the MLP."""
    max_position_embeddings: int = 512
    """Longest sequence (prompt + response) the model is meant for."""
    tie_word_embeddings: bool = True
    """Share the input embedding with the LM head (as small Qwen models do)."""

    def __post_init__(self) -> None:
        if self.arch not in ("qwen2", "llama"):
            raise ValueError(f"TinyModelSpec.arch: {self.arch!r} is not supported; use 'qwen2' or 'llama'")
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                     "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TinyModelSpec.{name}: must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"TinyModelSpec: hidden_size {self.hidden_size} is not divisible by num_heads "
                f"{self.num_heads}; pick num_heads dividing hidden_size"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"TinyModelSpec: num_heads {self.num_heads} is not divisible by num_kv_heads "
                f"{self.num_kv_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def tiny_config(spec: TinyModelSpec, vocab_size: int) -> Qwen2Config | LlamaConfig:
    """The stock transformers config for ``spec``, with the char tokenizer's special token ids."""
    if vocab_size <= UNK_ID:
        raise ValueError(f"tiny_config: vocab_size {vocab_size} cannot hold the {len(SPECIAL_TOKENS)} special tokens")
    common = dict(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    if spec.arch == "qwen2":
        return Qwen2Config(**common)
    return LlamaConfig(head_dim=spec.head_dim, **common)


def build_tiny_model(spec: TinyModelSpec, vocab_size: int, seed: int = 0) -> PreTrainedModel:
    """A freshly initialised float32 causal LM for ``spec``; the same seed gives the same weights.

    The global torch RNG state is left as it was.
    """
    config = tiny_config(spec, vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, do_sample=False
    )
    return model


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | Path) -> Path:
    """``save_pretrained`` naming the class ``PreTrainedTokenizerFast``.

    transformers 5 records its internal class name (``TokenizersBackend``), which older
    transformers releases (the ones some vLLM builds pin) cannot resolve; the portable name
    loads the same tokenizer.json in both. Load it back with
    ``tip_ray.models.loading.load_tokenizer``: in a qwen2 model folder, transformers 5's
    ``AutoTokenizer`` builds ``Qwen2Tokenizer`` instead, which drops spaces and newlines here.
    """
    out = Path(out_dir)
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return out


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, out_dir: str | Path) -> Path:
    """Write model (safetensors) and tokenizer into one folder, loadable by Auto* classes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(tokenizer, out)
    return out


# A teacher wider and deeper than the student, as in real distillation; same tokenizer.
DEFAULT_TEACHER_SPEC = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                     intermediate_size=128, max_position_embeddings=256)
DEFAULT_STUDENT_SPEC = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                     intermediate_size=64, max_position_embeddings=256)


@dataclass(frozen=True)
class TinyPair:
    """Folders of a tiny teacher/student pair sharing one tokenizer (each model folder has a copy)."""

    tokenizer_path: Path
    teacher_path: Path
    student_path: Path


def save_tiny_pair(
    out_dir: str | Path,
    teacher_spec: TinyModelSpec = DEFAULT_TEACHER_SPEC,
    student_spec: TinyModelSpec = DEFAULT_STUDENT_SPEC,
    alphabet: str = DEFAULT_ALPHABET,
    seed: int = 0,
) -> TinyPair:
    """Write ``tokenizer/``, ``teacher/`` and ``student/`` under ``out_dir`` (random weights)."""
    root = Path(out_dir)
    tokenizer = build_char_tokenizer(alphabet)
    vocab_size = len(tokenizer)
    tokenizer_path = save_tokenizer(tokenizer, root / "tokenizer")
    teacher_path = save_model(build_tiny_model(teacher_spec, vocab_size, seed), tokenizer, root / "teacher")
    student_path = save_model(build_tiny_model(student_spec, vocab_size, seed + 1), tokenizer, root / "student")
    return TinyPair(tokenizer_path=tokenizer_path, teacher_path=teacher_path, student_path=student_path)
