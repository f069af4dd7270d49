"""The verdict book's HTML: one row per reproduction, every image an embedded PNG, nothing external; failed rows;
and (slow, when Debian's chromium is installed) the page rendered in headless Chromium."""
from __future__ import annotations

import base64
import html
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from attnlab.repro import load_result
from attnlab.repro.book.html import render_book, write_book
from attnlab.repro.harness.intervals import Interval

PNG = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """What the tests read from the page: verdict rows, section ids, image sources, external references."""

    def __init__(self):
        super().__init__()
        self.rows, self.sections, self.images, self.external, self.links = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "verdict-row" in (a.get("class") or ""):
            self.rows.append(a["data-slug"])
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])
        if tag in ("link", "script", "iframe") or any(str(v).startswith(("http:", "https:", "//", "file:"))
                                                      for k, v in a.items() if k in ("src", "href")):
            self.external.append((tag, a))


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_the_quick_book_has_a_row_per_reproduction_and_only_embedded_pngs(quick_book):
    text = quick_book.book.read_text()
    page = _parse(text)
    results = {p.parent.name: load_result(p) for p in quick_book.out_dir.glob("*/result.json")}
    assert sorted(page.rows) == sorted(results) and len(page.rows) == len(set(page.rows))
    assert {f"repro-{s}" for s in results} <= set(page.sections) and set(page.links) >= {f"repro-{s}" for s in results}
    assert len(page.images) == sum(len(r.plots) for r in results.values()) > len(results)
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG) and len(data) > 1000
    assert page.external == [] and "quick run: a smoke test, not a finding" in text
    for r in results.values():  # the claim, the headline figure with its interval, each arm's LR
        head = r.figures[r.headline]
        assert html.escape(r.claim) in text and (not isinstance(head, Interval) or f"(n={head.n})" in text)
        assert all(f"{arm} {lr:.0e}" in text for rec in r.protocol for arm, lr in rec["chosen"].items())
    assert 'id="environment"' in text and "attnlab_revision" in text


def test_report_of_a_folder_with_a_failed_run(quick_run, tmp_path):
    src = quick_run("random_features")
    folder = tmp_path / "runs"
    shutil.copytree(Path(src.plots[0]).parent, folder / "random_features")
    (folder / "sea").mkdir()
    (folder / "sea" / "log.txt").write_text("Traceback ...\nRuntimeError: it broke\n")
    (folder / "campaign.json").write_text(json.dumps({"status": {"sea": {"status": "failed", "returncode": 1,
                                                                         "seconds": 3.0,
                                                                         "log": str(folder / "sea" / "log.txt")}}}))
    path = write_book(folder)
    page = _parse(path.read_text())
    assert sorted(page.rows) == ["random_features", "sea"] and "RuntimeError: it broke" in path.read_text()
    assert "1 failed" in path.read_text() and "repro-sea" in page.sections
    with pytest.raises(FileNotFoundError, match="runs_dir: expected a folder of reproduction runs"):
        render_book(tmp_path / "empty")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: flags for a headless run that reaches no network and leaves nothing behind
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--hide-scrollbars"]
#: appended to a copy of the page: counts the images that decoded (naturalWidth > 0) and the verdict rows
PROBE = """<script>window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute('data-images', imgs.length);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-loaded', ok.length);
  document.body.setAttribute('data-rows', document.querySelectorAll('#verdicts tr.verdict-row').length);
});</script>"""


def _chromium(tmp_path: Path, *args: str) -> str:
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install -y chromium")
def test_the_book_renders_in_headless_chromium(quick_book, tmp_path):
    text = quick_book.book.read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=20000", "--dump-dom", probe.as_uri())
    body = _parse_body(dom)
    n_rows = len(_parse(text).rows)
    assert int(body["data-rows"]) == n_rows == len(list(quick_book.out_dir.glob("*/result.json")))
    assert int(body["data-images"]) == int(body["data-loaded"]) == len(_parse(text).images) > 0
    shot = tmp_path / "book.png"
    _chromium(tmp_path, "--window-size=1280,1800", f"--screenshot={shot}", quick_book.book.as_uri())
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 20_000


def _parse_body(dom: str) -> dict:
    class Body(HTMLParser):
        attrs: dict = {}

        def handle_starttag(self, tag, attrs):
            if tag == "body":
                Body.attrs = dict(attrs)

    Body().feed(dom)
    return Body.attrs


def test_a_sweep_record_names_its_blind_arms():
    from attnlab.repro.book.html import _sweep

    rec = {"name": "toy", "grid": [1e-3, 1e-2], "metric": "accuracy", "split": {"sweep": "val", "verdict": "test"},
           "seeds": [0, 1], "sweep": {"a": {"val_loss": [2.0, 1.5]}}, "chosen": {"a": 1e-2}, "test": {"a": [0.9, 0.8]},
           "at_chance": [], "at_edge": [], "blind_sweep": ["a"], "steps": 8, "sweep_steps": 2, "sweep_fraction": 0.25}
    page = html.unescape(_sweep(rec))
    assert "but not on every seed, so the lr was chosen by validation loss alone: a." in page
    assert "validation loss alone" not in html.unescape(_sweep({**rec, "blind_sweep": []}))
