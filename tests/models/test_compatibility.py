"""Student and teacher must share a tokenizer; a teacher padded beyond it is cut to the student."""

from __future__ import annotations

import json

import pytest
import torch

from tip_ray.models.loading import check_compatible
from tip_ray.models.tiny import DEFAULT_TEACHER_SPEC, build_char_tokenizer, build_tiny_model, save_model
from tip_ray.scoring.head import load_lm_head


def test_same_pair_is_compatible(tiny_pair):
    vocab = json.loads((tiny_pair.student_path / "config.json").read_text())["vocab_size"]
    assert check_compatible(str(tiny_pair.student_path), str(tiny_pair.teacher_path)) == vocab


def test_padded_teacher_is_cut_to_the_student(tiny_pair, tmp_path):
    from tip_ray.tasks.arithmetic import ALPHABET

    tokenizer = build_char_tokenizer(ALPHABET)
    padded = save_model(build_tiny_model(DEFAULT_TEACHER_SPEC, len(tokenizer) + 8, seed=3), tokenizer, tmp_path / "t")
    vocab = check_compatible(str(tiny_pair.student_path), str(padded))
    assert vocab == len(tokenizer)
    full = load_lm_head(str(padded))
    cut = load_lm_head(str(padded), rows=vocab)
    assert full.shape[0] == vocab + 8 and torch.equal(cut, full[:vocab])
    # The other way round (a student larger than the teacher) is refused.
    with pytest.raises(ValueError, match="vocabulary sizes differ"):
        check_compatible(str(padded), str(tiny_pair.student_path))


def test_different_tokenizers_are_refused(tiny_pair, tmp_path):
    tokenizer = build_char_tokenizer("0123456789+=# ,ab")  # same size as the demo alphabet + 2
    other = save_model(build_tiny_model(DEFAULT_TEACHER_SPEC, len(tokenizer), seed=1), tokenizer, tmp_path / "o")
    with pytest.raises(ValueError, match="differ") as info:
        check_compatible(str(tiny_pair.student_path), str(other))
    assert str(tiny_pair.student_path) in str(info.value) and str(other) in str(info.value)
