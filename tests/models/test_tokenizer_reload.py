"""A character tokenizer saved with a model folder loads back as the same tokenizer.

transformers 5 builds the model family's own tokenizer class for some model types (qwen2), which
rebuilds the pre-tokenizer instead of reading tokenizer.json; loaded that way the character
tokenizer dropped spaces and newlines. load_tokenizer loads the class the folder names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tip_ray.models.loading import load_tokenizer
from tip_ray.models.tiny import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    TinyModelSpec,
    build_char_tokenizer,
    build_tiny_model,
    save_model,
    save_tokenizer,
)

TEXTS = ["1+2 = 3\n", "  two  spaces\n\nand a blank line ", '<tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>']
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
TINY = TinyModelSpec(hidden_size=16, num_layers=1, num_heads=1, num_kv_heads=1, intermediate_size=16)
DEMO_CACHE = Path("~/.cache/tip-ray/demo-v1").expanduser()


def _saved(tmp_path: Path, arch: str | None) -> tuple[object, Path]:
    tokenizer = build_char_tokenizer(chat_template=TEMPLATE)
    if arch is None:  # a tokenizer folder alone (no config.json, so no model type to go by)
        return tokenizer, save_tokenizer(tokenizer, tmp_path / "tokenizer")
    model = build_tiny_model(TinyModelSpec(**{**TINY.__dict__, "arch": arch}), len(tokenizer))
    return tokenizer, save_model(model, tokenizer, tmp_path / arch)


@pytest.mark.parametrize("arch", ["qwen2", "llama", None])
def test_reloaded_tokenizer_encodes_and_decodes_like_the_one_saved(tmp_path, arch):
    original, folder = _saved(tmp_path, arch)
    reloaded = load_tokenizer(str(folder))
    for text in TEXTS:
        ids = reloaded(text)["input_ids"]
        assert ids == original(text)["input_ids"]
        assert ids == [BOS_ID] + [original.convert_tokens_to_ids(c) for c in text]  # one id per character
        assert reloaded.decode(ids, skip_special_tokens=True) == text
    assert (reloaded.bos_token_id, reloaded.eos_token_id, reloaded.pad_token_id) == (BOS_ID, EOS_ID, PAD_ID)
    assert reloaded.padding_side == "left"
    assert reloaded.chat_template == TEMPLATE
    messages = [{"role": "user", "content": "a b\nc"}]
    assert reloaded.apply_chat_template(messages, tokenize=False) == "user: a b\nc\n"


def test_folder_naming_a_family_class_still_loads_through_auto_tokenizer(tmp_path):
    """Only the generic class is taken at its word; a folder naming its own class is left to
    AutoTokenizer, as for any hub model."""
    _, folder = _saved(tmp_path, "qwen2")
    config = folder / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"PreTrainedTokenizerFast"', '"Qwen2Tokenizer"'))
    assert type(load_tokenizer(str(folder))).__name__ == "Qwen2Tokenizer"


@pytest.mark.skipif(not (DEMO_CACHE / "COMPLETE.json").is_file(),
                    reason=f"no demo models cached at {DEMO_CACHE} (built by `make demo`)")
@pytest.mark.parametrize("member", ["student", "teacher", "tokenizer"])
def test_demo_models_cached_before_the_fix_load_right(member):
    """Folders written earlier (same tokenizer_config.json) load right too; read only."""
    folder = DEMO_CACHE / member
    reference = Tokenizer.from_file(str(folder / "tokenizer.json"))  # the file itself, no transformers
    tokenizer = load_tokenizer(str(folder))
    for text in ("1234+987=", "4+7+0=11,3+8+1=12 #### 2221"):
        assert tokenizer(text)["input_ids"] == reference.encode(text).ids
        assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_an_exported_model_folder_keeps_the_tokenizer_as_it_was(tmp_path):
    """The learner's Hugging Face export (final_model/) copies the student's tokenizer: it
    loads back the same, under the same class name (it was rebuilt as Qwen2Tokenizer before)."""
    from tip_ray.learner.export import export_hf
    from tip_ray.models.loading import load_causal_lm

    original, student = _saved(tmp_path, "qwen2")
    out = export_hf(load_causal_lm(str(student)).state_dict(), str(student), tmp_path / "final_model")
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    reloaded = load_tokenizer(str(out))
    for text in TEXTS:
        assert reloaded(text)["input_ids"] == original(text)["input_ids"]
        assert reloaded.decode(reloaded(text)["input_ids"], skip_special_tokens=True) == text
    assert reloaded.chat_template == TEMPLATE
