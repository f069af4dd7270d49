"""The ``attnlab`` command: list, train, compare, bench, repro.

``attnlab compare`` with no arguments runs the built-in default suite (a few
minutes on a 2-core CPU) and writes a ranked table, JSON/CSV, a loss-curve PNG
and a Markdown report under ``runs/compare/``.
"""
from __future__ import annotations

import argparse
import json
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


def cmd_list(args: argparse.Namespace) -> None:
    what = args.what
    if what in ("papers", "all"):
        from attnlab.papers import PAPERS

        header = ["id", "slug", "title"]
        rows = _fit_last_column(header, [[p.id, p.slug, p.title] for p in PAPERS.values()])
        _table("papers (docs/papers.md maps each to its files)", header, rows)
    if what in ("mixers", "all"):
        import attnlab.mixers as mixers
        from attnlab.papers import paper_label

        where, caps = [], []
        for info in mixers.available():
            c = info.capabilities
            try:
                m = mixers.create(info.name, 64)
                params = f"{sum(p.numel() for p in m.parameters()):,}"
            except (TypeError, ValueError) as e:  # e.g. needs a kwarg that has no default at dim 64
                params = f"n/a ({e})"
            modes = "/".join(x for x, ok in (("causal", c.causal), ("bidir", c.bidirectional)) if ok)
            where.append([info.name, paper_label(info.paper), _module_file(info.module), info.summary])
            caps.append([info.name, modes, c.grid, "yes" if c.key_padding_mask else "no",
                         "yes" if c.recurrent else "no", c.complexity, params])
        header = ["name", "paper", "file (in attnlab/)", "summary"]
        _table("mixers: paper and code", header, _fit_last_column(header, where))
        _table("mixers: capabilities (params at dim=64)", ["name", "modes", "grid", "pad mask", "decode", "cost",
                                                           "params"], caps)
    if what in ("models", "all"):
        import attnlab.models as models
        from attnlab.papers import paper_label

        rows = []
        for info in models.available_info():
            try:
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
        _table("what each case times, and the tests that prove it correct", ["case", "op", "test (under tests/)"], rows)
    if what in ("suites", "all"):
        from attnlab.suites import SUITES

        rows = [[s.name, ", ".join(s.mixers), ", ".join(t.task for t in s.tasks), s.description] for s in SUITES.values()]
        _table("compare suites (attnlab compare --suite <name>)", ["suite", "mixers", "tasks", "description"], rows)


def _doc_line(obj) -> str:
    import inspect

    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0][:90] if doc else ""


# ---- train -----------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> None:
    from attnlab.distributed.launch import RankLost, torchrun_session

    out = Path(args.out or f"runs/train/{args.task}-{args.mixer.replace(',', '+')}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        with torchrun_session(timeout=args.dist_timeout, out_dir=out) as session:
            try:
                _train(args, out, session)
            except (KeyError, ValueError, TypeError):
                if session.is_writer:
                    raise
                raise SystemExit(2) from None  # the same bad input on every rank: rank 0 says it once
    except RankLost as e:  # a dead or stuck peer under torchrun: one clear line, not a backend traceback
        print(f"attnlab train: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def _train(args: argparse.Namespace, out: Path, session) -> None:
    """``attnlab train`` in this process: one process, or one rank of a torchrun launch (``session``)."""
    import torch

    from attnlab.models import build_for_task, count_parameters
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig, train

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
        seed=args.seed, ckpt_every=args.ckpt_every,
    )
    parallel = _parallel_strategy(model, task, config, args, session)
    if session.is_writer:
        where = f"; {session.world_size} ranks ({_describe_parallel(model)})" if session.distributed else ""
        print(f"model: {count_parameters(model):,} parameters; task {task.name}; {what}{where}")
    result = train(model, task, config, out_dir=out, resume=args.resume,
                   progress=not args.no_progress and session.is_writer, parallel=parallel)
    if not session.is_writer:
        return
    final = result.final_eval or {}
    summary = {"final_eval": final, "steps": result.steps_done, "diverged": result.diverged,
               "train_seconds": round(result.train_seconds, 2),
               "tokens_per_second": round(result.tokens_per_second), "out_dir": str(out)}
    if session.distributed:
        summary["world_size"] = session.world_size
        summary["tokens_per_second_per_process"] = round(result.tokens_per_second / session.world_size)
    print(json.dumps(summary, indent=2))


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


def _named_model_for_task(name: str, spec, kwargs: dict):
    """A registered design (``attnlab list models``) sized for an image task's spec."""
    from attnlab.compare import named_model

    if spec.input != "image":
        raise ValueError(f"--model: expected an image task for a named design, received task input {spec.input!r} "
                         f"(use --mixer for sequence tasks)")
    return named_model(name, spec, **kwargs)


# ---- compare ---------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from attnlab.compare import HEADER, run_compare, table_rows
    from attnlab.suites import TaskRun, get_suite

    suite = get_suite(args.suite)
    if args.mixers:
        suite = replace(suite, mixers=tuple(m.strip() for m in args.mixers.split(";") if m.strip()))
    if args.tasks:
        by_name = {t.task: t for t in suite.tasks}
        suite = replace(suite, tasks=tuple(by_name.get(t, TaskRun(t)) for t in args.tasks.split(",")))
    out = Path(args.out or f"runs/compare/{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    result = run_compare(suite, out_dir=out, seed=args.seed, progress=not args.no_progress,
                         steps_scale=args.steps_scale, threads=args.threads or None, executor=args.executor,
                         workers=args.workers, address=args.address)
    _table(f"attnlab compare — suite {suite.name} ({result.seconds:.0f} s)", HEADER, table_rows(result))
    _table("overall ranking (mean rank over tasks)", ["#", "mixer", "mean rank"],
           [[i, m, f"{v:.2f}"] for i, (m, v) in enumerate(result.overall, 1)])
    print(f"wrote {out}/report.md, results.json, results.csv, loss_curves.png")


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


def cmd_bench(args: argparse.Namespace) -> None:
    from attnlab.bench.registry import get_case
    from attnlab.bench.report import rows_to_markdown, write_outputs
    from attnlab.bench.runner import run_bench

    case = get_case(args.case)
    sizes = _parse_sizes(args.sizes, case) if args.sizes is not None else None
    rows = run_bench(args.case, sizes=sizes, mode=args.mode, dtype=args.dtype, repeats=args.repeats,
                     impls=args.impls.split(",") if args.impls else None, params=_parse_kv(args.param, "--param"),
                     threads=args.threads, progress=not args.no_progress)
    out = Path(args.out or f"runs/bench/{args.case}-{args.mode}-{args.dtype}")
    paths = write_outputs(rows, out, args.case, case.reference)
    print(rows_to_markdown(rows, case.reference))
    print(f"wrote {paths['md']}, {paths['json']}, {paths['png']}")
    failed = [r for r in rows if r.status.startswith("error")]
    if failed:
        print(f"attnlab bench: {len(failed)} of {len(rows)} measurements failed (first: N={failed[0].n} "
              f"{failed[0].impl}: {failed[0].status})", file=sys.stderr)
        raise SystemExit(1)


# ---- repro -----------------------------------------------------------------


def cmd_repro(args: argparse.Namespace) -> None:
    from attnlab.repro import REPROS, run_repro
    from attnlab.repro.harness.runner import format_value

    if args.slug in (None, "list"):
        args.what = "repros"
        cmd_list(args)
        return
    slugs = sorted(REPROS) if args.slug == "all" else [args.slug]
    for slug in slugs:
        out = Path(args.out) / slug if (args.out and len(slugs) > 1) else (Path(args.out) if args.out else None)
        r = run_repro(slug, quick=args.quick, out_dir=out, seed=args.seed, progress=not args.no_progress,
                      threads=args.threads)
        rows = [[k, _short(format_value(v))] for k, v in r.figures.items()]
        rows += [[k, _short(format_value(v))] for k, v in r.measured.items() if k not in r.figures]
        _table(f"{slug} ({r.paper}) — {r.verdict_line}", ["measured (the rule reads the first rows)", "value"], rows)
        print(f"claim: {r.claim}\nverdict: {r.verdict_line}. {r.summary}\n({r.seconds:.1f} s wall, "
              f"{r.cpu_seconds:.1f} s CPU, {r.threads} thread(s); report: "
              f"{out or Path('runs/repro') / (slug + ('-quick' if args.quick else ''))}/report.md)\n")


def _short(s: str) -> str:
    return s if len(s) < 200 else s[:197] + "..."


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
    s.add_argument("--warmup", type=int, default=50)
    s.add_argument("--wd", type=float, default=0.0)
    s.add_argument("--wd-mode", default="coupled", choices=["coupled", "independent"])
    s.add_argument("--clip", type=float, default=1.0)
    s.add_argument("--z-loss", type=float, default=0.0)
    s.add_argument("--eval-every", type=int, default=100)
    s.add_argument("--ckpt-every", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="output folder (checkpoints, metrics); default runs/train/<task>-<mixer>-<time>")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
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
    s.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float64"])
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--impls", help="comma-separated implementations (default: all the case offers)")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="case parameter, repeatable")
    s.add_argument("--threads", type=int, help="torch threads in the worker (default: the case's, else torch's)")
    s.add_argument("--out", help="output folder; default runs/bench/<case>-<mode>-<dtype>")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("repro", help="reproduce a paper's key finding at CPU scale (list: attnlab repro)")
    s.add_argument("slug", nargs="?", help="paper slug (see attnlab repro list), or 'all'")
    s.add_argument("--quick", action="store_true", help="smoke-size run (under a minute): a smoke test, not a finding")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1,
                   help="torch threads for the run (default 1: faster for these small models; 0 = torch's default)")
    s.add_argument("--out", help="output folder; default runs/repro/<slug>")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(fn=cmd_repro)
    return p


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``attnlab`` command."""
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (KeyError, ValueError, TypeError, ImportError) as e:
        # Bad names/arguments: one clear line, not a traceback.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"attnlab {args.command}: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
