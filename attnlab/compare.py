"""``attnlab compare``: train several mixers on the same tasks and rank them.

Every mixer gets the same backbone, size, data (batch i is the same for all),
optimiser and step budget on each task. The ranking comes from the trained
models' validation quality; ties in quality (e.g. two mixers at 100 % recall) are
broken by validation loss, never by speed. A run that failed (an exception) is never
ranked: it is listed below the ranking with its error, and its mixer leaves the overall
ranking (its mean would be over fewer tasks). Names and budgets are checked before
anything runs (:func:`check_suite`). Outputs:
a ranked table, ``results.json``, ``results.csv``, ``loss_curves.png`` and
``report.md`` in the output folder.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from attnlab.utils.precision import check_precision
from attnlab.utils.threads import torch_threads
from attnlab.suites import Suite, TaskRun

__all__ = ["RunRecord", "CompareResult", "run_compare", "warm_worker", "rank_records", "incompatibility", "build_model",
           "named_model", "table_rows", "failed_rows", "to_markdown", "write_outputs", "check_suite", "HEADER",
           "FAILED_HEADER", "MODEL_PREFIX"]


@dataclass
class RunRecord:
    """One (mixer, task) training run and what it measured."""

    mixer: str
    task: str
    metric: str
    higher_is_better: bool
    quality: float | None
    val_loss: float | None
    params: int
    train_seconds: float
    tokens_per_second: float
    peak_mem_mib: float
    diverged: bool
    status: str = "ok"  # or "skipped: why" / "error: why"
    rank: int | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """The run raised an error (it is then never ranked)."""
        return self.status.startswith("error")


@dataclass
class CompareResult:
    """All runs of a comparison, with the overall ranking (best first; mixers with a failed run left out)."""

    suite: str
    records: list[RunRecord]
    overall: list[tuple[str, float]]  # (mixer, mean rank over tasks)
    seconds: float
    out_dir: str
    precision: str = "fp32"

    @property
    def failed(self) -> list[RunRecord]:
        """The runs that raised an error."""
        return [r for r in self.records if r.failed]


MODEL_PREFIX = "model:"


def named_model(name: str, task_spec, **kwargs):
    """The registered design ``name`` (``attnlab list models``) sized for an image task: its ``img_size``,
    ``in_chans`` and ``num_classes`` come from ``task_spec``; ``kwargs`` override them or set others."""
    from attnlab.models import create

    h, w = task_spec.img_size
    return create(name, **{"img_size": h if h == w else (h, w), "in_chans": task_spec.in_chans,
                           "num_classes": task_spec.num_classes, **kwargs})


def build_model(mixer_spec: str, run: TaskRun, task_spec):
    """The model a comparison trains for ``mixer_spec`` on a task: ``model:<name>`` builds that registered
    design (:func:`named_model`), any other spec the backbone of ``build_for_task`` with that mixer (or
    pattern) at ``run``'s size (dim, depth, heads, model kwargs). Parameters are drawn from torch's RNG."""
    from attnlab.models import build_for_task

    if mixer_spec.startswith(MODEL_PREFIX):
        return named_model(mixer_spec[len(MODEL_PREFIX):].strip(), task_spec)
    return build_for_task(task_spec, mixer=mixer_spec, dim=run.dim, depth=run.depth, num_heads=run.num_heads,
                          **run.model_kwargs)


def incompatibility(mixer_spec: str, task_spec) -> str | None:
    """Why a mixer spec cannot run on a task spec (None if it can).

    A spec is a mixer name / pattern (built with ``build_for_task``) or
    ``model:<registered model name>`` (a named design such as ``model:convit_tiny``,
    built with ``attnlab.models.create``; image tasks only).
    """
    from attnlab.mixers import get_info

    if mixer_spec.startswith(MODEL_PREFIX):
        if task_spec.input != "image":
            return f"{mixer_spec} is an image model, the task takes {task_spec.input}"
        return None
    for name in mixer_spec.split(","):
        caps = get_info(name.strip()).capabilities
        if task_spec.causal and not caps.causal:
            return f"{name} cannot be causal, the task needs causal mixing"
        if not task_spec.causal and not caps.bidirectional:
            return f"{name} is causal-only, the task is bidirectional"
        if task_spec.input != "image" and caps.grid == "required":
            return f"{name} needs a 2-D grid, the task is a 1-D sequence"
    return None


def check_suite(suite: Suite, steps_scale: float = 1.0) -> None:
    """Refuse, before anything runs, a ``steps_scale`` that is not a finite number > 0 and any unknown
    mixer (each name of a pattern), ``model:`` design or task (KeyError with close matches)."""
    from attnlab.mixers import get_info as mixer_info
    from attnlab.models import get_info as model_info
    from attnlab.tasks import available as available_tasks
    from attnlab.utils.names import lookup

    if isinstance(steps_scale, bool) or not isinstance(steps_scale, (int, float)) or not math.isfinite(steps_scale) \
            or steps_scale <= 0:
        raise ValueError(f"steps_scale: expected a finite number > 0, received {steps_scale!r}")
    for spec in suite.mixers:
        if spec.startswith(MODEL_PREFIX):
            model_info(spec[len(MODEL_PREFIX):].strip())
        else:
            for name in spec.split(","):
                mixer_info(name.strip())
    for run in suite.tasks:
        lookup(available_tasks(), run.task, "task")


def rank_records(records: list[RunRecord]) -> list[tuple[str, float]]:
    """Rank per task by quality (1 = best; ties broken by validation loss; diverged runs rank last), then
    average the ranks over tasks. Skipped and failed runs get no rank; a mixer with a failed run is left out
    of the overall ranking."""
    by_task: dict[str, list[RunRecord]] = {}
    for r in records:
        if not r.status.startswith("skipped") and not r.failed:
            by_task.setdefault(r.task, []).append(r)
    mean: dict[str, list[int]] = {}
    for task, recs in by_task.items():
        def key(r: RunRecord):
            bad = r.quality is None or not math.isfinite(r.quality) or r.diverged
            q = 0.0 if bad else (-r.quality if r.higher_is_better else r.quality)
            loss = r.val_loss if r.val_loss is not None and math.isfinite(r.val_loss) else math.inf
            return (bad, q, loss)

        for i, r in enumerate(sorted(recs, key=key), start=1):
            r.rank = i
            mean.setdefault(r.mixer, []).append(i)
    failed = {r.mixer for r in records if r.failed}
    return sorted(((m, sum(v) / len(v)) for m, v in mean.items() if m not in failed), key=lambda t: t[1])


def _train_one(mixer: str, run: TaskRun, seed: int, progress: bool, out_dir: Path,
               precision: str = "fp32") -> RunRecord:
    from attnlab.models import count_parameters
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig, train

    task = create_task(run.task, seed=seed, **run.task_kwargs)
    why = incompatibility(mixer, task.spec)
    if why:
        return RunRecord(mixer, run.task, task.metric, task.higher_is_better, None, None, 0, 0.0, 0.0, 0.0, False,
                         status=f"skipped: {why}")
    torch.manual_seed(seed)
    model = build_model(mixer, run, task.spec)
    config = TrainConfig(steps=run.steps, batch_size=run.batch_size, lr=run.lr, warmup_steps=run.warmup_steps,
                         eval_every=max(run.steps // 5, 1), eval_batches=run.eval_batches, seed=seed,
                         log_every=max(run.steps // 50, 1), precision=precision)
    # overwrite: the per-run folders belong to this comparison's output folder
    result = train(model, task, config, out_dir=out_dir / f"{run.task}--{mixer.replace(',', '+').replace(':', '-')}",
                   progress=progress, overwrite=True)
    if result.interrupted:  # Ctrl-C / SIGTERM: stop the comparison, do not record a half-trained run
        raise KeyboardInterrupt(result.interrupted)
    final = result.final_eval or {}
    quality = final.get(task.metric)
    curve = [(int(row["step"]), float(row["loss"])) for row in result.history if "loss" in row]
    return RunRecord(
        mixer=mixer, task=run.task, metric=task.metric, higher_is_better=task.higher_is_better,
        quality=None if quality is None else float(quality), val_loss=final.get("loss"),
        params=count_parameters(model), train_seconds=result.train_seconds,
        tokens_per_second=result.tokens_per_second, peak_mem_mib=result.peak_mem_mib, diverged=result.diverged,
        curve=curve,
    )


def _train_one_isolated(threads: int | None, *args) -> RunRecord:
    """:func:`_train_one` in a fresh worker process (its peak memory is then its own)."""
    with torch_threads(threads):
        return _train_one(*args)


def warm_worker() -> None:
    """A two-step training run of a tiny model into a temporary folder: what a fresh worker process pays once
    (lazy library initialisation, first checkpoint write), so that no compare run pays it in its time or peak
    memory."""
    import tempfile

    tiny = TaskRun("associative_recall", {"seq_len": 32, "num_pairs": 4}, dim=16, depth=1, num_heads=2, steps=2,
                   batch_size=4, warmup_steps=1, eval_batches=1)
    with tempfile.TemporaryDirectory() as tmp, torch_threads(1):
        _train_one("softmax", tiny, 0, False, Path(tmp))


def run_compare(
    suite: Suite, *, out_dir: str | Path, seed: int = 0, progress: bool = True, steps_scale: float = 1.0,
    threads: int | None = 1, isolate: bool = True, workers: int = 1, executor: str = "local",
    address: str | None = None, precision: str = "fp32",
) -> CompareResult:
    """Train every mixer of ``suite`` on each of its tasks; rank; write the outputs.

    ``steps_scale`` multiplies every task's step budget (e.g. 0.1 for a smoke run).
    ``threads``: torch intra-op threads while training; the suites' small models train faster on
    one thread than on two on a 2-core CPU. None keeps torch's setting.
    ``isolate``: run the trainings in worker processes (``executor``), not in this one, so that a run's
    peak-memory figure is not hidden by memory an earlier run left with the allocator.
    ``executor``: ``"local"`` (a pool of ``workers`` warm processes; 1 = one run after the other) or ``"ray"``
    (each run a Ray task with ``threads`` CPUs; ``address`` joins a cluster, else a local Ray instance runs for
    the call); see :mod:`attnlab.executors`. Results are the same whichever executor runs them.
    ``precision``: ``"fp32"`` or ``"bf16"`` (every run trains and evaluates under CPU autocast with fp32
    master weights; see :class:`attnlab.train.TrainConfig`).
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads: expected a positive int or None, received {threads!r}")
    check_precision("precision", precision)
    check_suite(suite, steps_scale)
    if not isolate:
        with torch_threads(threads):
            return _run_compare(suite, out_dir=out_dir, seed=seed, progress=progress, steps_scale=steps_scale,
                                threads=None, placement=dict(executor="inline"), precision=precision)
    placement = dict(executor=executor, workers=workers, address=address, cpus_per_job=threads or 1)
    return _run_compare(suite, out_dir=out_dir, seed=seed, progress=progress, steps_scale=steps_scale,
                        threads=threads, placement=placement, precision=precision)


def _run_compare(suite: Suite, *, out_dir: str | Path, seed: int, progress: bool, steps_scale: float,
                 threads: int | None, placement: dict, precision: str) -> CompareResult:
    """The body of :func:`run_compare`: every (task, mixer) run through :func:`attnlab.executors.run_jobs`
    (``threads`` is applied inside each worker), records in suite order."""
    from dataclasses import replace

    from attnlab.executors import run_jobs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pairs = []
    for run in suite.tasks:
        if steps_scale != 1.0:
            run = replace(run, steps=max(int(run.steps * steps_scale), 2),
                          warmup_steps=max(int(run.warmup_steps * steps_scale), 1))
        pairs += [(mixer, run) for mixer in suite.mixers]
    serial = placement["executor"] == "inline" or (placement["executor"] == "local" and placement["workers"] == 1)
    bars = progress and serial  # tqdm bars of parallel runs would interleave
    jobs = [(threads, mixer, run, seed, bars, out / "runs", precision) for mixer, run in pairs]

    def report(i: int, outcome) -> None:
        if progress:
            mixer, run = pairs[i]
            state = "done" if outcome.ok else outcome.error
            print(f"[compare] {run.task}: {mixer} ({i + 1}/{len(pairs)}: {state}, {outcome.seconds:.1f} s)",
                  flush=True)

    outcomes = run_jobs(_train_one_isolated, jobs, on_done=report, warm_up=warm_worker, **placement)
    records = []
    for (mixer, run), outcome in zip(pairs, outcomes):
        records.append(outcome.value if outcome.ok else RunRecord(
            mixer, run.task, "", True, None, None, 0, 0.0, 0.0, 0.0, False, status=f"error: {outcome.error}"))
    overall = rank_records(records)
    result = CompareResult(suite.name, records, overall, time.perf_counter() - t0, str(out), precision)
    write_outputs(result, out)
    return result


def _fmt_q(r: RunRecord) -> str:
    if r.quality is None:
        return r.status if r.status != "ok" else "n/a"
    return f"{r.quality:.4g}" + (" (diverged)" if r.diverged else "")


def table_rows(result: CompareResult) -> list[list[str]]:
    """Rows of the ranked table: task, rank, mixer, metric, quality, params, time, tokens/s, peak MiB."""
    rows = []
    for task in dict.fromkeys(r.task for r in result.records):
        recs = sorted((r for r in result.records if r.task == task), key=lambda r: (r.rank is None, r.rank or 0))
        for r in recs:
            rows.append([
                task, str(r.rank or "-"), r.mixer, r.metric + (" ↑" if r.higher_is_better else " ↓"), _fmt_q(r),
                f"{r.params:,}", f"{r.train_seconds:.1f}", f"{r.tokens_per_second:,.0f}", f"{r.peak_mem_mib:.0f}",
            ])
    return rows


HEADER = ["task", "rank", "mixer", "metric", "quality", "params", "train s", "tokens/s", "peak MiB"]
FAILED_HEADER = ["task", "mixer", "error"]


def failed_rows(result: CompareResult) -> list[list[str]]:
    """Rows of the failed runs (not ranked): task, mixer, error."""
    return [[r.task, r.mixer, r.status.removeprefix("error: ")] for r in result.failed]


def to_markdown(result: CompareResult) -> str:
    """The Markdown report: ranked table per task, overall ranking, the plot."""
    lines = [f"# attnlab compare — suite `{result.suite}`", "",
             f"Ran in {result.seconds:.0f} s at precision {result.precision}.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    lines += ["", "## Overall (mean rank over tasks, 1 = best)", "", "| mixer | mean rank |", "|---|---|"]
    lines += [f"| {m} | {v:.2f} |" for m, v in result.overall]
    if result.failed:
        lines += ["", "## Failed runs (not ranked)", "", "| " + " | ".join(FAILED_HEADER) + " |",
                  "|" + "---|" * len(FAILED_HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in failed_rows(result)]
    lines += ["", "![loss curves](loss_curves.png)", ""]
    return "\n".join(lines)


def write_outputs(result: CompareResult, out: Path) -> None:
    """Write results.json, results.csv, loss_curves.png and report.md into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "results.json").write_text(json.dumps(asdict(result), indent=2, default=float))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        cols = ["task", "mixer", "rank", "metric", "quality", "val_loss", "params", "train_seconds",
                "tokens_per_second", "peak_mem_mib", "diverged", "status"]
        w.writerow(cols)
        for r in result.records:
            w.writerow([getattr(r, c) for c in cols])
    tasks = list(dict.fromkeys(r.task for r in result.records))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in result.records:
            if r.task == task and r.curve:
                steps, losses = zip(*r.curve)
                ax.plot(steps, losses, label=f"{r.mixer} ({_fmt_q(r)})")
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a task whose runs were all skipped has no curve
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no trained run", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    (out / "report.md").write_text(to_markdown(result))
