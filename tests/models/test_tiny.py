"""Tiny models and the character tokenizer: built from a spec, saved, loaded back offline."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tip_ray.models.tiny import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    TinyModelSpec,
    build_char_tokenizer,
    build_tiny_model,
    save_model,
    save_tiny_pair,
    save_tokenizer,
)

TEXTS = ["1234+987=", "4+7+0=11,3+8+1=12 #### 2221", "Hello, world!\nTwo  spaces ~ {x}", " "]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_one_token_per_character_and_exact_round_trip():
    tokenizer = build_char_tokenizer()
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == BOS_ID and len(ids) == len(text) + 1
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_special_token_ids_and_unknown_characters():
    tokenizer = build_char_tokenizer("ab")
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        PAD_ID, BOS_ID, EOS_ID, UNK_ID)
    assert len(tokenizer) == 4 + 2
    assert tokenizer("aéb")["input_ids"] == [BOS_ID, 4, UNK_ID, 5]
    with pytest.raises(ValueError, match="empty"):
        build_char_tokenizer("")


def test_saved_tokenizer_loads_offline_with_auto_tokenizer(tmp_path):
    tokenizer = build_char_tokenizer()
    save_tokenizer(tokenizer, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # portable across transformers versions
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.padding_side == "left"
    for text in TEXTS:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert loaded.decode(loaded(text)["input_ids"], skip_special_tokens=True) == text
    batch = loaded(["1+1=", "12+34="], padding=True)
    assert batch["input_ids"][0][:2] == [PAD_ID, PAD_ID] and batch["attention_mask"][0][:2] == [0, 0]
    assert loaded.chat_template is None


def test_chat_template_is_optional_and_kept(tmp_path):
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    save_tokenizer(build_char_tokenizer(chat_template=template), tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = loaded.apply_chat_template([{"role": "user", "content": "1+1="}], tokenize=False)
    assert text == "1+1="


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_model_saves_and_loads_with_identical_outputs(tmp_path, arch):
    tokenizer = build_char_tokenizer("0123456789+=")
    spec = TinyModelSpec(arch=arch, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    model = build_tiny_model(spec, len(tokenizer), seed=5)
    folder = save_model(model, tokenizer, tmp_path / arch)
    assert (folder / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert loaded.config.model_type == arch and loaded.config.vocab_size == len(tokenizer)
    ids = torch.tensor([tokenizer("12+34=")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert AutoTokenizer.from_pretrained(folder).get_vocab() == tokenizer.get_vocab()


def test_same_seed_same_weights_and_rng_untouched():
    spec = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=32)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_tiny_model(spec, 20, seed=1)
    assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG stream is not disturbed
    b = build_tiny_model(spec, 20, seed=1)
    c = build_tiny_model(spec, 20, seed=2)
    weight = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 30, "num_heads": 4}, "not divisible by num_heads"),
        ({"num_heads": 4, "num_kv_heads": 3}, "not divisible by num_kv_heads"),
        ({"num_layers": 0}, "num_layers"),
        ({"arch": "gpt2"}, "not supported"),
    ],
)
def test_bad_specs_say_what_to_change(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TinyModelSpec(**kwargs)


def test_pair_shares_tokenizer_and_teacher_is_bigger(tmp_path):
    pair = save_tiny_pair(tmp_path, alphabet="0123456789+=# ,")
    teacher = AutoModelForCausalLM.from_pretrained(pair.teacher_path)
    student = AutoModelForCausalLM.from_pretrained(pair.student_path)
    assert teacher.num_parameters() > student.num_parameters()
    vocabularies = [AutoTokenizer.from_pretrained(p).get_vocab()
                    for p in (pair.tokenizer_path, pair.teacher_path, pair.student_path)]
    assert vocabularies[0] == vocabularies[1] == vocabularies[2]
    assert teacher.config.vocab_size == student.config.vocab_size == len(vocabularies[0])
