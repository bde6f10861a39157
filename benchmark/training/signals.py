"""Preemption: SIGTERM / SIGUSR2 (Slurm's warning before a time limit or a preemption, which submitit asks for)
set a flag that the loop checks between steps; the loop saves a checkpoint, stops, and hands the signal to the
handler installed before ours (submitit's, which requeues the job)."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopFlag:
    """SIGTERM / SIGUSR2 set a flag that the loop checks between steps (Slurm preemption, submitit timeout)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def install(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def chain(self) -> None:
        """After saving, hand the signal to the handler installed before ours, if it was a Python callable."""
        handler = self.previous.get(self.signum)
        if callable(handler):
            handler(self.signum, None)
