"""Write tiny GGUF files from tiny Llama models, the way llama.cpp's converter lays them out.

Tests use these instead of a downloaded file: a byte-level BPE tokenizer over the 256 byte
symbols plus chat tokens, a Llama whose q/k projections are permuted as llama.cpp permutes them
(transformers undoes that on load, so a round trip checks the un-permutation too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes (bytes_to_unicode)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    mapping = dict(zip(printable, codes))
    return [chr(mapping[b]) for b in range(256)]


def tiny_tokens() -> tuple[list[str], list[str]]:
    """(tokens, merges): the specials, the byte symbols and a few merged pairs."""
    merges = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n"]
    merged = ["Ġt", "he", "Ġthe", "Ġa", "in"]
    return SPECIALS + byte_symbols() + merged, merges


def tiny_llama(num_layers: int = 4, seed: int = 0, vocab_size: int | None = None) -> LlamaForCausalLM:
    tokens, _ = tiny_tokens()
    config = LlamaConfig(vocab_size=vocab_size or len(tokens), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.2)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def _permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    return weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(model: LlamaForCausalLM, path: str | Path, architecture: str = "llama",
                    raw_type_for_ffn=None) -> Path:
    """Write ``model`` (float32 tensors) and the tiny tokenizer as a GGUF file at ``path``.

    ``raw_type_for_ffn``: store the ffn_down tensors as this GGML type's raw bytes (zeros), to
    make a file with a tensor type that cannot be dequantised.
    """
    import gguf

    cfg = model.config
    tokens, merges = tiny_tokens()
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_chat_template(CHAT_TEMPLATE)

    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_norm.weight", state[p + "input_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.attn_q.weight", _permute(state[p + "self_attn.q_proj.weight"], cfg.num_attention_heads))
        writer.add_tensor(f"blk.{i}.attn_k.weight", _permute(state[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
        writer.add_tensor(f"blk.{i}.attn_v.weight", state[p + "self_attn.v_proj.weight"])
        writer.add_tensor(f"blk.{i}.attn_output.weight", state[p + "self_attn.o_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", state[p + "post_attention_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", state[p + "mlp.gate_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_up.weight", state[p + "mlp.up_proj.weight"])
        down = state[p + "mlp.down_proj.weight"]
        if raw_type_for_ffn is None:
            writer.add_tensor(f"blk.{i}.ffn_down.weight", down)
        else:
            block, type_size = gguf.GGML_QUANT_SIZES[raw_type_for_ffn]
            raw = np.zeros((down.shape[0], down.shape[1] // block * type_size), dtype=np.uint8)
            writer.add_tensor(f"blk.{i}.ffn_down.weight", raw, raw_dtype=raw_type_for_ffn)
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.add_tensor("output.weight", state["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
