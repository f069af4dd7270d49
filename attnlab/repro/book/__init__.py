"""The verdict book (issue 18): every reproduction at once, and one HTML page of all their verdicts.

- :mod:`~attnlab.repro.book.campaign` — ``attnlab repro --all``: worker processes, resumable, one progress bar;
- :mod:`~attnlab.repro.book.html` — ``attnlab report <runs dir>``: the self-contained HTML page;
- :mod:`~attnlab.repro.book.environment` — versions, machine, threads, load.
"""
from attnlab.repro.book.campaign import Campaign, default_out, estimate_wall, run_all
from attnlab.repro.book.html import render_book, write_book

__all__ = ["run_all", "Campaign", "default_out", "estimate_wall", "render_book", "write_book"]
