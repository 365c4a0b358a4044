"""Load Hugging Face tokenizers and causal LMs by local path (or hub name where a network
exists), and check that a student and a teacher can be distilled into one another.

A local folder is used as is. A hub name is fetched only where the hub is reachable; with
``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) only what is already in the local Hugging
Face cache loads, and anything else fails with a message saying so.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from tip_ray.errors import TipRayError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# "name" or "org/name" with the characters the hub allows.
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class IncompatibleModelsError(TipRayError, ValueError):
    """Student and teacher cannot be distilled into one another (tokenizer or vocabulary differ)."""


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _existing_folder_or_name(path_or_name: str) -> str:
    """The local folder (as given) or the hub name; FileNotFoundError naming a missing path."""
    text = str(path_or_name).strip()
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "tokenizer_config.json").is_file():
            raise FileNotFoundError(f"{path}: not a model or tokenizer folder (no config.json)")
        return str(path)
    # Absolute, relative-looking or nested paths are never hub names ("org/name" at most).
    if text.startswith(("/", ".", "~")) or text.count("/") > 1 or not _HUB_NAME.match(text):
        raise FileNotFoundError(f"{text}: no such model folder (relative paths are from {Path.cwd()})")
    return text  # a hub name


def _is_hub_name(location: str) -> bool:
    return not Path(location).expanduser().exists()


def _from_pretrained(loader, what: str, location: str, **kwargs):
    """``loader.from_pretrained`` with the offline mode honoured and a clear error for hub names."""
    if not _is_hub_name(location):
        return loader.from_pretrained(location, **kwargs)
    offline = hub_offline()
    try:
        return loader.from_pretrained(location, local_files_only=offline, **kwargs)
    except OSError as exc:
        hint = ("the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local cache" if offline
                else "check the name, and that the hub is reachable from here")
        raise FileNotFoundError(f"{location}: cannot load the {what} from the Hugging Face hub ({hint}): {exc}") from None


# tokenizer_config.json class names meaning "exactly the pipeline in tokenizer.json".
GENERIC_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _names_generic_fast_class(location: str) -> bool:
    """A local folder whose tokenizer_config.json names the generic fast class, with a tokenizer.json."""
    if _is_hub_name(location):
        return False
    folder = Path(location).expanduser()
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    return (folder / "tokenizer.json").is_file() and config.get("tokenizer_class") in GENERIC_TOKENIZER_CLASSES


def load_tokenizer(path_or_name: str):
    """The folder's tokenizer, with pad set to eos when it has none.

    A folder that names the generic fast class is loaded with that class: transformers 5's
    AutoTokenizer overrides the named class for some model types (qwen2 among them) with the
    family's own class, which rebuilds the pre-tokenizer and decoder instead of reading
    tokenizer.json, and a character tokenizer loaded that way drops spaces and newlines.
    """
    tokenizer = _load_tokenizer_as_saved(_existing_folder_or_name(path_or_name))
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_tokenizer_as_saved(location: str):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    loader = PreTrainedTokenizerFast if _names_generic_fast_class(location) else AutoTokenizer
    return _from_pretrained(loader, "tokenizer", location)


def copy_tokenizer(source: str, out_dir: str | Path) -> Path:
    """Save the tokenizer of ``source`` into ``out_dir`` so that it loads back the same.

    A folder naming the generic fast class keeps that name: saved by transformers 5 it would
    name ``TokenizersBackend``, which older releases cannot resolve, and saved after a load
    through AutoTokenizer it would be rebuilt as the model family's class (see load_tokenizer).
    """
    location = _existing_folder_or_name(source)
    out = Path(out_dir)
    _load_tokenizer_as_saved(location).save_pretrained(out)
    if _names_generic_fast_class(location):
        named = json.loads((Path(location).expanduser() / "tokenizer_config.json").read_text())["tokenizer_class"]
        config_path = out / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config["tokenizer_class"] = named
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    return out


def load_causal_lm(path_or_name: str, dtype: str = "float32"):
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return _from_pretrained(AutoModelForCausalLM, "model", _existing_folder_or_name(path_or_name),
                            dtype=DTYPES[dtype])


def limit_torch_threads(num_threads: int | None) -> None:
    """Hold torch to the CPU threads an actor was given; None (or 0) keeps torch's own count."""
    if num_threads:
        torch.set_num_threads(num_threads)


def load_inference_model(path_or_name: str, dtype: str = "float32"):
    """A causal LM in eval mode for a stage that never trains it, on the GPU when there is one."""
    model = load_causal_lm(path_or_name, dtype=dtype).eval()
    if torch.cuda.is_available():  # only inside an actor that was given a GPU
        model = model.cuda()
    return model


def read_model_config(path_or_name: str) -> dict:
    """config.json of a model folder or hub name, without loading any weights."""
    location = _existing_folder_or_name(path_or_name)
    if _is_hub_name(location):
        from transformers import AutoConfig

        return _from_pretrained(AutoConfig, "model config", location).to_dict()
    config_file = Path(location).expanduser() / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{location}: no config.json (a tokenizer folder is not a model folder)")
    return json.loads(config_file.read_text())


def _config_vocab(path: str) -> int:
    config = read_model_config(path)
    for candidate in (config, config.get("text_config") or {}):
        if isinstance(candidate.get("vocab_size"), int):
            return int(candidate["vocab_size"])
    raise ValueError(f"{path}: config.json has no integer vocab_size")


def check_compatible(student_path: str, teacher_path: str) -> int:
    """The vocabulary size the two models are compared over; IncompatibleModelsError (a
    ValueError) naming both paths and sizes when they cannot be.

    Both must use the same tokenizer (same token -> id map). Their embedding matrices may
    differ in size only by padding beyond the tokenizer (e.g. Qwen2.5-14B pads to 152064,
    Qwen2.5-1.5B to 151936): the teacher may be larger than the student, and is then cut to the
    student's size. Sizes are read from config.json, without loading weights.
    """
    student_vocab, teacher_vocab = _config_vocab(student_path), _config_vocab(teacher_path)
    s_tok, t_tok = load_tokenizer(student_path), load_tokenizer(teacher_path)
    s_map, t_map = s_tok.get_vocab(), t_tok.get_vocab()
    if s_map != t_map:
        differing = sorted(set(s_map.items()) ^ set(t_map.items()), key=lambda item: item[1])
        example = ", ".join(f"{token!r}->{index}" for token, index in differing[:3])
        sizes = (f"vocabulary sizes differ: student {student_vocab} ({student_path}) vs teacher "
                 f"{teacher_vocab} ({teacher_path}), and so do their tokenizers"
                 if student_vocab != teacher_vocab else "tokenizers differ")
        raise IncompatibleModelsError(
            f"{sizes}: student {student_path} ({len(s_tok)} tokens) vs teacher {teacher_path} "
            f"({len(t_tok)} tokens), {len(differing)} token->id pairs not shared (e.g. {example}); "
            f"distillation needs one shared tokenizer and vocabulary"
        )
    if student_vocab != teacher_vocab and not (len(s_tok) <= student_vocab < teacher_vocab):
        raise IncompatibleModelsError(
            f"vocabulary sizes differ: student {student_vocab} ({student_path}) vs teacher "
            f"{teacher_vocab} ({teacher_path}); distillation needs one shared vocabulary (a teacher "
            f"padded beyond the shared tokenizer's {len(s_tok)} tokens is allowed)"
        )
    if student_vocab < len(s_tok):
        raise IncompatibleModelsError(
            f"student {student_path} has vocab_size {student_vocab} but its tokenizer has {len(s_tok)} "
            f"tokens; token ids from {student_vocab} on would have no embedding row"
        )
    return student_vocab
