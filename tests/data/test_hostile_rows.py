"""Rows that used to crash the reader (or slip through as ungradeable text): each is a counted
skip with `data.bad_rows: skip` and, with `error`, a clear error naming the file and the line."""

from __future__ import annotations

import pytest

from tip_ray.config.data import JsonlData, ParquetData
from tip_ray.data.prompts import DataError, read_prompt_rows

GOOD = b'{"prompt": "1+1=", "answer": 2}'

BAD_LINES = {
    "lone-surrogate-prompt": (b'{"prompt": "12+\\ud800=", "answer": 3}', "not valid Unicode"),
    "lone-surrogate-answer": (b'{"prompt": "1+2=", "answer": "\\udfff"}', "not valid Unicode"),
    "5000-digit-integer": (b'{"prompt": "big", "answer": ' + b"9" * 5000 + b"}", "a value cannot be read"),
    "non-utf8-line": (b'{"prompt": "caf\xe9"}', "not UTF-8 text"),
    "nan-answer": (b'{"prompt": "0/0=", "answer": NaN}', "must be a string or a finite number, got NaN"),
    "infinite-answer": (b'{"prompt": "1/0=", "answer": Infinity}', "must be a string or a finite number"),
    "object-answer": (b'{"prompt": "x=", "answer": {"a": 1}}', "must be a string or a finite number, got dict"),
    "list-answer": (b'{"prompt": "x=", "answer": [1]}', "must be a string or a finite number, got list"),
    "bool-answer": (b'{"prompt": "x=", "answer": true}', "must be a string or a finite number, got bool"),
}


def write(tmp_path, bad: bytes):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(GOOD + b"\n" + bad + b"\n" + GOOD + b"\n")
    return path


@pytest.mark.parametrize("name", BAD_LINES)
def test_bad_row_is_an_error_naming_file_and_line(tmp_path, name):
    bad, says = BAD_LINES[name]
    path = write(tmp_path, bad)
    with pytest.raises(DataError) as info:
        read_prompt_rows(JsonlData(type="jsonl", path=str(path)))
    assert f"{path}:2: " in str(info.value) and says in str(info.value) and "bad_rows: skip" in str(info.value)


@pytest.mark.parametrize("name", BAD_LINES)
def test_bad_row_is_a_counted_skip(tmp_path, name):
    bad, says = BAD_LINES[name]
    path = write(tmp_path, bad)
    rows, report = read_prompt_rows(JsonlData(type="jsonl", path=str(path), bad_rows="skip"))
    assert [r.row for r in rows] == [0, 2] and [r.answer for r in rows] == ["2", "2"]
    assert len(report.skipped_bad) == 1 and report.skipped_bad[0].startswith(f"{path}:2: ") and says in report.skipped_bad[0]


def test_skipped_rows_tokenize(tmp_path):
    """What survives the reader is text every tokenizer takes (the surrogate crashed it before)."""
    path = write(tmp_path, BAD_LINES["lone-surrogate-prompt"][0])
    rows, _ = read_prompt_rows(JsonlData(type="jsonl", path=str(path), bad_rows="skip"))
    assert all(r.prompt.encode("utf-8") for r in rows)


@pytest.mark.parametrize("content", [b"not a parquet file at all", b"PAR1" + b"\x00" * 64 + b"PAR1", b""])
def test_junk_parquet_is_a_clear_error(tmp_path, content):
    pytest.importorskip("pyarrow")
    path = tmp_path / "rows.parquet"
    path.write_bytes(content)
    for bad_rows in ("error", "skip"):  # a file that is not Parquet has no rows to skip
        with pytest.raises(DataError, match="is not a readable Parquet file"):
            read_prompt_rows(ParquetData(type="parquet", path=str(path), bad_rows=bad_rows))


def test_parquet_bad_rows_are_skipped_and_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"prompt": ["1+1=", "2+2=", "3+3="], "answer": [2.0, float("nan"), 6.0]}), path)
    rows, report = read_prompt_rows(ParquetData(type="parquet", path=str(path), bad_rows="skip"))
    assert [r.answer for r in rows] == ["2.0", "6.0"] and report.skipped_bad[0].startswith(f"{path} row 1: ")
    with pytest.raises(DataError, match=r"rows\.parquet row 1: answer field 'answer' must be a string or a finite number"):
        read_prompt_rows(ParquetData(type="parquet", path=str(path)))
