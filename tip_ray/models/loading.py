"""Load Hugging Face tokenizers and causal LMs by local path (or hub name where a network
exists), and check that a student and a teacher can be distilled into one another."""

from __future__ import annotations

import json
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _existing_folder_or_name(path_or_name: str) -> str:
    path = Path(path_or_name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "tokenizer_config.json").is_file():
            raise FileNotFoundError(f"{path}: not a model or tokenizer folder (no config.json)")
        return str(path)
    if path_or_name.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"{path_or_name}: no such model folder")
    return path_or_name  # a hub name


def load_tokenizer(path_or_name: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_existing_folder_or_name(path_or_name))
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path_or_name: str, dtype: str = "float32"):
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return AutoModelForCausalLM.from_pretrained(_existing_folder_or_name(path_or_name), dtype=DTYPES[dtype])


def _config_vocab(path: str) -> int:
    config = json.loads((Path(path) / "config.json").read_text())
    if "vocab_size" in config:
        return int(config["vocab_size"])
    return int(config.get("text_config", {}).get("vocab_size"))


def check_compatible(student_path: str, teacher_path: str) -> int:
    """The vocabulary size the two models are compared over; ValueError when they cannot be.

    Both must use the same tokenizer. Their embedding matrices may differ in size only by
    padding beyond the tokenizer (e.g. Qwen2.5-14B pads to 152064, Qwen2.5-1.5B to 151936): the
    teacher may be larger than the student, and is then cut to the student's size.
    """
    student_vocab, teacher_vocab = _config_vocab(student_path), _config_vocab(teacher_path)
    s_tok, t_tok = load_tokenizer(student_path), load_tokenizer(teacher_path)
    if s_tok.get_vocab() != t_tok.get_vocab() and student_vocab != teacher_vocab:
        raise ValueError(
            f"vocabulary sizes differ: student {student_vocab} ({student_path}) vs teacher "
            f"{teacher_vocab} ({teacher_path}), and so do their tokenizers; distillation needs "
            f"one shared tokenizer and vocabulary"
        )
    if s_tok.get_vocab() != t_tok.get_vocab():
        raise ValueError(
            f"tokenizers differ: student {student_path} ({len(s_tok)} tokens) vs teacher "
            f"{teacher_path} ({len(t_tok)} tokens); use models with the same tokenizer"
        )
    if student_vocab != teacher_vocab and not (len(s_tok) <= student_vocab < teacher_vocab):
        raise ValueError(
            f"vocabulary sizes differ: student {student_vocab} ({student_path}) vs teacher "
            f"{teacher_vocab} ({teacher_path}); distillation needs one shared vocabulary (a teacher "
            f"padded beyond the shared tokenizer's {len(s_tok)} tokens is allowed)"
        )
    return student_vocab
