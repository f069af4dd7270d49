"""``attnlab repro --all``: every reproduction in parallel worker processes, resumable, then the verdict book.

Each reproduction runs in its own process (``python -m attnlab.cli repro <slug> --threads 1``, with
``OMP_NUM_THREADS=1``), at most ``workers`` at a time, so a crash or a hang in one never takes the
others down and each gets one core of its own. Its output goes to ``<out>/<slug>/`` (``result.json``,
``report.md``, plots) and its terminal output to ``<out>/<slug>/log.txt``. A reproduction whose
``result.json`` is already in the folder (same mode, quick or full, and the current result schema) is
not run again unless ``rerun``: an interrupted campaign resumes where it stopped. The longest
reproductions start first (:data:`FULL_CPU_ESTIMATE`), which shortens the wall time on a few workers.

``campaign.json`` records the mode, the workers, start and end, every reproduction's status, wall time
and exit code, the machine's load average sampled every 30 s, and the environment
(:func:`~attnlab.repro.book.environment.environment`). At the end the verdict book
(:func:`~attnlab.repro.book.html.write_book`) is written to ``<out>/index.html``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from attnlab.repro.book.environment import environment
from attnlab.repro.harness.runner import SCHEMA, load_result
from attnlab.utils.checks import fail

__all__ = ["Campaign", "run_all", "is_done", "default_out", "FULL_CPU_ESTIMATE", "estimate_wall", "CAMPAIGN_FILE"]

CAMPAIGN_FILE = "campaign.json"
#: Single-threaded CPU seconds of each full run under the protocol, as measured in the timed full run of 2026-12-05
#: (`attnlab repro --all --workers 2`, quiet machine; benchmarks/RESULTS.md). Used to start the longest first and to
#: estimate the wall time; a slug missing here counts as the median. ``unified_long_sequence``: the wall seconds, its
#: two gloo ranks being processes of their own. ``mamba_ssm``: its re-run after the selective scan's hand-written
#: token loop (1369 s in the full run, before it).
FULL_CPU_ESTIMATE = {
    "spectformer": 300, "activator": 182, "convit": 383, "crossvit": 234, "tnt": 229, "shvit": 199,
    "path_ensemble": 299, "hyena_nd": 848, "instability_proxies": 486, "icl_regression": 385, "deltanet": 2209,
    "random_features": 35, "mamba_ssm": 1116, "biformer": 414, "s2aformer": 290, "ssa_pathways": 1066,
    "combiner": 1495, "sea": 1244, "dinat": 399, "axial": 374, "kmax_deeplab": 490, "fod": 658, "fit": 500,
    "unified_long_sequence": 56, "attention_drop": 1092, "scan_snap": 16, "att_svm": 21, "complexformer": 484,
    "deconstructing_attention": 535, "echoatt": 469, "isomer": 341, "video_anomaly": 309,
}


def default_out(quick: bool) -> Path:
    """``runs/repro-all`` (full) or ``runs/repro-all-quick``."""
    return Path("runs") / ("repro-all-quick" if quick else "repro-all")


def is_done(folder: Path, quick: bool) -> bool:
    """Whether ``folder`` holds a finished run of the same mode (quick or full) in the current result schema."""
    try:
        r = load_result(folder)
    except (OSError, ValueError, TypeError, KeyError):
        return False
    return r.quick == quick and r.schema == SCHEMA


def _estimate(slug: str) -> float:
    known = sorted(FULL_CPU_ESTIMATE.values())
    return FULL_CPU_ESTIMATE.get(slug, known[len(known) // 2])


def estimate_wall(slugs: list[str], workers: int) -> float:
    """Wall seconds of the full runs of ``slugs`` on ``workers`` single-threaded workers on a quiet machine, longest
    first (list scheduling of :data:`FULL_CPU_ESTIMATE`)."""
    if workers < 1:
        fail("workers", "an int >= 1", repr(workers))
    ends = [0.0] * workers
    for s in sorted(slugs, key=_estimate, reverse=True):
        i = ends.index(min(ends))
        ends[i] += _estimate(s)
    return max(ends)


@dataclass
class Campaign:
    """What ``run_all`` did: per slug its status (``done``, ``failed``, ``kept`` = finished before, ``pending`` = to be
    run by this invocation but not finished: still running, or the campaign was interrupted), wall seconds and exit
    code; the failed slugs; where the book is. ``campaign.json`` is written when the campaign starts (every slug it
    will run ``pending``) and after each reproduction; it keeps the records of earlier invocations for the slugs this
    one kept, and is left alone when there was nothing to run."""

    out_dir: Path
    quick: bool
    status: dict = field(default_factory=dict)
    book: Path | None = None

    @property
    def failed(self) -> list[str]:
        """Slugs whose run failed, in registry order."""
        return [s for s, st in self.status.items() if st["status"] == "failed"]


class _LoadSampler(threading.Thread):
    """Samples the one-minute load average every ``every`` seconds until stopped."""

    def __init__(self, every: float = 30.0):
        super().__init__(daemon=True)
        self.every, self.samples, self._stop_event = every, [], threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append(round(os.getloadavg()[0], 2))
            if self._stop_event.wait(self.every):
                return

    def stop(self) -> list[float]:
        self._stop_event.set()
        self.join()
        return self.samples


def _write_record(out: Path, record: dict) -> None:
    """Write ``campaign.json`` atomically (a temporary file, then a rename): a reader never sees half a record."""
    from attnlab.train.metrics import replace_atomically

    replace_atomically(out / CAMPAIGN_FILE, lambda f: json.dump(record, f, indent=2))


def _run_one(slug: str, folder: Path, quick: bool, seed: int, timeout: float | None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "attnlab.cli", "repro", slug, "--out", str(folder), "--threads", "1",
           "--seed", str(seed), "--no-progress", *(["--quick"] if quick else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    with open(folder / "log.txt", "w") as log:
        try:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = -9
            log.write(f"\n[attnlab repro --all] killed after the {timeout} s timeout\n")
    ok = code == 0 and is_done(folder, quick)
    return {"status": "done" if ok else "failed", "seconds": round(time.perf_counter() - t0, 1), "returncode": code,
            "log": str(folder / "log.txt")}


def run_all(slugs: list[str] | None = None, *, quick: bool, out_dir: str | Path | None = None, workers: int = 1,
            rerun: bool = False, seed: int = 0, progress: bool = True, timeout: float | None = None,
            book: bool = True) -> Campaign:
    """Run ``slugs`` (default every slug of ``REPROS``) as described in the module docstring; returns the
    :class:`Campaign` (``campaign.failed`` lists what failed; the CLI exits non-zero on it).

    ``workers`` processes at a time, each on one thread; ``timeout`` seconds per reproduction (None: none).
    """
    from attnlab.repro import REPROS
    from attnlab.repro.book.html import write_book

    slugs = list(REPROS) if slugs is None else list(slugs)
    unknown = [s for s in slugs if s not in REPROS]
    if unknown:
        fail("slugs", f"slugs among {sorted(REPROS)}", repr(unknown), KeyError)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        fail("workers", "an int >= 1", repr(workers))
    out = Path(out_dir) if out_dir is not None else default_out(quick)
    out.mkdir(parents=True, exist_ok=True)
    todo = sorted((s for s in slugs if rerun or not is_done(out / s, quick)), key=_estimate, reverse=True)
    camp = Campaign(out, quick, {s: {"status": "pending" if s in todo else "kept", "seconds": 0.0, "returncode": 0}
                                 for s in slugs})
    if not todo:  # nothing to run: the folder's record stays as the campaign that filled it wrote it
        camp.book = write_book(out) if book else None
        return camp
    before = json.loads((out / CAMPAIGN_FILE).read_text()) if (out / CAMPAIGN_FILE).is_file() else {}
    status = dict(before.get("status", {}))  # the runs of earlier invocations keep their record
    for slug in slugs:  # what this invocation runs starts pending, whatever an earlier one recorded for it
        status[slug] = camp.status[slug] if slug in todo else status.get(slug, camp.status[slug])
    record = {"quick": quick, "workers": workers, "seed": seed, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "environment": environment(), "ran": todo, "status": status}
    _write_record(out, record)
    sampler = _LoadSampler()
    sampler.start()
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"attnlab repro --all{' --quick' if quick else ''} ({workers} workers)")
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_run_one, s, out / s, quick, seed, timeout): s for s in todo}
            for fut in as_completed(futures):
                slug = futures[fut]
                camp.status[slug] = status[slug] = fut.result()
                if bar is not None:
                    bar.update(1)
                    bar.write(f"{slug}: {camp.status[slug]['status']} ({camp.status[slug]['seconds']:.0f} s)")
                _write_record(out, record)
    finally:
        if bar is not None:
            bar.close()
        record |= {"finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   "wall_seconds": round(time.perf_counter() - t0, 1), "load_samples": sampler.stop()}
        _write_record(out, record)
    if book:
        camp.book = write_book(out)
    return camp
