"""Loading by path or hub name, offline behaviour, and the vocabulary check's messages."""

from __future__ import annotations

import pytest
import torch

from tip_ray.models.loading import (
    IncompatibleModelsError,
    check_compatible,
    load_causal_lm,
    load_tokenizer,
    read_model_config,
)
from tip_ray.models.tiny import DEFAULT_STUDENT_SPEC, build_char_tokenizer, build_tiny_model, save_model

ALPHABET = "0123456789+=# ,"


def test_missing_local_path_is_named(tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    for load in (load_tokenizer, load_causal_lm, read_model_config):
        with pytest.raises(FileNotFoundError, match=str(missing)):
            load(str(missing))
    with pytest.raises(FileNotFoundError, match="models/student/v1"):
        load_tokenizer("models/student/v1")  # nested relative path: never taken for a hub name


def test_hub_name_offline_fails_clearly_without_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline"):
        load_tokenizer("tip-ray-no-such-org/no-such-model")


def test_loads_model_in_requested_dtype(tiny_pair):
    model = load_causal_lm(str(tiny_pair.student_path), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float16"):
        load_causal_lm(str(tiny_pair.student_path), dtype="fp8")


def _model_with_vocab(folder, vocab_size):
    tokenizer = build_char_tokenizer(ALPHABET)
    return save_model(build_tiny_model(DEFAULT_STUDENT_SPEC, vocab_size, seed=0), tokenizer, folder)


def test_vocab_size_mismatch_names_both_sizes_and_paths(tmp_path):
    size = len(build_char_tokenizer(ALPHABET))
    student = _model_with_vocab(tmp_path / "student", size + 8)  # a student padded beyond the teacher
    teacher = _model_with_vocab(tmp_path / "teacher", size)
    with pytest.raises(IncompatibleModelsError) as info:
        check_compatible(str(student), str(teacher))
    message = str(info.value)
    assert f"student {size + 8}" in message and f"teacher {size}" in message
    assert str(student) in message and str(teacher) in message


def test_vocab_check_reads_config_only(tmp_path):
    size = len(build_char_tokenizer(ALPHABET))
    student = _model_with_vocab(tmp_path / "student", size)
    teacher = _model_with_vocab(tmp_path / "teacher", size)
    for folder in (student, teacher):  # no weights at all: the check must not need them
        (folder / "model.safetensors").unlink()
    assert check_compatible(str(student), str(teacher)) == size


def test_student_vocab_smaller_than_its_tokenizer_is_refused(tmp_path):
    size = len(build_char_tokenizer(ALPHABET))
    student = _model_with_vocab(tmp_path / "student", size - 2)
    teacher = _model_with_vocab(tmp_path / "teacher", size - 2)
    with pytest.raises(ValueError, match=f"vocab_size {size - 2}"):
        check_compatible(str(student), str(teacher))
