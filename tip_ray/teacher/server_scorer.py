"""The teacher stage on an external OpenAI-compatible server (`vllm serve`): top-k form only.

Each rollout row goes to the server as token ids with ``prompt_logprobs: k``; the answer is read
at the response positions exactly as the in-process top-k path reads its own log-probs
(tip_ray/teacher/openai_logprobs.py). Before the first batch the scorer checks that the server
serves the model named in the config, tokenises like the student, and accepts k log-probs.
"""

from __future__ import annotations

import time

import torch

from tip_ray.config.teacher_server import ServerTeacher, base_url
from tip_ray.records import RolloutBatch, ScoredBatch
from tip_ray.teacher.openai_logprobs import answer_choices, completion_request, row_topk
from tip_ray.teacher.scorer import ScorerSettings
from tip_ray.teacher.server_client import ServerEndpoint, TeacherServerError, call
from tip_ray.tip.signal import TopKLogProbs, tail_logprob_of

# Digits, spaces, punctuation, a newline and accented letters: tokenisers that differ at all
# rarely agree on this.
PROBE_TEXT = "Teacher probe: 1234 + 5678 = 6912, naïve café!\n  x_y"


def probe_text(tokenizer) -> str:
    """PROBE_TEXT without the characters `tokenizer` cannot write back (a small alphabet's
    unknown characters, whose handling may differ between two copies of one vocabulary)."""
    kept = "".join(c for c in PROBE_TEXT if tokenizer.decode(tokenizer.encode(c, add_special_tokens=False)) == c)
    return kept if len(tokenizer.encode(kept, add_special_tokens=False)) >= 3 else PROBE_TEXT


class ServerTeacherScorer:
    """Same role and ``score`` contract as TeacherScorer, for ``teacher.signal.type: topk``."""

    def __init__(self, settings: ScorerSettings, *, tokenizer_path: str):
        server = settings.teacher.backend
        if not isinstance(server, ServerTeacher):
            raise TypeError(f"ServerTeacherScorer needs teacher.backend type 'server', got {server.type!r}")
        form = settings.teacher.signal
        if form.type != "topk":
            raise TeacherServerError(
                f"teacher.backend type 'server' yields the top-k form only, got teacher.signal.type "
                f"{form.type!r}; set it to 'topk'", url=server.url)
        self.k = form.k
        vocab = settings.vocab_size
        if vocab is not None and not 1 <= self.k <= vocab:
            # Checked before any request: vLLM 0.32's engine dies on prompt_logprobs above the vocabulary.
            raise TeacherServerError(
                f"teacher.signal.k is {self.k} but the student's vocabulary has {vocab} tokens: "
                f"set teacher.signal.k to at most {vocab}", url=server.url)
        self.settings = settings
        self.endpoint = ServerEndpoint(
            url=base_url(server.url), api_key_env=server.api_key_env, timeout_s=server.timeout_s,
            max_retries=server.max_retries, backoff_s=server.backoff_s)
        self.max_logprobs = int(server.max_logprobs)
        self.model, self.max_model_len = self._served_model(server.model)
        probe = self._check_tokenizer(tokenizer_path)
        self._check_k(probe)

    def ready(self) -> str:
        return self.settings.name

    # ------------------------------------------------------------------ start checks

    def _served_model(self, wanted: str | None) -> tuple[str, int | None]:
        answer = call(self.endpoint, "/v1/models")
        listed = {m.get("id"): m for m in answer.get("data", []) if isinstance(m, dict)} if isinstance(answer, dict) else {}
        if wanted is None:
            if len(listed) != 1:
                raise TeacherServerError(
                    f"teacher server {self.endpoint.url} serves {sorted(listed) or 'no model'}: name the "
                    f"teacher in teacher.backend.model", url=self.endpoint.url)
            wanted = next(iter(listed))
        if wanted not in listed:
            raise TeacherServerError(
                f"teacher.backend.model {wanted!r} is not served by {self.endpoint.url} (it serves "
                f"{sorted(listed)}); set teacher.backend.model to one of them", url=self.endpoint.url)
        length = listed[wanted].get("max_model_len")
        return wanted, int(length) if isinstance(length, int) else None

    def _check_tokenizer(self, tokenizer_path: str) -> list[int]:
        """The student's ids of the probe text, after checking the server gives the same ids."""
        from tip_ray.models.loading import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_path)
        probe = probe_text(tokenizer)
        ours = tokenizer.encode(probe, add_special_tokens=False)
        try:
            answer = call(self.endpoint, "/tokenize",
                          {"model": self.model, "prompt": probe, "add_special_tokens": False})
        except TeacherServerError as exc:
            if exc.status != 404:
                raise
            answer = None  # not vLLM's server: the id range is still checked on every answer
        if answer is not None and answer.get("tokens") != ours:
            raise TeacherServerError(
                f"teacher server {self.endpoint.url} ({self.model}) tokenises differently from the "
                f"student's tokenizer {tokenizer_path}: {probe!r} is {answer.get('tokens')} there "
                f"and {ours} here; distillation needs one shared tokenizer and vocabulary (serve a "
                f"teacher of the student's family)", url=self.endpoint.url)
        return ours

    def _check_k(self, probe: list[int]) -> None:
        k = self.k
        try:
            self._score_rows([probe[:3]], [[1, 2]])
        except TeacherServerError as exc:
            if exc.status == 400 and "logprob" in exc.message.lower():
                raise TeacherServerError(
                    f"teacher server {self.endpoint.url} refuses teacher.signal.k = {k} log-probs "
                    f"({exc.message}); lower teacher.signal.k (and teacher.backend.max_logprobs) to the "
                    f"server's --max-logprobs, or restart `vllm serve` with --max-logprobs {k}",
                    url=self.endpoint.url, status=400) from None
            raise

    # ------------------------------------------------------------------ scoring

    def _score_rows(self, rows: list[list[int]], positions: list[list[int]]):
        k = self.k
        where = f"teacher server {self.endpoint.url}"
        answer = call(self.endpoint, "/v1/completions", completion_request(rows, self.model, k))
        parts = [row_topk(lps, ids, at, k, f"{where}, prompt {i}")
                 for i, (lps, ids, at) in enumerate(zip(answer_choices(answer, len(rows), where), rows, positions))]
        vocab = self.settings.vocab_size
        for indices, _, _ in parts:
            if vocab is not None and indices.numel() and int(indices.max()) >= vocab:
                raise TeacherServerError(
                    f"{where} returned token id {int(indices.max())}, beyond the student's vocabulary "
                    f"of {vocab}: the server's model does not share the student's vocabulary",
                    url=self.endpoint.url)
        return parts

    def _row_requests(self, rollout: RolloutBatch) -> tuple[list[list[int]], list[list[int]]]:
        rows, positions = [], []
        for row, length in enumerate(rollout.attention_mask.sum(1).tolist()):
            at = rollout.response_mask[row, :length].nonzero().squeeze(1).tolist()
            if not at:
                continue
            if self.max_model_len is not None and length > self.max_model_len:
                raise TeacherServerError(
                    f"rollout row {row} holds {length} tokens but the teacher server's max_model_len "
                    f"is {self.max_model_len}; lower data.max_prompt_tokens + "
                    f"rollout.sampling.max_new_tokens or serve with a longer --max-model-len",
                    url=self.endpoint.url)
            if at[0] == 0:
                raise TeacherServerError(f"rollout row {row} has no prompt token before its response",
                                         url=self.endpoint.url)
            rows.append(rollout.input_ids[row, :length].tolist())
            positions.append(at)
        return rows, positions

    def score(self, rollout: RolloutBatch) -> ScoredBatch:
        start = time.perf_counter()
        k = self.k
        rows, positions = self._row_requests(rollout)
        step = self.settings.teacher.micro_batch_size
        parts = []
        for first in range(0, len(rows), step):
            parts += self._score_rows(rows[first:first + step], positions[first:first + step])
        if parts:
            indices = torch.cat([p[0] for p in parts])
            logprobs = torch.cat([p[1] for p in parts])
            sampled = torch.cat([p[2] for p in parts])
        else:
            indices = torch.zeros((0, k), dtype=torch.int64)
            logprobs = torch.zeros((0, k), dtype=torch.float32)
            sampled = torch.zeros((0,), dtype=torch.float32)
        signal = TopKLogProbs(indices=indices, logprobs=logprobs, tail_logprob=tail_logprob_of(logprobs))
        return ScoredBatch(rollout=rollout, teacher=signal, teacher_sampled_logprobs=sampled,
                           seconds=time.perf_counter() - start)
