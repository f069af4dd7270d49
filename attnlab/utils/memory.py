"""Peak resident memory of this process (Linux ``/proc/self``), for training runs and benchmarks.

``PeakRSS().start()`` resets the kernel's high-water mark (VmHWM) to the current resident set and
remembers that level; ``rise_mib()`` is how far the peak rose above it since. Without the reset
the peak of earlier work in the same process would mask the measured one.
"""
from __future__ import annotations

__all__ = ["proc_status_kib", "reset_peak_rss", "PeakRSS"]


def proc_status_kib(field: str) -> int | None:
    """The value in KiB of ``field`` (e.g. ``"VmRSS"``, ``"VmHWM"``) in /proc/self/status, or None if unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (writes 5 to /proc/self/clear_refs, Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Rise of the process's peak resident memory above its level at :meth:`start`, in MiB."""

    def __init__(self) -> None:
        self._base_kib: int | None = None

    def start(self) -> "PeakRSS":
        """Reset the high-water mark and remember the current resident set; returns self."""
        reset_peak_rss()
        self._base_kib = proc_status_kib("VmRSS")
        return self

    def rise_mib(self) -> float:
        """VmHWM now minus VmRSS at :meth:`start` (>= 0), in MiB; NaN where /proc is unavailable."""
        peak = proc_status_kib("VmHWM")
        if peak is None or self._base_kib is None:
            return float("nan")
        return max(peak - self._base_kib, 0) / 1024
