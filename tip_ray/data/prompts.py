"""Prompt datasets: read rows, check them before the run starts, and hand out batches in a
seeded, epoch-aware order whose position can be saved and restored exactly."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from tip_ray.config.data import DataSource, DemoData, HubData, JsonlData, ParquetData
from tip_ray.errors import TipRayError


class DataError(TipRayError, ValueError):
    """A dataset problem; the message names the file, the line and what to change."""


@dataclass(frozen=True)
class PromptRow:
    row: int  # index in the dataset as read (line order)
    prompt: str
    answer: str | None
    teacher: str | None = None  # data.teacher_field of the row (several teachers), if any


@dataclass
class ReadReport:
    rows_read: int = 0
    skipped_bad: list[str] = field(default_factory=list)  # "line N: why" of skipped rows
    dropped_overlong: int = 0
    truncated_overlong: int = 0


def _checked_text(text: str, what: str, where: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # "\ud800" in JSON: a lone surrogate no tokenizer takes
        raise DataError(f"{where}: {what} is not valid Unicode (a lone surrogate at character {exc.start})") from None
    return text


def _answer_text(answer: Any, where: str, source: DataSource) -> str | None:
    """The reference answer as text; refused when it cannot be graded as one."""
    if answer is None or isinstance(answer, str):
        return None if answer is None else _checked_text(answer, f"answer field {source.answer_field!r}", where)
    if isinstance(answer, int) and not isinstance(answer, bool):
        return str(answer)
    if isinstance(answer, float) and math.isfinite(answer):
        return str(answer)
    raise DataError(
        f"{where}: answer field {source.answer_field!r} must be a string or a finite number, got "
        f"{'NaN or infinity' if isinstance(answer, float) else type(answer).__name__}"
    )


def _row_from_mapping(obj: Any, where: str, source: DataSource) -> tuple[str, str | None]:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if source.prompt_field not in obj:
        keys = ", ".join(sorted(map(str, obj))) or "none"
        raise DataError(
            f"{where}: missing prompt field {source.prompt_field!r} (fields present: {keys}); "
            f"set data.prompt_field to the right name"
        )
    prompt = obj[source.prompt_field]
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: prompt field {source.prompt_field!r} must be a non-empty string")
    prompt = _checked_text(prompt, f"prompt field {source.prompt_field!r}", where)
    answer = obj.get(source.answer_field) if source.answer_field else None
    return prompt, _answer_text(answer, where, source)


def row_teacher_value(obj: Any, source: DataSource, where: str) -> str | None:
    """The row's data.teacher_field as text (None when the field is unset or the row lacks it)."""
    key = source.teacher_field
    if key is None or not isinstance(obj, dict) or obj.get(key) is None:
        return None
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: teacher field {key!r} must be a non-empty string (a teacher name"
                        f"{' or a data source of data.teacher_table' if source.teacher_table else ''}), "
                        f"got {value!r}")
    return value


def _skip_or_raise(exc: DataError, source: DataSource, report: ReadReport) -> None:
    """With data.bad_rows: skip the row is counted and left out; else the run stops here."""
    if source.bad_rows == "skip":
        report.skipped_bad.append(str(exc))
        return
    raise DataError(f"{exc} (or set data.bad_rows: skip to skip such rows)") from None


def _parse_jsonl_line(raw: bytes, where: str) -> Any:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (bad byte at column {exc.start + 1})") from None
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: nested too deeply to be a prompt row") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise DataError(f"{where}: a value cannot be read ({exc})") from None


def _read_jsonl(source: JsonlData, report: ReadReport) -> list[PromptRow]:
    path = Path(source.path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path: {path} does not exist or is not a file")
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise DataError(f"data.path: {path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    rows: list[PromptRow] = []
    for line_no, raw in enumerate(lines, start=1):
        if not raw.decode("utf-8", "replace").strip():
            continue
        where = f"{path}:{line_no}"
        try:
            obj = _parse_jsonl_line(raw, where)
            prompt, answer = _row_from_mapping(obj, where, source)
            teacher = row_teacher_value(obj, source, where)
        except DataError as exc:
            _skip_or_raise(exc, source, report)
            continue
        rows.append(PromptRow(row=line_no - 1, prompt=prompt, answer=answer, teacher=teacher))
        if source.limit and len(rows) >= source.limit:
            break
    return rows


def _read_parquet(source: ParquetData, report: ReadReport) -> list[PromptRow]:
    path = Path(source.path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path: {path} does not exist or is not a file")
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("data.type parquet needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"data.path: {path} is not a readable Parquet file ({type(exc).__name__})") from None
    return _rows_from_mappings(table.to_pylist(), str(path), source, report)


def _read_hub(source: HubData, report: ReadReport) -> list[PromptRow]:
    try:
        import datasets
    except ImportError:
        raise DataError("data.type hub needs the `datasets` package: pip install datasets") from None
    try:
        ds = datasets.load_dataset(source.name, split=source.split)
    except Exception as exc:  # offline, unknown name: say which and why
        raise DataError(f"data.name {source.name!r}: cannot load from the hub ({exc})") from None
    return _rows_from_mappings(ds, source.name, source, report)


def _rows_from_mappings(objs, where: str, source, report: ReadReport) -> list[PromptRow]:
    """Prompt rows from records given as mappings (Parquet rows, hub examples), row i named
    "`where` row i" in errors; bad rows are skipped or raised as `source` says, up to its limit."""
    rows: list[PromptRow] = []
    for i, obj in enumerate(objs):
        try:
            prompt, answer = _row_from_mapping(obj, f"{where} row {i}", source)
            teacher = row_teacher_value(obj, source, f"{where} row {i}")
        except DataError as exc:
            _skip_or_raise(exc, source, report)
            continue
        rows.append(PromptRow(row=i, prompt=prompt, answer=answer, teacher=teacher))
        if source.limit and len(rows) >= source.limit:
            break
    return rows


def _read_demo(source: DemoData, report: ReadReport) -> list[PromptRow]:
    from tip_ray.tasks.registry import get_task

    task = get_task(source.task)
    problems = task.make_dataset(source.num_problems, source.seed)
    return [PromptRow(row=i, prompt=task.format_prompt(p), answer=p["answer"]) for i, p in enumerate(problems)]


READERS: dict[str, Callable[[Any, ReadReport], list[PromptRow]]] = {
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
    "hub": _read_hub,
    "demo": _read_demo,
}


def read_prompt_rows(source: DataSource) -> tuple[list[PromptRow], ReadReport]:
    """All rows of the source, validated; raises DataError before anything starts."""
    report = ReadReport()
    rows = READERS[source.type](source, report)
    report.rows_read = len(rows)
    if not rows:
        raise DataError(
            f"data: the dataset has no usable rows ({len(report.skipped_bad)} skipped as bad); "
            f"a run needs at least one prompt"
        )
    return rows, report


def encode_prompt(tokenizer: Any, text: str, use_chat_template: bool,
                  tools: Sequence[dict] | None = None) -> list[int]:
    """The prompt's token ids: through the tokenizer's chat template when asked and it has one,
    given ``tools`` (tool schemas, OpenAI function format) for it to render; else plain text."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tools=list(tools) if tools else None,
            add_generation_prompt=True, tokenize=True,
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


@dataclass(frozen=True)
class EncodedPrompt:
    row: int
    ids: tuple[int, ...]
    answer: str | None
    teacher: str | None = None  # data.teacher_field of the row (several teachers), if any


def encode_rows(
    rows: Sequence[PromptRow], tokenizer: Any, source: DataSource, report: ReadReport,
    tools: Sequence[dict] | None = None,
) -> list[EncodedPrompt]:
    """Tokenize every prompt once (with the environment's ``tools`` for the chat template),
    applying the overlong-prompt policy (and counting it)."""
    use_template = source.chat_template == "auto"
    out = []
    for row in rows:
        ids = encode_prompt(tokenizer, row.prompt, use_template, tools)
        if len(ids) > source.max_prompt_tokens:
            if source.overlong_prompts == "drop":
                report.dropped_overlong += 1
                continue
            # Keep the end of the prompt: it holds the question and the generation prompt.
            ids = ids[-source.max_prompt_tokens :]
            report.truncated_overlong += 1
        out.append(EncodedPrompt(row=row.row, ids=tuple(ids), answer=row.answer, teacher=row.teacher))
    if not out:
        raise DataError(
            f"data: every prompt is longer than data.max_prompt_tokens={source.max_prompt_tokens} "
            f"and was dropped; raise the limit or set data.overlong_prompts: truncate"
        )
    return out


@dataclass(frozen=True)
class DataPosition:
    """Where the sampler stands: the next prompt is order(epoch)[index]."""

    epoch: int = 0
    index: int = 0


class PromptSampler:
    """Deterministic, epoch-aware batches: the order of epoch e is a permutation seeded by
    (seed, e), so a run restored at (epoch, index) continues with exactly the same prompts."""

    def __init__(self, prompts: Sequence[EncodedPrompt], seed: int, shuffle: bool):
        self.prompts = list(prompts)
        self.seed = seed
        self.shuffle = shuffle
        self.position = DataPosition()
        self._order_epoch = -1
        self._order: list[int] = []

    def _epoch_order(self, epoch: int) -> list[int]:
        if epoch != self._order_epoch:
            if self.shuffle:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._order = torch.randperm(len(self.prompts), generator=gen).tolist()
            else:
                self._order = list(range(len(self.prompts)))
            self._order_epoch = epoch
        return self._order

    def next_batch(self, size: int) -> list[tuple[DataPosition, EncodedPrompt]]:
        picked = []
        epoch, index = self.position.epoch, self.position.index
        for _ in range(size):
            order = self._epoch_order(epoch)
            if index >= len(order):
                epoch, index = epoch + 1, 0
                order = self._epoch_order(epoch)
            picked.append((DataPosition(epoch, index), self.prompts[order[index]]))
            index += 1
        self.position = DataPosition(epoch, index)
        return picked
