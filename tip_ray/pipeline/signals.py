"""Stopping on SIGTERM without losing work.

Kubernetes sends SIGTERM when it deletes or preempts a pod, then SIGKILL after the grace period
(terminationGracePeriodSeconds, 30 s by default); `ray job stop` and `kill` send it too. Ray's
driver handler would exit at once (and the embedded Ray's own handler tears the node down under
the running driver, which aborts with a C++ stack dump). Instead the driver only notes the
signal; the step loop finishes the step it is in, writes a checkpoint when the slowest one
measured so far fits in what is left of the grace period, and stops with Preempted (exit code
143, the shell's code for SIGTERM). The same command then continues from that checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from tip_ray.errors import TipRayError

log = logging.getLogger("tip_ray")

SIGTERM_EXIT_CODE = 128 + signal.SIGTERM  # 143
# Kept free of the grace period after a checkpoint: stopping the actors and Ray.
SHUTDOWN_MARGIN_S = 5.0
# A checkpoint may take longer than the slowest seen (a busier disk): leave room for it.
WRITE_TIME_FACTOR = 1.5


class Preempted(TipRayError, RuntimeError):
    """The run stopped on SIGTERM after a step (with a checkpoint when one fitted)."""


def checkpoint_fits(seconds_left: float, slowest_write_s: float | None) -> bool:
    """Whether a checkpoint can be written in `seconds_left` of the grace period. With no write
    measured yet it is tried: a checkpoint is atomic, so a SIGKILL halfway loses only the time."""
    if slowest_write_s is None:
        return seconds_left > SHUTDOWN_MARGIN_S
    return slowest_write_s * WRITE_TIME_FACTOR + SHUTDOWN_MARGIN_S <= seconds_left


class StopRequest:
    """Notes SIGTERM (the handler does nothing else); the run polls `requested` between steps."""

    def __init__(self) -> None:
        self.received_at: float | None = None
        self._previous = None
        self._installed = False

    @property
    def requested(self) -> bool:
        return self.received_at is not None

    def seconds_left(self, grace_s: float) -> float:
        if self.received_at is None:
            return grace_s
        return grace_s - (time.monotonic() - self.received_at)

    def _handle(self, signum, frame) -> None:
        if self.received_at is None:  # a second SIGTERM changes nothing: the stop is under way
            self.received_at = time.monotonic()
            log.warning("SIGTERM received: finishing the current step, then stopping")

    def install(self) -> "StopRequest":
        """Handle SIGTERM from now on; call it again after ray.init, which installs its own
        handler. Only the main thread can; elsewhere the default handling stays."""
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, self._handle)
            if not self._installed:  # installed again after ray.init: keep the handler from before
                self._previous = previous
            self._installed = True
        return self

    def restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False


def stop_message(step: int, checkpoint_step: int | None, wrote: bool, why_not: str | None) -> str:
    """The one line Preempted carries: where the run stopped and where it will continue."""
    if checkpoint_step is None:
        where = "no checkpoint exists yet: the same command starts the run over"
    else:
        where = f"the same command (or `tip-ray run ... --resume`) continues from checkpoint step_{checkpoint_step}"
    done = f"checkpoint step_{step} written; " if wrote else (f"no checkpoint written ({why_not}); " if why_not else "")
    return f"stopped by SIGTERM after step {step}: {done}{where}"


def stop_after(session, step: int, learner_step: int) -> None:
    """Stop `session` (a RunSession) on SIGTERM after `step` updates: checkpoint if it fits and
    is not already there, then raise Preempted."""
    settings = session.config.checkpoint.on_sigterm
    saved = session.store.steps()
    wrote, why_not = False, None
    if step > 0 and (not saved or saved[-1] != step):
        left = session.stop_request.seconds_left(settings.grace_s)
        slowest = max(session.checkpoint_seconds, default=None)
        if not settings.enabled:
            why_not = "checkpoint.on_sigterm.enabled is false"
        elif checkpoint_fits(left, slowest):
            session.write_checkpoint(step, learner_step)
            wrote = True
        else:
            measured = f"the slowest checkpoint took {slowest:.1f} s" if slowest is not None else "none measured"
            why_not = (f"{max(left, 0):.0f} s of checkpoint.on_sigterm.grace_s={settings.grace_s:g} s were left "
                       f"and {measured}")
    saved = session.store.steps()
    message = stop_message(step, saved[-1] if saved else None, wrote, why_not)
    log.warning("%s", message)
    raise Preempted(message)
