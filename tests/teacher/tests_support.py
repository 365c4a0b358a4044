"""Pipeline documents with a server teacher, for the config tests."""

from __future__ import annotations

from tests.pipeline_doc import tiny_pipeline_doc


def server_doc(pair, tmp_path, *, k: int, server: dict | None, form: str = "topk") -> dict:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "1+1="}\n')
    signal = {"type": form, "k": k} if form == "topk" else {"type": form}
    teacher = {"signal": signal, "backend": {"type": "server", **(server or {})}}
    return tiny_pipeline_doc(pair, prompts, tmp_path / "run", teacher=teacher,
                             selection={"rule": {"type": "soft_or", "ratio": 0.5}})
