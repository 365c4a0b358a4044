"""Fuzzing what users hand the program: random YAML documents for the config loader and random
lines for the dataset reader. Whatever the input, the only failure is the project's own
ConfigError or DataError (never a traceback from deep inside), YAML never runs code, and no
input costs more than a few seconds or a few hundred MB (alias bombs, deep nesting, huge
numbers, junk Parquet)."""

from __future__ import annotations

import json
import os
import re
import resource
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tip_ray.config.loader import ConfigError, load_pipeline
from tip_ray.config.data import JsonlData
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.data.prompts import DataError, read_prompt_rows

# TIP_RAY_FUZZ_EXAMPLES=5000 for a longer hunt than the default suite's (kept short: a shared CPU).
FUZZ = settings(max_examples=int(os.environ.get("TIP_RAY_FUZZ_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
CASE_SECONDS = 5.0  # generous on a loaded 2-core machine; a hang or an alias bomb takes minutes
CASE_PEAK_MB = 300  # growth of the process's peak RSS over one case


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@contextmanager
def bounded(what: str):
    """One case must finish fast and must not raise the process's peak memory by much."""
    start, peak = time.perf_counter(), peak_rss_mb()
    yield
    took, grew = time.perf_counter() - start, peak_rss_mb() - peak
    assert took < CASE_SECONDS, f"{what} took {took:.1f} s"
    assert grew < CASE_PEAK_MB, f"{what} raised the peak RSS by {grew:.0f} MB"


def schema_words() -> list[str]:
    """Every field name and `type` tag of the config tree: keys a fuzzed document is likely to hit."""
    from pydantic import BaseModel

    seen: set[type] = set()
    words: set[str] = set()

    def visit(annotation) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return
            seen.add(annotation)
            for name, field in annotation.model_fields.items():
                words.add(name)
                if name == "type":
                    words.update(str(a) for a in getattr(field.annotation, "__args__", ()))
                visit(field.annotation)
            return
        for arg in getattr(annotation, "__args__", ()) or ():
            visit(arg)

    visit(PipelineConfig)
    return sorted(words)


WORDS = schema_words()
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=16), st.sampled_from(WORDS),
)
keys = st.one_of(st.sampled_from(WORDS + ["include"]), st.text(max_size=10), st.integers(), st.booleans())
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=40,
)


def valid_doc() -> dict:
    return {
        "name": "fuzz",
        "models": {"student": {"type": "local", "path": "/s"}, "teacher": {"type": "local", "path": "/t"}},
        "data": {"type": "jsonl", "path": "/d.jsonl"},
        "selection": {"rule": {"type": "quadrant", "ratio": 0.5}},
        "train": {"steps": 3},
    }


def load_text(tmp_path: Path, text: str):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        with bounded(f"loading {text[:60]!r}"):
            return load_pipeline(path)
    except ConfigError as exc:
        assert str(exc), "a ConfigError must say what is wrong"
        return exc


@FUZZ
@given(doc=trees)
def test_config_loader_random_documents(tmp_path, doc):
    result = load_text(tmp_path, yaml.safe_dump(doc))
    assert isinstance(result, (PipelineConfig, ConfigError))


@FUZZ
@given(text=st.text(max_size=300))
def test_config_loader_random_text(tmp_path, text):
    result = load_text(tmp_path, text)
    assert isinstance(result, (PipelineConfig, ConfigError))


@FUZZ
@given(data=st.data())
def test_config_loader_mutated_valid_documents(tmp_path, data):
    """A valid document with one key set to a random value (or removed), at any depth."""
    doc = valid_doc()
    node = doc
    while True:
        key = data.draw(st.sampled_from(sorted(node) + ["<new>"]))
        if key == "<new>":
            node[data.draw(st.sampled_from(WORDS))] = data.draw(trees)
            break
        if isinstance(node[key], dict) and data.draw(st.booleans()):
            node = node[key]
            continue
        if data.draw(st.booleans()):
            del node[key]
        else:
            node[key] = data.draw(trees)
        break
    result = load_text(tmp_path, yaml.safe_dump(doc))
    assert isinstance(result, (PipelineConfig, ConfigError))


def test_yaml_cannot_run_code(tmp_path):
    marker = tmp_path / "ran"
    for tag in ("!!python/object/apply:os.system", "!!python/object/apply:subprocess.call"):
        result = load_text(tmp_path, f"name: x\nmodels: {tag} [['touch', '{marker}']]\n")
        assert isinstance(result, ConfigError) and "not valid YAML" in str(result)
    assert not marker.exists()


# Inputs that blow Python's recursion limit become the project's own errors.
@pytest.mark.parametrize("text", ["a: " + "[" * 20000, "a: &a [*a, *a]\nname: *a\n"], ids=["deep", "self-alias"])
def test_config_loader_pathological_nesting(tmp_path, text):
    assert isinstance(load_text(tmp_path, text), ConfigError)


# --------------------------------------------------------------------------- dataset reader


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
rows = st.one_of(
    st.fixed_dictionaries({"prompt": st.one_of(st.text(max_size=30), json_values)},
                          optional={"answer": json_values, "other": json_values}).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s),
)


def read(tmp_path: Path, content: bytes, bad_rows: str):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    source = JsonlData(type="jsonl", path=str(path), bad_rows=bad_rows)
    try:
        with bounded(f"reading {content[:60]!r}"):
            return read_prompt_rows(source)
    except DataError as exc:
        # The message names the file (and the line, when one line is at fault).
        assert str(path) in str(exc) or "no usable rows" in str(exc), str(exc)
        return exc


@FUZZ
@given(lines=st.lists(rows, max_size=12), bad_rows=st.sampled_from(["error", "skip"]))
def test_dataset_reader_random_lines(tmp_path, lines, bad_rows):
    result = read(tmp_path, "\n".join(lines).encode("utf-8", "surrogatepass"), bad_rows)
    if isinstance(result, DataError):
        named = re.search(r"rows\.jsonl:(\d+)", str(result))
        if named and bad_rows == "error":
            assert 1 <= int(named.group(1)) <= len(lines)
        return
    found, report = result
    assert all(isinstance(r.prompt, str) and r.prompt.strip() for r in found)
    if bad_rows == "skip":
        non_blank = sum(1 for line in lines if line.strip())
        assert len(found) + len(report.skipped_bad) == non_blank


@FUZZ
@given(content=st.binary(max_size=200), bad_rows=st.sampled_from(["error", "skip"]))
def test_dataset_reader_random_bytes(tmp_path, content, bad_rows):
    result = read(tmp_path, content, bad_rows)
    assert isinstance(result, (DataError, tuple))


def test_dataset_reader_pathological_nesting(tmp_path):
    assert isinstance(read(tmp_path, b'{"prompt": ' + b"[" * 100000 + b"}\n", "error"), DataError)


def test_nan_literals_in_a_row_are_a_clear_error(tmp_path):
    result = read(tmp_path, b'{"prompt": NaN}\n', "error")
    assert isinstance(result, DataError) and "rows.jsonl:1" in str(result)


# --------------------------------------------------------------------------- hostile shapes


def alias_chain(draw, levels: int, fanout: int) -> str:
    lines = ["a0: &a0 [x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


hostile_fragments = st.one_of(
    st.builds(lambda n, f: alias_chain(None, n, f), st.integers(1, 12), st.integers(1, 12)),
    st.integers(1, 5000).map(lambda n: "a: " + "[" * n + "]" * (n // 2) + "\n"),
    st.integers(1, 3000).map(lambda n: "a: " + "{b: " * n + "\n"),
    st.integers(1, 6000).map(lambda n: f"train: {{steps: {'9' * n}}}\n"),
    st.sampled_from(["name: a\nname: b\n", "a: &x 1\nb: *y\n", "a: &a [*a]\n", "<<: {a: 1}\n",
                     "include: /etc/passwd\n", "include: ../../../../etc/hostname\n", "include: [fuzz.yaml]\n",
                     "learner: {optimizer: {lr: .inf, betas: [.nan, 2]}}\n", "train: {steps: true}\n",
                     "rollout: {sampling: {max_new_tokens: 1.0e+20}}\n", "? [a, b]\n: c\n", "\ufeffname: x\n"]),
    st.text(max_size=40),
)


@FUZZ
@given(parts=st.lists(hostile_fragments, min_size=1, max_size=4))
def test_config_loader_hostile_shapes(tmp_path, parts):
    """Alias chains up to 12**12 values, deep nesting, 6000-digit numbers, duplicate keys,
    includes of system files, numbers without meaning: each fails fast as a ConfigError."""
    result = load_text(tmp_path, yaml.safe_dump(valid_doc()) + "".join(parts))
    assert isinstance(result, (PipelineConfig, ConfigError))


@FUZZ
@given(content=st.one_of(st.binary(max_size=300), st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1")),
       bad_rows=st.sampled_from(["error", "skip"]))
def test_parquet_reader_random_bytes(tmp_path, content, bad_rows):
    from tip_ray.config.data import ParquetData

    pytest.importorskip("pyarrow")
    path = tmp_path / "rows.parquet"
    path.write_bytes(content)
    with bounded(f"reading parquet {content[:40]!r}"):
        try:
            read_prompt_rows(ParquetData(type="parquet", path=str(path), bad_rows=bad_rows))
        except DataError as exc:
            assert str(path) in str(exc)


@FUZZ
@given(lines=st.lists(st.one_of(
    rows,
    st.integers(1, 6000).map(lambda n: '{"prompt": "p", "answer": ' + "7" * n + "}"),
    st.sampled_from(['{"prompt": "12+\\ud800="}', '{"prompt": "p", "answer": NaN}', '{"prompt": "p", "answer": {}}',
                     '{"prompt": "\\udfff", "answer": 1}']),
), max_size=8), junk=st.binary(max_size=8), bad_rows=st.sampled_from(["error", "skip"]))
def test_dataset_reader_hostile_rows(tmp_path, lines, junk, bad_rows):
    content = "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n" + junk
    result = read(tmp_path, content, bad_rows)
    if isinstance(result, tuple):
        found, _ = result
        for row in found:  # what passes is text a tokenizer takes and an answer a grader reads
            row.prompt.encode("utf-8")
            assert row.answer is None or (isinstance(row.answer, str) and row.answer.lower() not in ("nan", "inf"))
