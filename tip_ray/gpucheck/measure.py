"""Peak memory and time of a measured step on CUDA or CPU; running out of memory is a result.

On CUDA the peak is ``torch.cuda.max_memory_allocated`` after a reset, i.e. what the caching
allocator handed out (tensors), not what it reserved. On CPU it is the process's peak resident
set (VmHWM after the kernel's counter is reset through /proc/self/clear_refs), a coarser figure:
memory the C library keeps after a free can hide part of a later peak.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable
from typing import Any

import torch

GIB = float(2**30)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        return 1024 * int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1))


class PeakMeter:
    """Peak memory over a region: ``peak_bytes`` (absolute) and ``added_bytes`` (over the start)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "VmHWM after clear_refs"

    def __enter__(self) -> PeakMeter:
        synchronize(self.device)
        free_memory(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
        else:
            self.start_bytes = _status_bytes("VmRSS")
            try:
                with open("/proc/self/clear_refs", "w") as refs:
                    refs.write("5")
            except OSError:
                self.method = "VmRSS at the end (clear_refs not writable)"
        return self

    def __exit__(self, *exc: Any) -> None:
        synchronize(self.device)
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("VmHWM"):
            self.peak_bytes = _status_bytes("VmHWM")
        else:
            self.peak_bytes = _status_bytes("VmRSS")
        self.added_bytes = max(0, self.peak_bytes - self.start_bytes)


def measure_step(
    step: Callable[[], Any], device: torch.device, *, warmup: int = 1, repeats: int = 2
) -> dict[str, Any]:
    """Run ``step`` warmup + repeats times; peak memory over the timed repeats, their times.

    Returns {"status": "ok", "peak_gib", "added_gib", "seconds" (fastest), "all_seconds",
    "memory_method"}, or {"status": "oom", "error": ...} when the device ran out of memory (the
    memory is freed again, so the next case runs on a clean device).
    """
    oom = None
    try:
        for _ in range(warmup):
            step()
        synchronize(device)
        times = []
        with PeakMeter(device) as meter:
            for _ in range(repeats):
                synchronize(device)
                start = time.perf_counter()
                step()
                synchronize(device)
                times.append(time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is a result; the rest propagates
        if not is_out_of_memory(exc):
            raise
        oom = str(exc).strip().splitlines()[0][:300]
    if oom is not None:
        free_memory(device)
        return {"status": "oom", "error": oom}
    return {
        "status": "ok",
        "peak_gib": round(meter.peak_bytes / GIB, 3),
        "added_gib": round(meter.added_bytes / GIB, 3),
        "seconds": round(min(times), 4),
        "all_seconds": [round(t, 4) for t in times],
        "memory_method": meter.method,
    }
