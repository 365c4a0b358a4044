"""Benchmarks as lists of ``Problem(id, prompt, answer)``: MATH-500, AIME 2024/2025 and the demo task.

Math benchmarks load from a local JSONL file (or a folder holding ``<name>.jsonl``), or from a
Hugging Face dataset where a network exists (needs the optional ``datasets`` package). Their
prompts ask for the final answer in ``\\boxed{}``, which ``tip_ray.eval.grading`` extracts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tip_ray.tasks.registry import DEMO_TASK, get_task

MATH_PROMPT_TEMPLATE = "{problem}\nPut your final answer within \\boxed{{}}."
"""Turns a math problem into the model's prompt (``{problem}`` is replaced)."""

# Field names used by the common copies of these data sets, tried in order.
_PROBLEM_FIELDS = ("problem", "question", "prompt")
_ANSWER_FIELDS = ("answer", "final_answer")
_ID_FIELDS = ("unique_id", "id")


@dataclass(frozen=True)
class Problem:
    """One evaluation problem, ready for a model."""

    id: str
    """Stable identifier from the source (or ``<benchmark>-<row>`` when it has none)."""
    prompt: str
    """The full text given to the model (template already applied)."""
    answer: str
    """The gold final answer (LaTeX for MATH, an integer for AIME and the demo)."""


@dataclass(frozen=True)
class BenchmarkInfo:
    """Where a named benchmark comes from and how it is graded."""

    name: str
    file_name: str | None
    """File name inside a data folder (None for generated benchmarks)."""
    hf_dataset: str | None
    """Hugging Face dataset name, loadable where a network exists."""
    hf_split: str | None
    task: str | None = None
    """The generated task (tip_ray.tasks.registry) whose problems and grader this benchmark uses;
    None for a math benchmark, graded by math-verify with \\boxed{} extraction."""


BENCHMARKS: dict[str, BenchmarkInfo] = {
    "math500": BenchmarkInfo("math500", "math500.jsonl", "HuggingFaceH4/MATH-500", "test"),
    "aime24": BenchmarkInfo("aime24", "aime24.jsonl", "HuggingFaceH4/aime_2024", "train"),
    "aime25": BenchmarkInfo("aime25", "aime25.jsonl", "yentinglin/aime_2025", "train"),
    "demo": BenchmarkInfo("demo", None, None, None, task=DEMO_TASK),
    "prices": BenchmarkInfo("prices", None, None, None, task="prices"),
}


def benchmark_info(name: str) -> BenchmarkInfo:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}") from None


def _first_field(row: dict, fields: tuple[str, ...], where: str) -> object:
    for name in fields:
        if name in row and row[name] is not None:
            return row[name]
    raise ValueError(f"{where}: none of the fields {list(fields)} is present; the row has {sorted(row)}")


def problems_from_rows(rows: list[dict], benchmark: str, source: str, template: str = MATH_PROMPT_TEMPLATE) -> list[Problem]:
    """Normalise raw rows (MATH/AIME field conventions) into Problems; ``source`` names the origin in errors."""
    problems = []
    for index, row in enumerate(rows):
        where = f"{source} row {index + 1}"
        problem_text = str(_first_field(row, _PROBLEM_FIELDS, where))
        answer = str(_first_field(row, _ANSWER_FIELDS, where)).strip()
        if not answer:
            raise ValueError(f"{where}: the answer field is empty")
        raw_id = next((row[f] for f in _ID_FIELDS if row.get(f) is not None), None)
        problem_id = str(raw_id) if raw_id is not None else f"{benchmark}-{index}"
        problems.append(Problem(id=problem_id, prompt=template.format(problem=problem_text), answer=answer))
    if not problems:
        raise ValueError(f"{source}: no problems found")
    return problems


def read_jsonl(path: str | Path) -> list[dict]:
    """All rows of a JSONL file; errors name the file and line."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"benchmark file {file} does not exist")
    rows = []
    with file.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{file}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{file}:{line_number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def load_local_benchmark(name: str, path: str | Path, template: str = MATH_PROMPT_TEMPLATE) -> list[Problem]:
    """A math benchmark from ``path``: a JSONL file, or a folder holding ``<name>.jsonl``."""
    info = benchmark_info(name)
    location = Path(path).expanduser()
    if location.is_dir():
        if info.file_name is None:
            raise ValueError(f"benchmark {name!r} is generated, not read from a folder")
        location = location / info.file_name
    return problems_from_rows(read_jsonl(location), name, str(location), template)


def load_hf_benchmark(
    name: str,
    dataset: str | None = None,
    split: str | None = None,
    template: str = MATH_PROMPT_TEMPLATE,
) -> list[Problem]:
    """A math benchmark from the Hugging Face hub (needs ``datasets`` and a network or a warm cache)."""
    info = benchmark_info(name)
    dataset = dataset or info.hf_dataset
    split = split or info.hf_split or "test"
    if dataset is None:
        raise ValueError(f"benchmark {name!r} has no Hugging Face dataset; give a local path instead")
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"loading {dataset!r} from the Hugging Face hub needs the `datasets` package "
            "(pip install datasets), or give a local JSONL path instead"
        ) from None
    try:
        rows = list(datasets.load_dataset(dataset, split=split))
    except Exception as error:  # network, offline mode, missing split: all end here
        raise RuntimeError(
            f"could not load Hugging Face dataset {dataset!r} (split {split!r}): {error}. Offline "
            "(HF_HUB_OFFLINE=1 or no network) only cached datasets load; give a local JSONL path instead"
        ) from error
    return problems_from_rows(rows, name, f"{dataset}[{split}]", template)


def load_task_benchmark(name: str = "demo", n: int | None = None, seed: int | None = None) -> list[Problem]:
    """A generated benchmark: its task's held-out split (``n`` problems, the task's eval size by default)."""
    info = benchmark_info(name)
    if info.task is None:
        raise ValueError(f"benchmark {name!r} is read from a file or the hub, not generated by a task")
    task = get_task(info.task)
    rows = task.make_dataset(task.eval_size if n is None else n, task.eval_seed if seed is None else seed)
    return [Problem(id=f"{name}-{i}", prompt=task.format_prompt(row), answer=row["answer"]) for i, row in enumerate(rows)]


def load_benchmark(
    name: str,
    path: str | Path | None = None,
    hf_dataset: str | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """Load a benchmark by name: from ``path`` if given, else from ``hf_dataset`` (or the known hub
    name when ``hf_dataset`` is ``"default"``); ``demo`` is generated. ``limit`` keeps the first rows."""
    info = benchmark_info(name)
    if info.task is not None:
        problems = load_task_benchmark(name, n=limit or None)
    elif path is not None:
        problems = load_local_benchmark(name, path)
    elif hf_dataset is not None:
        problems = load_hf_benchmark(name, dataset=None if hf_dataset == "default" else hf_dataset)
    else:
        raise ValueError(
            f"benchmark {name!r}: give a local path (a {info.file_name} file or the folder holding it) "
            f"or a Hugging Face dataset name (e.g. {info.hf_dataset!r})"
        )
    return problems[:limit] if limit is not None else problems
