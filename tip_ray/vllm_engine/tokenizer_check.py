"""Check that a run's tokenizer is the one of the model folder a vLLM engine serves."""

from __future__ import annotations

from tip_ray.errors import TipRayError
from tip_ray.vllm_engine.engine import read_config, text_config


class TokenizerMismatchError(TipRayError, ValueError):
    """The run's tokenizer does not match the model folder the engine serves."""


def check_tokenizer_matches(tokenizer, model_path: str, config: dict | None = None) -> bool:
    """Raise TokenizerMismatchError unless ``tokenizer`` is the model folder's tokenizer.

    Returns whether the folder ships a tokenizer at all (if not, the engine is given the run's).

    The engine decodes with the folder's tokenizer and stops at its EOS token; a run whose
    tokenizer differs would sample ids the records misread, or never see its own EOS.
    """
    config = text_config(config or read_config(model_path))
    vocab_size = config.get("vocab_size")
    if vocab_size is not None and len(tokenizer) > int(vocab_size):
        raise TokenizerMismatchError(
            f"tokenizer has {len(tokenizer)} tokens but the model at {model_path} has a vocabulary "
            f"of {vocab_size}: they do not belong together; point models.tokenizer at the model's "
            f"own tokenizer (or leave it unset to use the student's folder)"
        )
    from transformers import AutoTokenizer

    try:
        own = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError):
        return False  # the folder ships no tokenizer: nothing to compare with
    if own.get_vocab() != tokenizer.get_vocab():
        theirs, ours = own.get_vocab(), tokenizer.get_vocab()
        differing = sorted(set(theirs.items()) ^ set(ours.items()))[:3]
        raise TokenizerMismatchError(
            f"tokenizer does not match the one in {model_path} (e.g. entries {differing} differ): "
            f"the engine would decode and stop with a different vocabulary; use the model "
            f"folder's tokenizer for this run"
        )
    if own.eos_token_id != tokenizer.eos_token_id:
        raise TokenizerMismatchError(
            f"tokenizer EOS id {tokenizer.eos_token_id} differs from the EOS id {own.eos_token_id} "
            f"of {model_path}; use the model folder's tokenizer for this run"
        )
    return True
