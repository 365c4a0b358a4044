"""Which teacher scores each prompt row, when a pipeline names several (`teachers:`): the row's
data.teacher_field holds a teacher name, or with data.teacher_table a data source that the
table maps to one; a row without the field goes to the first teacher listed."""

from __future__ import annotations

from typing import Mapping, Sequence

from tip_ray.config.data import DataSource
from tip_ray.data.prompts import DataError, EncodedPrompt


def row_location(source: DataSource, row: int) -> str:
    """Where a dataset row is, as the readers name it."""
    if source.type == "jsonl":
        return f"{source.path}:{row + 1}"
    if source.type == "hub":
        return f"{source.name} row {row}"
    if source.type == "parquet":
        return f"{source.path} row {row}"
    return f"data row {row}"


def route_prompts(prompts: Sequence[EncodedPrompt], source: DataSource, names: Sequence[str]) -> dict[int, int]:
    """Dataset row -> index (in `names`) of the teacher that scores it; DataError naming the row
    and the known names for a row that names no teacher there."""
    table: Mapping[str, str] | None = source.teacher_table
    index = {name: i for i, name in enumerate(names)}
    routes = {}
    for prompt in prompts:
        value = prompt.teacher
        if value is None:
            routes[prompt.row] = 0
            continue
        if table is not None:
            if value not in table:
                raise DataError(
                    f"{row_location(source, prompt.row)}: {source.teacher_field} {value!r} is not in "
                    f"data.teacher_table (its sources: {', '.join(table)}); add it there")
            value = table[value]
        if value not in index:
            raise DataError(
                f"{row_location(source, prompt.row)}: {source.teacher_field} names teacher {value!r}, which "
                f"teachers: does not define (the teachers: {', '.join(names)})")
        routes[prompt.row] = index[value]
    return routes
