"""SIGINT / SIGTERM during training: stop at the next step boundary, save, say how to resume.

While a :class:`StopSignals` block is active (``train()`` opens one), the first SIGINT
(Ctrl-C) or SIGTERM (what a scheduler sends before it kills) only records the request:
the loop finishes the step it is in, saves a checkpoint at that step boundary and returns
a result whose ``interrupted`` names the signal. A second signal raises
``KeyboardInterrupt`` at once, wherever the run is; that cannot corrupt anything on disk
(checkpoints are written into a hidden folder and renamed into place, metrics.csv likewise,
metrics.jsonl one whole line per write), it only loses the steps after the newest checkpoint.

Handlers can only be installed from the main thread; elsewhere the block does nothing (the
signals keep their previous behaviour). The previous handlers are restored on exit.
"""
from __future__ import annotations

import os
import signal
import threading

__all__ = ["StopSignals", "STOP_SIGNALS"]

#: the signals that request a graceful stop
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager turning the first SIGINT / SIGTERM into a stop request (see the module docstring).

    Attributes:
        requested: ``"SIGINT"`` or ``"SIGTERM"`` once a stop was requested, else None.
        active: whether the handlers are installed (False off the main thread or when disabled).
    """

    def __init__(self, enabled: bool = True, what: str = "training"):
        self.enabled = enabled
        self.what = what
        self.requested: str | None = None
        self.active = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested is None:
            self.requested = name
            # os.write, not print: the handler may run while the main code is inside a write to
            # stderr (the progress bar), and Python's buffered streams refuse re-entrant writes.
            os.write(2, f"\n{name} received: stopping {self.what} after this step and saving a checkpoint "
                        f"(send it again to quit at once)\n".encode())
            return
        os.write(2, f"\n{name} received again: quitting at once\n".encode())
        raise KeyboardInterrupt(f"{name} received twice")

    def __enter__(self) -> "StopSignals":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
            self.active = True
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)  # None: set outside Python
        self._previous.clear()
        self.active = False
