"""Peak memory of a learner step: the GPU allocator's peak on GPU, else the process's RSS peak
sampled by a background thread (freed CPU memory is not returned to the OS, so the lifetime
maximum would hide per-step differences only in one direction: it never goes down)."""

from __future__ import annotations

import threading

import psutil
import torch


class PeakMemory:
    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            return
        self._peak = self._process.memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def stop(self) -> float:
        """Peak in MiB since start()."""
        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        return self._peak / 2**20
