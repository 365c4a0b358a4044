"""Section ``learner_step``: the project's whole learner step (trunk + selective loss + AdamW)
under FSDP2, on one device: ``tip_ray.learner.rank.LearnerRank`` as the pipeline runs it.

A randomly initialised Qwen3-shaped model (Qwen3-0.6B's shape on the GPU) is written to a
temporary folder and loaded by the learner (float32 master weights, bf16 mixed precision on
CUDA), which joins a one-rank process group (NCCL on CUDA, gloo on CPU, rendezvous over a TCP
store on localhost). Each case is one update on S sequences of prompt + response tokens with
rho of the response tokens selected (the ``random`` rule), the teacher given as hidden states
whose LM head is the student's own (tied) embedding. The first update, which also creates the
optimizer state, is a warm-up; the next is measured: peak memory (the learner's own
``PeakMemory``: torch.cuda.max_memory_allocated over the step) and wall time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from tip_ray.broadcast import free_port
from tip_ray.config.learner import LearnerConfig, OptimizerConfig
from tip_ray.config.loss import ReverseKLLoss
from tip_ray.config.train import TrainConfig
from tip_ray.learner.rank import LearnerRank
from tip_ray.learner.settings import LearnerSettings
from tip_ray.records import SelectedBatch, SelectionSummary
from tip_ray.tip import TeacherHidden, select_tokens, selected_weights, selection_positions

from .budget import Deadline, SectionRecord
from .measure import free_memory, is_out_of_memory
from .model import build_model, parameter_count, save_model
from .sizes import Sizes

RATIOS = (1.0, 0.5, 0.2)


def make_batch(sizes: Sizes, ratio: float, device: torch.device, seed: int = 0) -> SelectedBatch:
    """S rows of random prompt + response ids with rho of the response positions selected."""
    g = torch.Generator().manual_seed(seed)
    rows, prompt, response = sizes.step_sequences, sizes.step_prompt, sizes.step_response
    vocab, width = sizes.model["vocab_size"], sizes.model["hidden_size"]
    length = prompt + response
    input_ids = torch.randint(0, vocab, (rows, length), generator=g)
    response_mask = torch.zeros(rows, length, dtype=torch.bool)
    response_mask[:, prompt:] = True
    zeros = torch.zeros(rows, length)
    selection = select_tokens("random", entropy=zeros, reverse_kl=zeros, forward_kl=zeros,
                              response_mask=response_mask, ratio=ratio, generator=g)
    positions = selection_positions(selection)
    count = int(positions.shape[0])
    summary = SelectionSummary(
        batch_id=0, policy_version=0, teacher_seconds=0.0, num_response_tokens=rows * response, num_selected=count,
        mean_entropy=0.5, mean_reverse_kl=0.1, quadrants={}, approximate=False, selector_version=0, seconds=0.0,
    )
    return SelectedBatch(
        batch_id=0, policy_version=0,
        input_ids=input_ids.to(device), attention_mask=torch.ones(rows, length, dtype=torch.int64, device=device),
        positions=positions.to(device), weights=selected_weights(selection).to(device),
        sampled_tokens=input_ids[positions[:, 0], positions[:, 1]].to(device),
        teacher=TeacherHidden((torch.randn(count, width, generator=g) * 2.0).to(torch.bfloat16).to(device)),
        teacher_sampled_logprobs=torch.zeros(count, device=device),
        summary=summary,
    )


def _settings(folder: Path, sizes: Sizes, device: torch.device) -> LearnerSettings:
    cuda = device.type == "cuda"
    optimizer = OptimizerConfig(lr=1e-6, warmup_steps=0, schedule="constant", grad_clip=1.0)
    return LearnerSettings(
        model_path=str(folder), teacher_head_path=str(folder), world_size=1,
        learner=LearnerConfig(micro_batch_size=sizes.step_sequences, optimizer=optimizer),
        loss=ReverseKLLoss(chunk_size=512), train=TrainConfig(steps=100, seed=0),
        dtype="bfloat16" if cuda else "float32", group_backend="nccl" if cuda else "gloo",
        vocab_size=sizes.model["vocab_size"],
    )


def run(device: torch.device, sizes: Sizes, deadline: Deadline, record: SectionRecord) -> None:
    with tempfile.TemporaryDirectory(prefix="tip-ray-gpucheck-") as tmp:
        started = time.perf_counter()
        model = build_model(sizes.model, device)
        params = parameter_count(model)
        save_model(model, Path(tmp) / "student")
        del model
        free_memory(device)
        learner = LearnerRank(0, _settings(Path(tmp) / "student", sizes, device))
        learner.setup("127.0.0.1", free_port("127.0.0.1"))
        record.info(
            parameters=params, model_shape=sizes.model, sequences=sizes.step_sequences, prompt_tokens=sizes.step_prompt,
            response_tokens=sizes.step_response, backend=learner.settings.group_backend, mixed_precision=learner.settings.dtype,
            setup_seconds=round(time.perf_counter() - started, 2),
            fsdp=f"{type(learner.model).__module__}.{type(learner.model).__name__}",
        )
        try:
            for index, ratio in enumerate(RATIOS):
                if not deadline.allows():
                    record.out_of_time([f"rho={r}" for r in RATIOS[index:]])
                    return
                record.case(_one_case(learner, sizes, ratio, device))
        finally:
            learner = None
            if dist.is_initialized():
                dist.destroy_process_group()


def _one_case(learner: LearnerRank, sizes: Sizes, ratio: float, device: torch.device) -> dict:
    row = {"ratio": ratio, "sequences": sizes.step_sequences, "tokens_per_sequence": sizes.step_prompt + sizes.step_response}
    try:
        batch = make_batch(sizes, ratio, device)
        row["loss_tokens"] = batch.num_selected
        warm = learner.train_step(batch)
        result = learner.train_step(batch)
        row.update(
            status="ok" if not result.skipped else "skipped", loss=result.loss, grad_norm=result.grad_norm,
            peak_gib=round(result.peak_memory_mib / 1024, 3), seconds=round(result.seconds, 4),
            warmup_seconds=round(warm.seconds, 4), warmup_peak_gib=round(warm.peak_memory_mib / 1024, 3),
            memory_method="torch.cuda.max_memory_allocated" if device.type == "cuda" else "RSS sampled every 5 ms",
        )
    except Exception as exc:  # noqa: BLE001 - out of memory is a result; anything else propagates
        if not is_out_of_memory(exc):
            raise
        row.update(status="oom", error=str(exc).strip().splitlines()[0][:300])
    finally:
        batch = None
        learner.optimizer.zero_grad(set_to_none=True)
        free_memory(device)
    return row
