"""The ``attnlab`` command: list, train, compare, bench, repro, report.

``attnlab compare`` with no arguments runs the built-in default suite (a few
minutes on a 2-core CPU) and writes a ranked table, JSON/CSV, a loss-curve PNG
and a Markdown report under ``runs/compare/``.

Exit status: 0 when everything asked for was done; 2 for invalid input (an unknown name,
with close matches; a bad value; an output folder that cannot be written; a run folder in
use or holding another run), one line on stderr; 1 when part of the work failed (a compare
run or a benchmark measurement raised, a training run diverged, a file could not be
written); 130 / 143 when training was stopped by SIGINT / SIGTERM (after a checkpoint; the
message gives the ``--resume`` command). Heavy modules (the registries, matplotlib, rich,
scikit-learn) are imported by the commands that need them, so ``--help`` costs little more
than ``import torch``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import textwrap
import time
from pathlib import Path

__all__ = ["main"]


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for h in header:
        t.add_column(h)
    for r in rows:
        t.add_row(*[str(c) for c in r])
    Console(width=max(120, Console().width)).print(t)


def _parse_kv(items: list[str], arg: str) -> dict:
    """Parse ``key=value`` pairs; values as JSON when they parse (numbers, bools, lists), else strings."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"{arg}: expected key=value, received {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


# ---- list ------------------------------------------------------------------


def _module_file(module: str) -> str:
    """``attnlab.mixers.deltanet`` -> ``mixers/deltanet.py``: where to open the code (paths below attnlab/)."""
    return module.removeprefix("attnlab.").replace(".", "/") + ".py"


def _fit_last_column(header: list[str], rows: list[list[str]]) -> list[list[str]]:
    """Shorten the last column at word boundaries so that every row fits on one line of the table."""
    from rich.console import Console

    width = max(120, Console().width)  # as _table
    others = [max(len(str(c)) for c in col) for col in zip(header[:-1], *[r[:-1] for r in rows])]
    room = max(width - sum(others) - 3 * len(header) - 1, 20)
    return [r[:-1] + [textwrap.shorten(str(r[-1]), room, placeholder=" …")] for r in rows]


def cmd_list(args: argparse.Namespace) -> int:
    what = args.what
    if what in ("papers", "all"):
        from attnlab.papers import PAPERS

        header = ["id", "slug", "title"]
        rows = _fit_last_column(header, [[p.id, p.slug, p.title] for p in PAPERS.values()])
        _table("papers (docs/papers.md maps each to its files)", header, rows)
    if what in ("mixers", "all"):
        import attnlab.mixers as mixers
        from attnlab.papers import paper_label
        from attnlab.utils.skip_init import skip_init

        where, caps = [], []
        for info in mixers.available():
            c = info.capabilities
            try:
                with skip_init():  # only counted: no need to initialise
                    m = mixers.create(info.name, 64)
                params = f"{sum(p.numel() for p in m.parameters()):,}"
            except (TypeError, ValueError) as e:  # e.g. needs a kwarg that has no default at dim 64
                params = f"n/a ({e})"
            modes = "/".join(x for x, ok in (("causal", c.causal), ("bidir", c.bidirectional)) if ok)
            where.append([info.name, paper_label(info.paper), _module_file(info.module), info.summary])
            caps.append([info.name, modes, c.grid, "yes" if c.key_padding_mask else "no",
                         "yes" if c.recurrent else "no", ", ".join(c.context) or "-", c.complexity, params])
        header = ["name", "paper", "file (in attnlab/)", "summary"]
        _table("mixers: paper and code", header, _fit_last_column(header, where))
        _table("mixers: capabilities (params at dim=64)", ["name", "modes", "grid", "pad mask", "decode", "context",
                                                           "cost", "params"], caps)
    if what in ("models", "all"):
        import attnlab.models as models
        from attnlab.papers import paper_label
        from attnlab.utils.skip_init import skip_init

        rows = []
        for info in models.available_info():
            try:
                with skip_init():  # only counted: initialising the default configs took seconds
                    params = f"{models.count_parameters(models.create(info.name)):,}"
            except Exception as e:  # noqa: BLE001 - listing must not die on one model
                params = f"n/a ({type(e).__name__})"
            rows.append([info.name, paper_label(info.paper), _module_file(info.module), params, info.summary])
        header = ["name", "paper", "file (in attnlab/)", "params", "summary"]
        _table("models (params of the default config)", header, _fit_last_column(header, rows))
    if what in ("tasks", "all"):
        import attnlab.tasks as tasks

        rows = []
        for name, cls in tasks.available().items():
            rows.append([name, cls.metric + (" ↑" if cls.higher_is_better else " ↓"), _doc_line(cls)])
        _table("tasks", ["name", "metric", "summary"], rows)
    if what in ("repros", "all"):
        import importlib

        from attnlab.repro import REPROS

        rows = []
        for slug, mod in sorted(REPROS.items()):
            m = importlib.import_module(mod)
            rows.append([slug, m.PAPER, textwrap.shorten(m.CLAIM, 160, placeholder=" …")])
        _table("reproductions (attnlab repro <slug>)", ["slug", "paper", "claim"], rows)
    if what in ("bench", "all"):
        from attnlab.bench.registry import available_cases

        cases = available_cases().values()
        rows = [[c.name, c.reference, ",".join(map(str, c.sizes)), textwrap.shorten(c.description, 110, placeholder=" …")]
                for c in cases]
        _table("benchmark cases (attnlab bench <case>)", ["case", "baseline", "default N", "description"], rows)
        rows = [[c.name, "\n".join(c.ops), "\n".join(t.removeprefix("tests/") for t in c.tests)] for c in cases]
        _table("what each case times, and the tests that prove it correct", ["case", "op", "test (under tests/)"],
               rows)
    if what in ("suites", "all"):
        from attnlab.suites import SUITES

        rows = [[s.name, ", ".join(s.mixers), ", ".join(t.task for t in s.tasks), s.description] for s in SUITES.values()]
        _table("compare suites (attnlab compare --suite <name>)", ["suite", "mixers", "tasks", "description"], rows)
    return 0


def _doc_line(obj) -> str:
    import inspect

    doc = inspect.getdoc(obj) or ""
    return textwrap.shorten(doc.splitlines()[0], 90, placeholder=" …") if doc else ""


# ---- train -----------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from attnlab.distributed.launch import RankLost, torchrun_session

    out = Path(args.out or f"runs/train/{args.task}-{args.mixer.replace(',', '+')}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        with torchrun_session(timeout=args.dist_timeout, out_dir=out) as session:
            try:
                return _train(args, out, session)
            except (KeyError, ValueError, TypeError):
                if session.is_writer:
                    raise
                raise SystemExit(2) from None  # the same bad input on every rank: rank 0 says it once
    except RankLost as e:  # a dead or stuck peer under torchrun: one clear line, not a backend traceback
        print(f"attnlab train: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def _train(args: argparse.Namespace, out: Path, session) -> int:
    """``attnlab train`` in this process: one process, or one rank of a torchrun launch (``session``); the exit
    status."""
    import torch

    from attnlab.models import build_for_task, count_parameters
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig, train
    from attnlab.utils.threads import torch_threads

    if args.resume and args.overwrite:
        raise ValueError("--overwrite: expected it without --resume (continue the run, or replace it, not both), "
                         "received both")
    threads = _check_threads(args.threads)
    task = create_task(args.task, seed=args.seed, **_parse_kv(args.task_arg, "--task-arg"))
    torch.manual_seed(args.seed)
    mixer_kwargs = _parse_kv(args.mixer_arg, "--mixer-arg")
    model_kwargs = _parse_kv(args.model_arg, "--model-arg")
    if args.sequence_parallel:
        if task.spec.input == "image" or args.model:
            raise ValueError(f"--sequence-parallel: expected a sequence task trained with --mixer (a SequenceModel), "
                             f"received task {task.name!r}{' and --model ' + args.model if args.model else ''}")
        model_kwargs["sequence_parallel"] = args.sequence_parallel
    if args.model:
        model = _named_model_for_task(args.model, task.spec, model_kwargs)
        what = f"model {args.model}"
    else:
        model = build_for_task(task.spec, mixer=args.mixer, dim=args.dim, depth=args.depth, num_heads=args.heads,
                               mixer_kwargs=mixer_kwargs or None, **model_kwargs)
        what = f"mixer {args.mixer}"
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup, weight_decay=args.wd,
        wd_mode=args.wd_mode, grad_clip=args.clip, z_loss=args.z_loss, eval_every=args.eval_every,
        seed=args.seed, ckpt_every=args.ckpt_every, precision=args.precision,
    )
    parallel = _parallel_strategy(model, task, config, args, session)
    # the folder last: every other argument is checked before anything is created
    out = _writable_dir("--out", out)
    if session.is_writer:
        where = f"; {session.world_size} ranks ({_describe_parallel(model)})" if session.distributed else ""
        print(f"model: {count_parameters(model):,} parameters; task {task.name}; {what}{where}")
    with torch_threads(threads):
        result = train(model, task, config, out_dir=out, resume=args.resume, overwrite=args.overwrite,
                       progress=not args.no_progress and session.is_writer, parallel=parallel)
    if session.is_writer:
        rate = ({"images_per_second": round(result.examples_per_second, 1)} if task.spec.input == "image"
                else {"tokens_per_second": round(result.tokens_per_second)})
        summary = {"final_eval": result.final_eval, "steps": result.steps_done, "diverged": result.diverged,
                   "interrupted": result.interrupted, "train_seconds": round(result.train_seconds, 2), **rate,
                   "out_dir": str(out)}
        if session.distributed:
            summary["world_size"] = session.world_size
            summary["tokens_per_second_per_process"] = round(result.tokens_per_second / session.world_size)
        print(json.dumps(summary, indent=2))
    if result.interrupted:
        if session.is_writer:
            launcher = (("torchrun", "--nproc-per-node", str(session.world_size), "-m", "attnlab")
                        if session.distributed else ("attnlab",))
            print(f"attnlab train: stopped by {result.interrupted} after step {result.steps_done} of {config.steps} "
                  f"(checkpoint saved in {out}); continue with:\n  {_resume_command(args.argv, out, launcher)}",
                  file=sys.stderr)
        return 130 if result.interrupted == "SIGINT" else 143
    if result.diverged:
        if session.is_writer:
            print(f"attnlab train: the run diverged at step {result.steps_done + 1} (non-finite loss or gradient "
                  f"norm); try a lower --lr or --clip", file=sys.stderr)
        return 1
    return 0


def _parallel_strategy(model, task, config, args, session):
    """None in one process; under torchrun the data- or sequence-parallel strategy (checked before any compute)."""
    if not session.distributed:
        return None
    from attnlab.distributed.launch import make_strategy

    return make_strategy(model, batch_size=config.batch_size, seq_len=task.spec.seq_len, seed=config.seed,
                         ulysses_size=args.ulysses_size)


def _describe_parallel(model) -> str:
    kind = getattr(model, "sequence_parallel", None)
    return f"sequence parallel: {kind}" if kind else "data parallel"


def _resume_command(argv: list[str], out: Path, launcher: tuple[str, ...] = ("attnlab",)) -> str:
    """The command line ``argv`` (``train ...``) with ``--out <out> --resume`` (and without ``--overwrite``), run
    by ``launcher`` (``torchrun --nproc-per-node W -m attnlab`` for a torchrun launch)."""
    rest = []
    i = 0
    while i < len(argv):  # drop --out (re-added with the folder actually used), --overwrite, --resume
        a = argv[i]
        if a in ("--overwrite", "--resume"):
            i += 1
        elif a == "--out":
            i += 2
        elif a.startswith("--out="):
            i += 1
        else:
            rest.append(a)
            i += 1
    return shlex.join([*launcher, *rest, "--out", str(out), "--resume"])


def _check_threads(threads: int) -> int | None:
    """``--threads``: a positive int, or 0 for torch's default (None); ValueError otherwise."""
    if threads < 0:
        raise ValueError(f"--threads: expected a positive int, or 0 for torch's default, received {threads}")
    return threads or None


def _writable_dir(arg: str, path: str | Path) -> Path:
    """``path`` as a folder that exists (created) and can be written; ValueError naming ``arg`` and the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{arg}: expected a folder, received {path}, which is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{arg}: expected a folder that can be created, received {path} ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{arg}: expected a writable folder, received {path} (not writable: permissions or a "
                         f"read-only file system)")
    return path


def _named_model_for_task(name: str, spec, kwargs: dict):
    """A registered design (``attnlab list models``) sized for an image or video task's spec."""
    from attnlab.compare import named_model
    from attnlab.models import create

    if spec.input == "video":  # the video designs take frames of img_size with in_chans channels
        return create(name, **{"img_size": spec.img_size[0], "in_chans": spec.in_chans, **kwargs})
    if spec.input != "image":
        raise ValueError(f"--model: expected an image task for a named design, received task input {spec.input!r} "
                         f"(use --mixer for sequence tasks)")
    return named_model(name, spec, **kwargs)


# ---- compare ---------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from attnlab.compare import FAILED_HEADER, HEADER, check_suite, failed_rows, run_compare, table_rows
    from attnlab.suites import TaskRun, get_suite

    suite = get_suite(args.suite)
    if args.mixers:
        suite = replace(suite, mixers=tuple(m.strip() for m in args.mixers.split(";") if m.strip()))
    if args.tasks:
        by_name = {t.task: t for t in suite.tasks}
        suite = replace(suite, tasks=tuple(by_name.get(t.strip(), TaskRun(t.strip())) for t in args.tasks.split(",")))
    check_suite(suite, args.steps_scale)  # before the output folder is made
    threads = _check_threads(args.threads)
    out = _writable_dir("--out", args.out or f"runs/compare/{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    result = run_compare(suite, out_dir=out, seed=args.seed, progress=not args.no_progress,
                         steps_scale=args.steps_scale, threads=threads, precision=args.precision,
                         executor=args.executor, workers=args.workers, address=args.address)
    _table(f"attnlab compare — suite {suite.name}, {args.precision} ({result.seconds:.0f} s)", HEADER,
           table_rows(result))
    _table("overall ranking (mean rank over tasks)", ["#", "mixer", "mean rank"],
           [[i, m, f"{v:.2f}"] for i, (m, v) in enumerate(result.overall, 1)])
    print(f"wrote {out}/report.md, results.json, results.csv, loss_curves.png")
    if result.failed:
        _table("failed runs (not ranked)", FAILED_HEADER, failed_rows(result))
        print(f"attnlab compare: {len(result.failed)} of {len(result.records)} runs failed", file=sys.stderr)
        return 1
    return 0


# ---- bench -----------------------------------------------------------------


def _parse_sizes(text: str, case) -> list[int]:
    """``--sizes`` as ints the case accepts; ValueError naming --sizes otherwise."""
    from attnlab.bench.registry import validate_sizes
    from attnlab.utils.checks import fail

    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        fail("--sizes", "comma-separated positive integers", repr(text))
    return validate_sizes(case, sizes, arg="--sizes")


def cmd_bench(args: argparse.Namespace) -> int:
    from attnlab.bench.registry import get_case
    from attnlab.bench.report import rows_to_markdown, write_outputs
    from attnlab.bench.runner import run_bench

    from attnlab.utils.checks import check_positive_int

    case = get_case(args.case)
    sizes = _parse_sizes(args.sizes, case) if args.sizes is not None else None
    check_positive_int("--repeats", args.repeats)
    if args.threads is not None:
        check_positive_int("--threads", args.threads)
    params = _parse_kv(args.param, "--param")
    case.setup_params(params, arg="--param")  # unknown keys refused before the folder is made
    out = _writable_dir("--out", args.out or f"runs/bench/{args.case}-{args.mode}-{args.dtype.replace(',', '+')}")
    rows = run_bench(args.case, sizes=sizes, mode=args.mode, dtype=args.dtype, repeats=args.repeats,
                     impls=args.impls.split(",") if args.impls else None, params=params,
                     threads=args.threads, progress=not args.no_progress)
    paths = write_outputs(rows, out, args.case, case.reference)
    print(rows_to_markdown(rows, case.reference))
    print(f"wrote {paths['md']}, {paths['json']}, {paths['png']}")
    failed = [r for r in rows if r.status.startswith("error")]
    if failed:
        print(f"attnlab bench: {len(failed)} of {len(rows)} measurements failed (first: N={failed[0].n} "
              f"{failed[0].impl}: {failed[0].status})", file=sys.stderr)
        return 1
    return 0


# ---- repro -----------------------------------------------------------------


def cmd_repro(args: argparse.Namespace) -> int:
    from attnlab.repro import run_repro
    from attnlab.repro.harness.fanout import TrialFailed
    from attnlab.repro.harness.runner import format_value, load_module

    if args.slug == "all":
        args.all = True
    _check_repro_placement(args)
    if args.all:
        return _repro_all(args)
    if args.slug in (None, "list"):
        args.what = "repros"
        cmd_list(args)
        return 0
    load_module(args.slug)  # an unknown slug fails here, before anything runs
    if args.out:
        _writable_dir("--out", args.out)
    out = Path(args.out) if args.out else None
    try:
        r = run_repro(args.slug, quick=args.quick, out_dir=out, seed=args.seed, progress=not args.no_progress,
                      threads=args.threads, workers=args.workers, executor=args.executor, address=args.address,
                      timeout=args.timeout)
    except TrialFailed as e:  # a trial raised in a worker, its worker died, or it passed --timeout
        print(f"attnlab repro: {args.slug}: {e}", file=sys.stderr)
        return 1
    rows = [[k, _short(format_value(v))] for k, v in r.figures.items()]
    rows += [[k, _short(format_value(v))] for k, v in r.measured.items() if k not in r.figures]
    _table(f"{args.slug} ({r.paper}) — {r.verdict_line}", ["measured (the rule reads the first rows)", "value"], rows)
    print(f"claim: {r.claim}\nverdict: {r.verdict_line}. {r.summary}\n({r.seconds:.1f} s wall, "
          f"{r.cpu_seconds:.1f} s CPU, {r.threads} thread(s); report: "
          f"{out or Path('runs/repro') / (args.slug + ('-quick' if args.quick else ''))}/report.md)\n")
    return 0


def _check_repro_placement(args: argparse.Namespace) -> None:
    """``--workers`` / ``--executor`` / ``--address`` / ``--timeout`` of ``attnlab repro``: ValueError naming the flag.

    With a slug they place its trials (``--timeout``: the longest a batch of trials waits for its next one, so it
    needs workers); with ``--all``, ``--workers`` counts reproductions run at a time (each one's trials serial)
    and ``--timeout`` stops a reproduction, so Ray is refused there."""
    if isinstance(args.workers, bool) or not isinstance(args.workers, int) or args.workers < 1:
        raise ValueError(f"--workers: expected an int >= 1, received {args.workers!r}")
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout: expected seconds > 0, received {args.timeout!r}")
    if args.address is not None and args.executor != "ray":
        raise ValueError(f"--address: expected it only with --executor ray (a Ray cluster's head node), received "
                         f"{args.address!r} with --executor {args.executor}")
    if args.all and args.executor == "ray":
        raise ValueError("--executor: expected local with --all (--workers N runs N reproductions at a time, each "
                         "one's trials one after the other), received ray; fan one reproduction's trials out with "
                         "attnlab repro <slug> --executor ray")
    if not args.all and args.timeout is not None and args.executor == "local" and args.workers == 1:
        raise ValueError("--timeout: with one reproduction it bounds the wait for each trial in workers: expected "
                         "--workers > 1 or --executor ray with it, received --workers 1")


def _repro_all(args: argparse.Namespace) -> int:
    """``attnlab repro --all``: every reproduction in worker processes, then the verdict book; exit 1 on failures."""
    from attnlab.repro.book import run_all

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    camp = run_all(only, quick=args.quick, out_dir=args.out, workers=args.workers, rerun=args.rerun, seed=args.seed,
                   progress=not args.no_progress, timeout=args.timeout)
    done = sum(st["status"] == "done" for st in camp.status.values())
    kept = sum(st["status"] == "kept" for st in camp.status.values())
    print(f"attnlab repro --all: {done} ran, {kept} kept from an earlier run, {len(camp.failed)} failed; "
          f"verdict book: {camp.book}")
    if camp.failed:
        print("failed: " + ", ".join(f"{s} (log: {camp.status[s]['log']})" for s in camp.failed), file=sys.stderr)
        return 1
    return 0


# ---- report ----------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from attnlab.repro.book import write_book

    try:
        path = write_book(args.runs_dir, args.out)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    print(f"verdict book: {path}")
    return 0


def _short(s: str) -> str:
    return s if len(s) < 200 else s[:197] + "..."


# ---- analyze ---------------------------------------------------------------


def cmd_analyze(args: argparse.Namespace) -> None:
    """``attnlab analyze drop``: P17 module importance on a text, then perplexity as modules are dropped."""
    import torch

    from attnlab.analysis.drop_study import drop_curve, plot_drop_study
    from attnlab.analysis.lm_loading import load_lm, text_batches
    from attnlab.analysis.redundancy import redundancy_scores
    from attnlab.utils.checks import fail
    from attnlab.utils.threads import torch_threads

    data = Path(args.data)
    if not data.is_file():
        fail("--data", "an existing text file", repr(args.data))
    try:
        lm = load_lm(args.model, arg="--model")
    except ImportError as e:  # transformers missing: one line with the install command
        raise ValueError(f"--model: {e}") from None
    seq_len = min(args.seq_len, lm.max_len or args.seq_len)
    batches = text_batches(lm.encode(data.read_text(encoding="utf-8", errors="replace")), seq_len, args.batch_size,
                           arg="--data")
    if len(batches) < 2:
        fail("--data", f"text for at least 2 batches of {args.batch_size} x {seq_len} tokens (calibration, evaluation)",
             f"{sum(b.shape[0] for b in batches)} window(s)")
    half = (len(batches) + 1) // 2
    calib, evals = batches[:half][: args.calib_batches], batches[half:][: args.eval_batches]
    out = Path(args.out or f"runs/analyze/drop-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(args.threads or None), torch.inference_mode():
        scores = redundancy_scores(lm.model, calib, consecutive=args.target == "consecutive")
        limit = 2 * scores.depth if args.target == "joint" else scores.depth
        n = args.n if args.n is not None else max(scores.depth // 4, 1)
        if not 0 <= n <= limit:
            fail("--n", f"0 <= n <= {limit} for --target {args.target} on {scores.depth} blocks", n)
        curve = drop_curve(lm.model, scores, n, args.target, evals)
    print(f"{args.model}: {scores.family} blocks; text as {lm.encoding}; {scores.tokens} calibration tokens, "
          f"{sum(b.numel() for b in evals)} evaluation tokens")
    _table("importance, 1 - cos (P17)", ["block", "name", "attention", "MLP", "block"],
           [[i, name, f"{a:.4g}", f"{m:.4g}", f"{b:.4g}"] for i, name, a, m, b in scores.rows()])
    _table(f"perplexity after drops ({args.target})", ["dropped", "plan (least important first)", "perplexity"],
           [[s.k, s.plan.describe(), f"{s.perplexity:.4f}"] for s in curve])
    plot = plot_drop_study(scores, curve, args.target, out / "drop.png")
    (out / "drop.json").write_text(json.dumps({
        "model": args.model, "data": str(data), "target": args.target, "encoding": lm.encoding,
        "calibration_tokens": scores.tokens, "blocks": [dict(zip(("index", "name", "attn", "mlp", "block"), r))
                                                        for r in scores.rows()],
        "curve": [{"k": s.k, "attn": list(s.plan.attn), "mlp": list(s.plan.mlp), "perplexity": s.perplexity}
                  for s in curve]}, indent=2, allow_nan=True))
    print(f"wrote {plot} and {out / 'drop.json'}")


# ---- parser ----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for ``attnlab``."""
    p = argparse.ArgumentParser(prog="attnlab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list papers, mixers, models, tasks, reproductions, benchmark cases, suites")
    s.add_argument("what", nargs="?", default="all",
                   choices=["all", "papers", "mixers", "models", "tasks", "repros", "bench", "suites"])
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("train", help="train one model on one task (checkpoints, resume)")
    s.add_argument("--task", default="associative_recall")
    s.add_argument("--task-arg", action="append", metavar="KEY=VALUE", help="task keyword, repeatable")
    s.add_argument("--mixer", default="softmax", help="mixer name or comma pattern, e.g. deltanet,softmax")
    s.add_argument("--model", help="a named design instead of the backbone (attnlab list models), image tasks only")
    s.add_argument("--mixer-arg", action="append", metavar="KEY=VALUE", help="mixer keyword, repeatable")
    s.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="backbone / design keyword, repeatable")
    s.add_argument("--dim", type=int, default=64)
    s.add_argument("--depth", type=int, default=2)
    s.add_argument("--heads", type=int, default=4)
    s.add_argument("--steps", type=int, default=500)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--lr", type=float, default=3e-3)
    s.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: min(50, --steps))")
    s.add_argument("--wd", type=float, default=0.0)
    s.add_argument("--wd-mode", default="coupled", choices=["coupled", "independent"])
    s.add_argument("--clip", type=float, default=1.0)
    s.add_argument("--z-loss", type=float, default=0.0)
    s.add_argument("--eval-every", type=int, default=100)
    s.add_argument("--ckpt-every", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="output folder (checkpoints, metrics); default runs/train/<task>-<mixer>-<time>")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--overwrite", action="store_true",
                   help="start again in an --out that holds an earlier run (deletes its checkpoints and metrics)")
    s.add_argument("--threads", type=int, default=1,
                   help="torch threads while training (default 1: faster for these small models; 0 = torch's default)")
    s.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: forward and loss under CPU autocast, fp32 master weights (README: Precision)")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--sequence-parallel", choices=["ulysses", "ring", "hybrid"],
                   help="under torchrun: shard every sequence across the ranks, attention by this method "
                        "(softmax mixers); default: data parallel")
    s.add_argument("--ulysses-size", type=int, help="hybrid: ranks per Ulysses group (default: as many as heads allow)")
    s.add_argument("--dist-timeout", type=float, default=120.0,
                   help="under torchrun: seconds a collective waits for the other ranks before the run stops")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("compare", help="train mixers on tasks and rank them (default: built-in suite, ~5 min)")
    s.add_argument("--suite", default="default")
    s.add_argument("--mixers", help="override the suite's mixers: ';'-separated specs (a spec may be a pattern a,b)")
    s.add_argument("--tasks", help="override the suite's tasks: comma-separated task names")
    s.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step budget (e.g. 0.2 for a quick look)")
    s.add_argument("--threads", type=int, default=1,
                   help="torch threads while training (default 1: faster for these small models; 0 = torch's default)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="output folder; default runs/compare/<suite>-<time>")
    s.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: every run trains and evaluates under CPU autocast, fp32 master weights")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: a pool of --workers warm processes (default); ray: one Ray task per run "
                        '(pip install -e ".[ray]" -c constraints.txt)')
    s.add_argument("--workers", type=int, default=1,
                   help="local: worker processes running runs side by side (default 1: one after the other); "
                        "ray without --address: CPUs of the local Ray instance (default: all)")
    s.add_argument("--address", help="ray: join this cluster (head node host:port, ray://host:port or auto) "
                                      "instead of starting a local Ray instance")
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("bench", help="time and peak memory against sequence length")
    s.add_argument("case", nargs="?", default="attention", help="benchmark case (attnlab list bench)")
    s.add_argument("--sizes", help="comma-separated N values (default: the case's)")
    s.add_argument("--mode", default="fwdbwd", choices=["fwd", "fwdbwd"])
    s.add_argument("--dtype", default="float32",
                   help="float32, bfloat16, float64 or autocast (fp32 weights under CPU autocast to bf16); several "
                        "comma-separated run side by side in one process, e.g. float32,bfloat16")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--impls", help="comma-separated implementations (default: all the case offers)")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="case parameter, repeatable")
    s.add_argument("--threads", type=int, help="torch threads in the worker (default: the case's, else torch's)")
    s.add_argument("--out", help="output folder; default runs/bench/<case>-<mode>-<dtype>")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("repro", help="reproduce a paper's key finding at CPU scale (list: attnlab repro)")
    s.add_argument("slug", nargs="?", help="paper slug (see attnlab repro list), or 'all' (as --all)")
    s.add_argument("--all", action="store_true",
                   help="run every reproduction in worker processes (resumable) and write the verdict book")
    s.add_argument("--quick", action="store_true", help="smoke-size run (under a minute): a smoke test, not a finding")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1,
                   help="torch threads for the run (default 1: faster for these small models; 0 = torch's default)")
    s.add_argument("--out", help="output folder; default runs/repro/<slug>, with --all runs/repro-all[-quick]")
    s.add_argument("--workers", type=int, default=1,
                   help="with a slug: worker processes running its protocol's trials side by side (same figures as "
                        "one after the other; ray without --address: CPUs of the local Ray instance); with --all: "
                        "reproductions run at a time (one thread each, each one's trials serial)")
    s.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="with a slug: local (a pool of --workers processes, default) or ray (each trial a Ray task "
                        'with --threads CPUs; pip install -e ".[ray]" -c constraints.txt)')
    s.add_argument("--address", help="--executor ray: join this cluster (head node host:port, ray://host:port or "
                                      "auto) instead of starting a local Ray instance")
    s.add_argument("--rerun", action="store_true", help="with --all: run again those already finished in --out")
    s.add_argument("--only", help="with --all: a comma-separated subset of slugs")
    s.add_argument("--timeout", type=float,
                   help="with --all: seconds after which a reproduction is stopped; with a slug and workers: the "
                        "longest a batch of trials waits for its next trial before failing")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(fn=cmd_repro)

    s = sub.add_parser("report", help="write the verdict book (one HTML page) of a folder of reproduction runs")
    s.add_argument("runs_dir", help="a folder with one sub-folder per reproduction, e.g. runs/repro-all")
    s.add_argument("--out", help="the HTML file; default <runs_dir>/index.html")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("analyze", help="analysis tools on a trained model (drop: P17 module redundancy)")
    s.add_argument("tool", choices=["drop"], help="drop: importance of every attention/MLP/block, perplexity after drops")
    s.add_argument("--model", required=True, help="attnlab run/checkpoint/model folder, Hugging Face folder or cached name")
    s.add_argument("--data", required=True, help="text file: first half calibrates the scores, second half evaluates")
    s.add_argument("--target", default="attn", choices=["attn", "mlp", "block", "joint", "consecutive"])
    s.add_argument("--n", type=int, help="modules to drop (default: a quarter of the blocks)")
    s.add_argument("--seq-len", type=int, default=256)
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--calib-batches", type=int, default=8)
    s.add_argument("--eval-batches", type=int, default=8)
    s.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    s.add_argument("--out", help="output folder; default runs/analyze/drop-<time>")
    s.set_defaults(fn=cmd_analyze)
    return p


class _NeverRaised(Exception):
    pass


def _locked_error_type() -> type[Exception]:
    """RunLockedError if attnlab.train is loaded (only a command that trains can raise it), without importing the
    training package into commands that do not need it."""
    mod = sys.modules.get("attnlab.train.run_lock")
    return mod.RunLockedError if mod is not None else _NeverRaised


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``attnlab`` command; exits with the status described in the module docstring."""
    import warnings

    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    shown = warnings.showwarning
    # warnings (a skipped damaged checkpoint, a stale lock taken over) as one line each, not file:line + source
    warnings.showwarning = lambda message, category, *rest, **kw: print(
        f"attnlab {args.command}: warning: {message}", file=sys.stderr)
    try:
        code = args.fn(args)
    except (KeyError, ValueError, TypeError, ImportError, _locked_error_type()) as e:  # evaluated only on a raise
        # Bad names/arguments, a missing optional extra (ray), a run folder in use: one clear line, not a traceback.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"attnlab {args.command}: {msg}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:  # a file system problem met while working: one line naming the path
        where = f": {e.filename}" if e.filename else ""
        print(f"attnlab {args.command}: {e.strerror or e}{where}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # a second Ctrl-C: files on disk are consistent (atomic writes), nothing more to do
        print(f"attnlab {args.command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        warnings.showwarning = shown
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
