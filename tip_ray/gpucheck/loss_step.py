"""Section ``loss_step``: peak memory and time of the learner's loss step, forward + backward.

Student hidden states [S, T, d] and LM head [V, d] in bfloat16 (what FSDP's bf16 mixed
precision hands the loss; float32 in the CPU toy run), reverse KL against a teacher given as its final hidden states plus its
LM head [V, d_T] (the compact exact form the Qwen3 pair uses). Three ways to compute it:

- ``selective``: ``tip_ray.tip.selective_distill_loss`` on the floor(rho * T) positions per
  sequence the selector kept (the ``random`` rule: which ones changes neither memory nor time);
  the learner receives only the selected teacher rows. Its math runs in float32.
- ``selective_tf32``: the same at rho = 1 with TF32 matrix products allowed (CUDA only): how much
  of its time is float32 matrix work.
- ``plain``: every position, the full logits [S*T, V] with gradient, log-softmax in float32,
  the teacher's log-probs likewise, reverse KL, mean: the straightforward all-token loss.
- ``chunked``: every position, projected 512 rows at a time, each chunk's logits recomputed in
  the backward pass (activation checkpointing), so no [S*T, V] tensor ever exists: the usual
  memory-bounded all-token loss ("loss chunk 512" in the paper).

Two shapes: 1 x 8192, where every path fits and the targets are judged, then the paper's
8 x 8192, where ``plain`` may not fit the device (it is then recorded as out of memory).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from tip_ray.tip import TeacherHidden, select_tokens, selected_weights, selection_positions, selective_distill_loss

from .budget import Deadline, SectionRecord
from .measure import free_memory, measure_step
from .sizes import Sizes

RATIOS = (1.0, 0.5, 0.2)


def _reverse_kl_sum(hidden: Tensor, head: Tensor, teacher_hidden: Tensor, teacher_head: Tensor) -> Tensor:
    """sum over rows of KL(P_S || P_T), logits from bf16 products, softmax in float32."""
    log_p = torch.log_softmax((hidden @ head.T).float(), dim=-1)
    with torch.no_grad():
        log_q = torch.log_softmax((teacher_hidden @ teacher_head.T).float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum()


class _RecomputedChunk(torch.autograd.Function):
    """``_reverse_kl_sum`` of one chunk, keeping only its inputs; the backward pass recomputes the
    chunk's logits (what activation checkpointing does, without importing torch's compiler stack)."""

    @staticmethod
    def forward(ctx, hidden: Tensor, head: Tensor, teacher_hidden: Tensor, teacher_head: Tensor) -> Tensor:
        ctx.save_for_backward(hidden, head, teacher_hidden, teacher_head)
        with torch.no_grad():
            return _reverse_kl_sum(hidden, head, teacher_hidden, teacher_head)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        hidden, head, teacher_hidden, teacher_head = ctx.saved_tensors
        with torch.enable_grad():
            hidden, head = hidden.detach().requires_grad_(True), head.detach().requires_grad_(True)
            value = _reverse_kl_sum(hidden, head, teacher_hidden, teacher_head)
            grad_hidden, grad_head = torch.autograd.grad(value, (hidden, head), grad_output)
        return grad_hidden, grad_head, None, None


class _Case:
    """The inputs of one case, built on the device; ``step`` runs forward + backward once."""

    def __init__(self, sizes: Sizes, sequences: int, tokens: int, device: torch.device, seed: int = 0):
        g = torch.Generator(device=device).manual_seed(seed)
        d, d_t, vocab = sizes.loss_hidden, sizes.loss_teacher_hidden, sizes.loss_vocab
        dtype = getattr(torch, sizes.loss_dtype)
        self.device, self.chunk = device, sizes.loss_chunk
        self.shape = (sequences, tokens, d)
        self.hidden = torch.randn(sequences, tokens, d, generator=g, device=device, dtype=dtype).requires_grad_(True)
        self.head = (torch.randn(vocab, d, generator=g, device=device, dtype=dtype) / math.sqrt(d)).requires_grad_(True)
        self.teacher_head = torch.randn(vocab, d_t, generator=g, device=device, dtype=dtype) / math.sqrt(d_t)
        self.teacher_all = torch.randn(sequences * tokens, d_t, generator=g, device=device, dtype=dtype)

    def _clear_grads(self) -> None:
        self.hidden.grad = None
        self.head.grad = None

    def selective(self, ratio: float) -> tuple[Callable[[], None], int]:
        sequences, tokens, _ = self.shape
        zeros = torch.zeros(sequences, tokens, device=self.device)
        selection = select_tokens(
            "random", entropy=zeros, reverse_kl=zeros, forward_kl=zeros,
            response_mask=torch.ones(sequences, tokens, dtype=torch.bool, device=self.device), ratio=ratio,
            generator=torch.Generator(device=self.device).manual_seed(1),
        )
        positions, weights = selection_positions(selection), selected_weights(selection)
        flat = positions[:, 0] * tokens + positions[:, 1]
        signal = TeacherHidden(self.teacher_all[flat].contiguous())  # only the selected rows travel
        self.teacher_all = None
        count = float(positions.shape[0])

        def step() -> None:
            self._clear_grads()
            loss = selective_distill_loss(
                self.hidden, self.head, positions, signal, weights, loss="reverse_kl",
                global_token_count=count, teacher_head=self.teacher_head, chunk_size=self.chunk,
            )
            loss.backward()

        return step, int(count)

    def plain(self) -> tuple[Callable[[], None], int]:
        sequences, tokens, d = self.shape
        count = sequences * tokens

        def step() -> None:
            self._clear_grads()
            loss = _reverse_kl_sum(self.hidden.reshape(-1, d), self.head, self.teacher_all, self.teacher_head) / count
            loss.backward()

        return step, count

    def chunked(self) -> tuple[Callable[[], None], int]:
        sequences, tokens, d = self.shape
        count = sequences * tokens

        def step() -> None:
            self._clear_grads()
            rows = self.hidden.reshape(-1, d)
            total = torch.zeros((), device=self.device)
            for start in range(0, count, self.chunk):
                end = min(start + self.chunk, count)
                total = total + _RecomputedChunk.apply(
                    rows[start:end], self.head, self.teacher_all[start:end], self.teacher_head
                )
            (total / count).backward()

        return step, count


def _plan(sizes: Sizes, device: torch.device) -> list[tuple[int, int, str, float]]:
    """(sequences, tokens, path, ratio) in the order run."""
    plan = []
    for sequences, tokens in sizes.loss_shapes:
        plan += [(sequences, tokens, "selective", ratio) for ratio in RATIOS]
        if device.type == "cuda":
            plan.append((sequences, tokens, "selective_tf32", 1.0))
        plan += [(sequences, tokens, "chunked", 1.0), (sequences, tokens, "plain", 1.0)]
    return plan


def run(device: torch.device, sizes: Sizes, deadline: Deadline, record: SectionRecord) -> None:
    record.info(vocab=sizes.loss_vocab, hidden=sizes.loss_hidden, teacher_hidden=sizes.loss_teacher_hidden,
                chunk=sizes.loss_chunk, dtype=sizes.loss_dtype, loss="reverse_kl", warmup=sizes.warmup,
                repeats=sizes.repeats)
    plan = _plan(sizes, device)
    for index, (sequences, tokens, path, ratio) in enumerate(plan):
        if not deadline.allows():
            record.out_of_time([f"{path} {s}x{t} rho={r}" for s, t, path, r in plan[index:]])
            return
        row = {"path": path, "ratio": ratio, "sequences": sequences, "tokens_per_sequence": tokens}
        tf32 = torch.backends.cuda.matmul.allow_tf32
        try:
            torch.backends.cuda.matmul.allow_tf32 = path == "selective_tf32"
            case = _Case(sizes, sequences, tokens, device)
            if path.startswith("selective"):
                step, row["loss_tokens"] = case.selective(ratio)
            else:
                step, row["loss_tokens"] = getattr(case, path)()
            row.update(measure_step(step, device, warmup=sizes.warmup, repeats=sizes.repeats))
        except Exception as exc:  # noqa: BLE001 - out of memory while building inputs is a result too
            from .measure import is_out_of_memory

            if not is_out_of_memory(exc):
                raise
            row.update({"status": "oom", "error": str(exc).strip().splitlines()[0][:300]})
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            case = step = None
            free_memory(device)
        record.case(row)
