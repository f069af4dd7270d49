"""Outputs of ``attnlab bench``: a Markdown table, JSON and a PNG plot, each stating the setting measured.

The setting (case params such as B, H, D, the dtype, the mode and torch's thread count) heads the
table and titles the plot, so that a figure copied out of either still says what it measured.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from attnlab.bench.runner import BenchRow

__all__ = ["setting_line", "rows_to_markdown", "write_outputs", "load_average"]

def load_average() -> str:
    """The 1-minute load average of the machine (/proc/loadavg), "?" where it cannot be read."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


#: short names of the shape params, as papers write them
_SHORT = {"batch": "B", "heads": "H", "head_dim": "D"}


def _distinct(values) -> str:
    return "/".join(str(v) for v in dict.fromkeys(v for v in values if v is not None)) or "?"


def setting_line(rows: list[BenchRow]) -> str:
    """One line: case, params (B, H, D first), dtype, mode and torch threads of ``rows``."""
    if not rows:
        return "no measurements"
    params = {k: v for k, v in rows[0].params.items() if k != "threads"}
    shape = [f"{_SHORT[k]}={params.pop(k)}" for k in _SHORT if k in params]
    rest = [f"{k}={v}" for k, v in params.items()]
    setting = ", ".join(shape + rest) or "no params"
    return (f"{_distinct(r.case for r in rows)}: {setting}; {_distinct(r.dtype for r in rows)}; "
            f"{_distinct(r.mode for r in rows)}; torch threads {_distinct(r.threads for r in rows)}")


def rows_to_markdown(rows: list[BenchRow], reference: str) -> str:
    """Markdown: the setting line, then per N and impl the time, peak memory and time ratio against ``reference``.

    When several dtypes ran side by side (impls suffixed ``@bfloat16`` / ``@autocast``, see the runner), a last
    column gives each one's time over the same implementation's in the first dtype.
    """
    ref = {(r.n, r.mode): r.seconds for r in rows if r.impl == reference and r.seconds}
    own = {(r.n, r.mode, r.impl): r.seconds for r in rows if r.seconds}
    twins = any("@" in r.impl for r in rows)
    extra = " time / same impl, first dtype |" if twins else ""
    out = [setting_line(rows), "",
           "| N | impl | mode | dtype | threads | time (ms) | peak extra (MiB) | time / " + reference + " |" + extra,
           "|---|---|---|---|---|---|---|---|" + ("---|" if twins else "")]
    for r in sorted(rows, key=lambda r: (r.n, r.impl)):
        lead = f"| {r.n} | {r.impl} | {r.mode} | {r.dtype} | {r.threads if r.threads is not None else '?'} |"
        if r.seconds is None:
            out.append(f"{lead} {r.status} | | |" + (" |" if twins else ""))
            continue
        base = ref.get((r.n, r.mode))
        ratio = f"{r.seconds / base:.3g}" if base else "—"
        line = f"{lead} {r.seconds * 1e3:.2f} | {r.peak_mib:.1f} | {ratio} |"
        if twins:
            first = own.get((r.n, r.mode, r.impl.split("@")[0]))
            line += f" {r.seconds / first:.3g} |" if first and "@" in r.impl else " |"
        out.append(line)
    return "\n".join(out) + "\n"


def write_outputs(rows: list[BenchRow], out_dir: Path, case: str, reference: str) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` (time and memory vs N) into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md", "png": out_dir / "bench.png"}
    paths["json"].write_text(json.dumps([asdict(r) for r in rows], indent=2))
    paths["md"].write_text(rows_to_markdown(rows, reference))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for impl in sorted({r.impl for r in rows if r.seconds is not None}):
        pts = sorted((r.n, r.seconds, r.peak_mib) for r in rows if r.impl == impl and r.seconds is not None)
        ns = [p[0] for p in pts]
        axes[0].plot(ns, [p[1] * 1e3 for p in pts], marker="o", label=impl)
        axes[1].plot(ns, [max(p[2], 0.1) for p in pts], marker="o", label=impl)
    for ax, ylabel in zip(axes, ["time (ms)", "peak extra memory (MiB)"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"attnlab bench {case}\n{setting_line(rows)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths
