"""Secrets stay in the environment: their values are masked in everything a run writes.

Credentials (Weights & Biases keys, hub tokens, cloud keys) are read from environment variables
only; no config field holds one. Should a value still reach a log line or a file the run writes
(a path or an error message that quotes it), it is replaced by '***'.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

# Known credential variables, plus any variable whose name ends like one of SECRET_SUFFIXES.
SECRET_ENV_VARS = (
    "WANDB_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACE_TOKEN",
    "RAY_AUTH_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "OPENAI_API_KEY",
    "GITHUB_TOKEN",
)
SECRET_SUFFIXES = ("_TOKEN", "_API_KEY", "_SECRET", "_SECRET_KEY", "_PASSWORD")
MASK = "***"
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {
        value
        for name, value in env.items()
        if (name in SECRET_ENV_VARS or name.upper().endswith(SECRET_SUFFIXES)) and len(value) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)  # longest first: a secret containing another


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks secret values in every record that passes through the handler it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_tree(doc: Any, environ: Mapping[str, str] | None = None) -> Any:
    """`doc` (nested dicts/lists of plain values) with secret values masked in every string, keys
    included; dump the result with yaml.safe_dump so that a masked value is always a quoted
    scalar (a bare '***' would read back as a YAML alias)."""
    if isinstance(doc, dict):
        return {mask_tree(k, environ): mask_tree(v, environ) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [mask_tree(v, environ) for v in doc]
    if isinstance(doc, str):
        return redact(doc, environ)
    return doc


def scrub_file(path) -> bool:
    """Mask secret values in a text file the run wrote; True when something was masked.

    A YAML file stays valid YAML: it is parsed, masked value by value and dumped again (masking
    its text would turn `name: <secret>` into `name: ***`, an alias that no longer loads)."""
    from pathlib import Path

    import yaml

    file = Path(path)
    if not file.is_file():
        return False
    text = file.read_text(encoding="utf-8", errors="replace")
    masked = redact(text)
    if masked == text:
        return False
    if file.suffix in (".yaml", ".yml"):
        try:
            masked = yaml.safe_dump(mask_tree(yaml.safe_load(text)), sort_keys=False)
        except yaml.YAMLError:
            pass  # not YAML to begin with: masking its text cannot break it further
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(masked, encoding="utf-8")
    os.replace(tmp, file)
    return True
