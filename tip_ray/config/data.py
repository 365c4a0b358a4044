"""data: where the prompts come from (a discriminated union on ``type``) and how rows are read.
This module imports neither torch nor ray."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from tip_ray.config.base import Strict


class _DataCommon(Strict):
    prompt_field: str = Field(default="prompt", description="Field holding the prompt text.")
    answer_field: str | None = Field(
        default="answer", description="Field holding the reference answer (optional)."
    )
    shuffle: bool = Field(default=True, description="Shuffle prompts each epoch with the run seed.")
    chat_template: Literal["auto", "never"] = Field(
        default="auto", description="auto: apply the tokenizer's chat template when it has one."
    )
    max_prompt_tokens: int = Field(default=2048, gt=0, description="Longest prompt in tokens.")
    overlong_prompts: Literal["truncate", "drop"] = Field(
        default="drop", description="What to do with a prompt longer than max_prompt_tokens."
    )
    bad_rows: Literal["error", "skip"] = Field(
        default="error",
        description="error: a row that is not valid JSON or lacks the prompt field stops the run "
        "before it starts, naming the line; skip: such rows are skipped and counted.",
    )
    limit: int | None = Field(default=None, gt=0, description="Use only the first N rows.")
    teacher_field: str | None = Field(
        default=None, description="With teachers: the row field naming the row's teacher (or, with "
        "teacher_table, its data source); a row without it goes to the first teacher."
    )
    teacher_table: dict[str, str] | None = Field(
        default=None, description="With teachers: values of teacher_field (data sources) -> teacher names."
    )


class JsonlData(_DataCommon):
    type: Literal["jsonl"]
    path: str = Field(description="JSONL file, one prompt per line.")


class ParquetData(_DataCommon):
    type: Literal["parquet"]
    path: str = Field(description="Parquet file with one prompt per row.")


class HubData(_DataCommon):
    type: Literal["hub"]
    name: str = Field(description="Hugging Face dataset name (needs a network or cache).")
    split: str = Field(default="train", description="Dataset split.")


class DemoData(_DataCommon):
    type: Literal["demo"]
    task: Literal["arithmetic", "prices"] = Field(
        default="arithmetic",
        description="The generated task: arithmetic (the demo's) or prices (needs the prices tool environment).",
    )
    num_problems: int = Field(default=4096, gt=0, description="Generated problems.")
    seed: int = Field(default=1234, description="Seed of the generated problems.")


DataSource = Annotated[
    Union[JsonlData, ParquetData, HubData, DemoData], Field(discriminator="type")
]
