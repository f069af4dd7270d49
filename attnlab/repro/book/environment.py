"""The environment a campaign of reproductions ran in: versions, machine, threads, load, code revision."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["environment"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _revision() -> str:
    """The git commit of the attnlab sources (``+dirty`` with uncommitted changes), or "unknown"."""
    root = Path(__file__).resolve().parents[3]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("+dirty" if dirty else "")) if rev else "unknown"


def environment() -> dict:
    """Versions (Python, torch, numpy, scipy, matplotlib), the machine (CPU model, cores, memory), torch's default
    thread count, the one-minute load average now, and the attnlab revision."""
    import matplotlib
    import numpy
    import scipy
    import torch

    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
        "scipy": scipy.__version__, "matplotlib": matplotlib.__version__, "platform": platform.platform(),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": mem_gib,
        "torch_default_threads": torch.get_num_threads(), "threads_per_reproduction": 1,
        "load_1min": round(os.getloadavg()[0], 2), "attnlab_revision": _revision(),
    }
