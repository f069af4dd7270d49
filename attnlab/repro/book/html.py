"""The verdict book: one self-contained HTML page for a folder of reproduction runs (``attnlab report <runs dir>``).

The page holds the verdict table of every reproduction in the folder (paper, claim, the headline
figure with its 95 % interval, the verdict with the arms that learned nothing, each arm's chosen LR,
wall and CPU time, a link to the details), then per reproduction its summary, the figures its rule
read, the protocol's LR sweeps (validation loss at every LR, the chosen one marked, test figures per
seed), everything else measured and every plot, and at the end the environment (versions, machine,
threads, load). Every image is embedded as a ``data:image/png;base64`` URI and the style sheet is
inline: the file can be mailed, archived or opened offline. Reproductions that failed in the campaign
(``campaign.json``) get a row saying so and the end of their log.
"""
from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from attnlab.repro.harness.intervals import Interval
from attnlab.repro.harness.protocol import BLIND_SWEEP_NOTE, blind_arms
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, QUICK_NOTE
from attnlab.repro.harness.runner import ReproResult, format_value, load_result

__all__ = ["render_book", "write_book", "collect", "BOOK_FILE"]

BOOK_FILE = "index.html"
_CLASS = {HOLDS: "holds", DOES_NOT_HOLD: "not", INCONCLUSIVE: "inconclusive", "failed": "failed"}
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;
color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em} th,td{border:1px solid #ddd;padding:.25em .5em;
vertical-align:top;text-align:left} th{background:#f3f3f3}
td.num{text-align:right;white-space:nowrap} .chosen{font-weight:bold;background:#eef6ee}
.v{font-weight:bold;white-space:nowrap;padding:.1em .4em;border-radius:3px}
.v.holds{background:#d7f0d7} .v.not{background:#f6d6d6} .v.inconclusive{background:#eee} .v.failed{background:#f9c27a}
.quick{background:#fff3cd;padding:.5em;border:1px solid #e0c36c} .small{font-size:.85em;color:#555}
img{max-width:100%;border:1px solid #eee;margin:.4em 0} pre{white-space:pre-wrap;background:#f8f8f8;padding:.5em}
section.repro{margin-bottom:2.5em}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _value(v) -> str:
    if isinstance(v, Interval):
        return f"{v.mean:.4g} [{v.low:.4g}, {v.high:.4g}] (n={v.n})"
    return format_value(v)


def _table(header: list[str], rows: list[list[str]], *, cls: str = "", raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw``."""
    cell = (lambda c: c) if raw else _e
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _markdown(text: str) -> str:
    """Paragraphs and pipe tables of a report summary as HTML (everything escaped)."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = [ln for ln in block.strip().splitlines() if ln.strip()]
        if lines and all(ln.lstrip().startswith("|") for ln in lines):
            rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines
                    if not set(ln.replace("|", "").strip()) <= set("-: ")]
            out.append(_table(rows[0], rows[1:]))
        elif lines:
            out.append(f"<p>{_e(' '.join(lines))}</p>")
    return "\n".join(out)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(path.name)}" src="data:image/png;base64,{data}">'


def _lrs(result: ReproResult) -> str:
    """Each arm's chosen value of the swept hyper-parameter (per comparison when there are several)."""
    parts = []
    for rec in result.protocol:
        pre = f"{rec['name']}: " if len(result.protocol) > 1 else ""
        hyper = "" if rec.get("hyper", "lr") == "lr" else f" ({rec['hyper']})"
        parts.append(pre + ", ".join(f"{a} {lr:.0e}" for a, lr in rec["chosen"].items()) + hyper)
    return "; ".join(parts) or "-"


def _verdict(result: ReproResult) -> str:
    return f'<span class="v {_CLASS.get(result.verdict, "")}">{_e(result.verdict)}</span>' + (
        f"<br><span class='small'>{_e(result.verdict_line.removeprefix(result.verdict).strip('; '))}</span>"
        if result.verdict_line != result.verdict else "")


def _sweep(rec: dict) -> str:
    """One protocol record: the sweep (val loss at each swept value, the chosen one marked), test per seed."""
    grid, hyper = rec["grid"], rec.get("hyper", "lr")
    header = ["arm", *(f"{hyper} {g:.3g}" for g in grid), f"chosen {hyper}", f"test {rec['metric']} per seed"]
    rows = []
    for arm, chosen in rec["chosen"].items():
        losses = rec["sweep"].get(arm, {}).get("val_loss") or [None] * len(grid)
        cells = [f'<td class="num{" chosen" if g == chosen else ""}">{"-" if v is None else _e(f"{v:.4g}")}</td>'
                 for g, v in zip(grid, losses)]
        rows.append(f"<tr><td>{_e(arm)}</td>{''.join(cells)}<td class='num'>{chosen:.3g}</td>"
                    f"<td>{_e(format_value(rec['test'].get(arm, [])))}</td></tr>")
    steps = (f", {rec['sweep_steps']} of {rec['steps']} steps (a fraction {rec['sweep_fraction']:g} of the budget)"
             if rec.get("steps") else "")
    blind = blind_arms(rec)
    note = "".join(f"<p class='small'>{_e(t)}</p>" for t in (
        f"At chance at every {hyper} tried: {', '.join(rec['at_chance'])}." if rec.get("at_chance") else "",
        f"Chosen {hyper} at an edge of the grid: {', '.join(rec['at_edge'])}." if rec.get("at_edge") else "",
        f"{BLIND_SWEEP_NOTE.format(hyper=hyper)} {', '.join(blind)}." if blind else "") if t)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return (f"<h4>Protocol: {_e(rec['name'])}</h4><p class='small'>{_e(hyper)} swept on the "
            f"{_e(rec['split']['sweep'])} split{_e(steps)}; the cell is the final validation loss, the chosen value in "
            f"bold; then seeds {_e(rec['seeds'])} at the chosen {_e(hyper)}, judged on the "
            f"{_e(rec['split']['verdict'])} split.</p><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
            f"</tbody></table>{note}")


def _section(result: ReproResult, folder: Path) -> str:
    figs = [[k, _value(v)] for k, v in result.figures.items()]
    rest = [[k, _value(v)] for k, v in result.measured.items() if k not in result.figures]
    plots = [folder / Path(p).name for p in result.plots]
    imgs = "".join(_img(p) for p in plots if p.exists())
    load = f", load {result.load[0]:.1f} -> {result.load[1]:.1f}" if len(result.load) == 2 else ""
    return (f'<section class="repro" id="repro-{_e(result.slug)}"><h3>{_e(result.paper)} <code>{_e(result.slug)}'
            f"</code></h3><p><strong>Claim.</strong> {_e(result.claim)}</p><p><strong>Verdict:</strong> "
            f"{_verdict(result)}</p>{_markdown(result.summary)}<h4>Figures the rule reads</h4>"
            f"{_table(['figure', 'value (mean [95 % interval] over seeds)'], figs)}"
            + "".join(_sweep(rec) for rec in result.protocol)
            + f"<details><summary>Everything else measured ({len(rest)} entries)</summary>"
            f"{_table(['measured', 'value'], rest)}</details>{imgs}"
            f"<p class='small'>{result.seconds:.0f} s wall, {result.cpu_seconds:.0f} s CPU, {result.threads} torch "
            f"thread(s), seed {result.seed}{_e(load)}.</p></section>")


def _failed_section(slug: str, status: dict) -> str:
    log = Path(status.get("log", ""))
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.is_file() else "(no log)"
    return (f'<section class="repro" id="repro-{_e(slug)}"><h3><code>{_e(slug)}</code></h3><p><span class="v failed">'
            f"failed</span> (exit code {_e(status.get('returncode'))}, {status.get('seconds', 0):.0f} s)</p>"
            f"<pre>{_e(tail)}</pre></section>")


def collect(runs_dir: str | Path) -> tuple[dict[str, ReproResult], dict]:
    """The results in ``runs_dir`` (one sub-folder per reproduction holding ``result.json``), by slug, and the
    campaign record (``campaign.json``, or {} when there is none)."""
    root = Path(runs_dir)
    results = {}
    for path in sorted(root.glob("*/result.json")):
        r = load_result(path)
        results[r.slug] = r
    camp = root / "campaign.json"
    return results, (json.loads(camp.read_text()) if camp.is_file() else {})


def render_book(runs_dir: str | Path) -> str:
    """The verdict book of the runs in ``runs_dir`` as one self-contained HTML page (see the module docstring)."""
    from attnlab.papers import PAPERS

    root = Path(runs_dir)
    results, camp = collect(root)
    failed = {s: st for s, st in camp.get("status", {}).items() if st.get("status") == "failed"}
    if not results and not failed:
        raise FileNotFoundError(f"runs_dir: expected a folder of reproduction runs (*/result.json), received {root}")
    order = sorted(results.values(), key=lambda r: (r.paper, r.slug))
    rows = []
    for r in order:
        head = r.headline or next(iter(r.figures))
        rows.append(
            f'<tr class="verdict-row" data-slug="{_e(r.slug)}"><td>{_e(r.paper)}</td><td><a href="#repro-{_e(r.slug)}">'
            f"{_e(r.slug)}</a></td><td>{_e(r.claim)}</td><td><span class='small'>{_e(head)}</span><br>"
            f"{_e(_value(r.figures[head]))}</td><td>{_verdict(r)}</td><td class='small'>{_e(_lrs(r))}</td>"
            f"<td class='num'>{r.seconds:.0f} s / {r.cpu_seconds:.0f} s</td></tr>")
    rows += [f'<tr class="verdict-row" data-slug="{_e(s)}"><td></td><td><a href="#repro-{_e(s)}">{_e(s)}</a></td>'
             f'<td></td><td></td><td><span class="v failed">failed</span></td><td></td><td class="num">'
             f"{st.get('seconds', 0):.0f} s</td></tr>" for s, st in failed.items() if s not in results]
    counts = {v: sum(r.verdict == v for r in order) for v in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)}
    quick = any(r.quick for r in order)
    missing = [f"{p.id} {p.slug}" for p in PAPERS.values() if p.id not in {r.paper for r in order}]
    env = camp.get("environment") or {}
    loads = camp.get("load_samples") or []
    env_rows = [[k, v] for k, v in env.items()]
    if camp:
        env_rows += [["workers", camp.get("workers")], ["started", camp.get("started")],
                     ["finished", camp.get("finished")], ["campaign wall seconds", camp.get("wall_seconds")]]
    if loads:
        env_rows.append(["load average during the campaign (1 min; min / mean / max of samples every 30 s)",
                         f"{min(loads):.1f} / {sum(loads) / len(loads):.1f} / {max(loads):.1f}"])
    header = ["paper", "reproduction", "claim", "figure: mean [95 % interval] (seeds)", "verdict", "LR per arm",
              "wall / CPU"]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>attnlab: the verdict book</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>attnlab: the verdict book</h1>",
        f"<p class='small'>Generated {_e(time.strftime('%Y-%m-%d %H:%M %Z'))} from <code>{_e(root)}</code>.</p>",
        f"<p class='quick'>Every run on this page is a {_e(QUICK_NOTE)}.</p>" if quick else "",
        f"<p>{len(order)} reproductions: {counts[HOLDS]} hold, {counts[DOES_NOT_HOLD]} do not hold at this scale, "
        f"{counts[INCONCLUSIVE]} inconclusive{f', {len(failed)} failed' if failed else ''}.</p>",
        "<h2>Verdicts</h2>",
        f'<table id="verdicts"><thead><tr>{"".join(f"<th>{_e(h)}</th>" for h in header)}</tr></thead><tbody>'
        + "".join(rows) + "</tbody></table>",
        f"<p class='small'>Papers without a reproduction here: {_e(', '.join(missing))}.</p>" if missing else "",
        "<h2>The protocol</h2><p>Every arm of a comparison trains at its own learning rate, the one with the lowest "
        "final validation loss in a small log-spaced sweep run at a stated fraction of the budget on a seed the "
        "verdict never reads; it then trains on each of the verdict's seeds at that LR and is judged on the test "
        "split. Every figure a rule reads is a mean over seeds with a 95 % Student t interval; a claim part holds "
        "when the interval lies on the claimed side of the paper's margin, does not hold when it lies on the other "
        "side, and is inconclusive when it contains the margin. An arm within the stated margin of chance at every LR "
        "tried is named in the verdict; each rule says beforehand what that means.</p>",
        "<h2>Reproductions</h2>", *(_section(r, root / r.slug) for r in order),
        *(_failed_section(s, st) for s, st in failed.items() if s not in results),
        '<h2 id="environment">Environment</h2>',
        _table(["", "value"], env_rows) if env_rows else "<p>No campaign record (campaign.json) in this folder.</p>",
        "</body></html>",
    ])


def write_book(runs_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write :func:`render_book` of ``runs_dir`` to ``path`` (default ``<runs_dir>/index.html``); returns the path."""
    out = Path(path) if path is not None else Path(runs_dir) / BOOK_FILE
    out.write_text(render_book(runs_dir), encoding="utf-8")
    return out
