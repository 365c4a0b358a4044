"""Math answer grading with math-verify, under a hard per-answer time limit.

math-verify extracts the final answer (``\\boxed{...}`` first, then plain forms such as "the
answer is 3/4") and checks equivalence with sympy. Its own timeouts use ``signal.alarm``, which
works only in a main thread and cannot interrupt long C-level work (a huge integer power, say).
So answers are graded in a pool of persistent worker processes (``python -m
tip_ray.eval.grading_worker``, talking JSON lines over pipes); a worker that runs past the
limit is killed and replaced, and its answer counts as wrong with ``timed_out=True``. A
pathological model output therefore costs at most the time limit, never a hung evaluation.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import wait
from pathlib import Path

DEFAULT_TIMEOUT_S = 5.0
# Starting a worker imports sympy; on a loaded machine that can take many seconds.
WORKER_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class GradeResult:
    """The grade of one response."""

    correct: bool
    """The extracted answer is equivalent to the gold answer."""
    timed_out: bool
    """Grading ran past the time limit and was killed (then ``correct`` is False)."""
    extracted: str | None
    """The answer found in the response, as math-verify parsed it (None when none was found)."""
    error: str | None = None
    """Why grading failed, when it did for a reason other than the time limit."""


# ---------------------------------------------------------------- in-process checking (workers)

def _prediction_targets():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    # boxed answers take priority over "final answer is ..." phrases and bare expressions.
    return [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


@lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    # Gold answers are LaTeX without delimiters; boxing them makes the LaTeX extractor take the
    # whole string. A plain-expression parse is the fallback (e.g. "0.5" or "x^2+1").
    parsed = parse("\\boxed{" + gold + "}", [LatexExtractionConfig()], parsing_timeout=None)
    if not parsed:
        parsed = parse(gold, [ExprExtractionConfig()], parsing_timeout=None)
    return parsed


def check_answer(response: str, gold: str) -> tuple[bool, str | None]:
    """(correct, extracted answer) for one response, with no time limit: call it only in a
    process that can be killed (the grading workers do)."""
    from math_verify import parse, verify

    predicted = parse(response, _prediction_targets(), parsing_timeout=None)
    extracted = str(predicted[-1]) if predicted else None
    if not predicted:
        return False, None
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        raise ValueError(f"gold answer {gold!r} could not be parsed")
    return bool(verify(gold_parsed, predicted, timeout_seconds=None)), extracted


# ---------------------------------------------------------------- the worker pool (parent side)

def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class _Worker:
    """One grading process: send a request, read replies as JSON lines."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
        # One thread each: the pool, not the BLAS threads inside sympy, provides the parallelism.
        env.setdefault("OMP_NUM_THREADS", "1")
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "tip_ray.eval.grading_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            bufsize=0,
        )
        self.started_at = time.monotonic()
        self.ready = False
        self.buffer = b""
        self.task: int | None = None  # index of the answer being graded
        self.deadline = 0.0

    def fileno(self) -> int:
        return self.process.stdout.fileno()

    def send(self, index: int, response: str, gold: str, deadline: float) -> None:
        self.task, self.deadline = index, deadline
        self.process.stdin.write((json.dumps({"id": index, "response": response, "gold": gold}) + "\n").encode())

    def read_messages(self) -> list[dict]:
        """Complete replies available now; raises EOFError when the process has exited."""
        data = os.read(self.fileno(), 1 << 16)
        if not data:
            raise EOFError
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.stderr):
            stream.close()

    def close(self) -> None:
        """Ask the worker to exit (end of input), killing it if it does not."""
        try:
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class MathGrader:
    """A pool of grading workers; call it as ``grader(responses, golds) -> list[bool]``.

    Use ``grade_batch`` for the full ``GradeResult`` of each answer. ``timeout_s`` bounds the
    wall time of each answer from the moment a worker takes it. Workers start on first use and
    stop with ``close()`` (or at interpreter exit). Safe to share between threads (one batch
    runs at a time).
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, num_workers: int | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"MathGrader: timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self.num_workers = num_workers or min(4, _available_cpus())
        if self.num_workers < 1:
            raise ValueError(f"MathGrader: num_workers must be >= 1, got {self.num_workers}")
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.workers_replaced = 0
        """How many workers were killed for running past the limit (or dying) and replaced."""

    def __enter__(self) -> MathGrader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.close()
            self._workers = []

    def __call__(self, responses: Sequence[str], golds: Sequence[str]) -> list[bool]:
        return [r.correct for r in self.grade_batch(responses, golds)]

    def grade(self, response: str, gold: str, timeout_s: float | None = None) -> GradeResult:
        return self.grade_batch([response], [gold], timeout_s)[0]

    def _start_workers(self) -> None:
        while len(self._workers) < self.num_workers:
            self._workers.append(_Worker())

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker()
        self.workers_replaced += 1

    def grade_batch(
        self, responses: Sequence[str], golds: Sequence[str], timeout_s: float | None = None
    ) -> list[GradeResult]:
        """Grade ``responses[i]`` against ``golds[i]`` for every i, in parallel."""
        if len(responses) != len(golds):
            raise ValueError(f"grade_batch: {len(responses)} responses but {len(golds)} gold answers")
        limit = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._start_workers()
            return self._run(list(responses), list(golds), limit)

    def _run(self, responses: list[str], golds: list[str], limit: float) -> list[GradeResult]:
        results: list[GradeResult | None] = [None] * len(responses)
        pending = deque(range(len(responses)))
        while pending or any(w.task is not None for w in self._workers):
            now = time.monotonic()
            for worker in self._workers:
                if worker.ready and worker.task is None and pending:
                    index = pending.popleft()
                    try:
                        worker.send(index, responses[index], golds[index], now + limit)
                    except (BrokenPipeError, OSError):
                        pending.appendleft(index)
                        worker.task = None
                        self._replace(worker)
            deadlines = [w.deadline for w in self._workers if w.task is not None]
            deadlines += [w.started_at + WORKER_START_TIMEOUT_S for w in self._workers if not w.ready]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for worker in wait(self._workers, timeout=timeout):
                try:
                    messages = worker.read_messages()
                except EOFError:
                    self._on_worker_exit(worker, results)
                    continue
                for message in messages:
                    if message.get("ready"):
                        worker.ready = True
                    elif worker.task == message["id"]:
                        results[worker.task] = GradeResult(
                            correct=bool(message["correct"]), timed_out=False,
                            extracted=message.get("extracted"), error=message.get("error"),
                        )
                        worker.task = None
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.task is not None and now >= worker.deadline:
                    results[worker.task] = GradeResult(correct=False, timed_out=True, extracted=None,
                                                       error=f"grading took longer than {limit:g} s")
                    worker.task = None
                    self._replace(worker)
                elif not worker.ready and now >= worker.started_at + WORKER_START_TIMEOUT_S:
                    raise RuntimeError(
                        f"a grading worker did not start within {WORKER_START_TIMEOUT_S:g} s; "
                        f"its stderr: {worker.stderr_tail()!r}"
                    )
        assert all(r is not None for r in results), "every answer gets a result"
        return results  # type: ignore[return-value]

    def _on_worker_exit(self, worker: _Worker, results: list[GradeResult | None]) -> None:
        if not worker.ready:
            code = worker.process.wait()
            raise RuntimeError(
                f"a grading worker exited with code {code} before it was ready (is math-verify "
                f"installed?); its stderr: {worker.stderr_tail()!r}"
            )
        if worker.task is not None:  # it died on this answer (e.g. out of memory)
            results[worker.task] = GradeResult(correct=False, timed_out=False, extracted=None,
                                               error=f"grading worker died: {worker.stderr_tail()[-300:]!r}")
            worker.task = None
        self._replace(worker)


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------- module-level convenience

_default_grader: MathGrader | None = None
_default_lock = threading.Lock()


def default_grader() -> MathGrader:
    """A process-wide pool, started on first use and closed at exit."""
    global _default_grader
    with _default_lock:
        if _default_grader is None:
            _default_grader = MathGrader()
            atexit.register(_default_grader.close)
        return _default_grader


def grade_math_batch(
    responses: Sequence[str], golds: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[GradeResult]:
    """Grade many responses with the shared pool (see ``MathGrader.grade_batch``)."""
    return default_grader().grade_batch(responses, golds, timeout_s)


def grade_math(response: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when the final answer of ``response`` is equivalent to ``gold``; False after ``timeout_s``."""
    return grade_math_batch([response], [gold], timeout_s)[0].correct
