"""Shared by the reproduction tests: each quick run happens once per session, whichever tests read it."""
from __future__ import annotations

import pytest

from attnlab.repro import run_repro


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(slug)`` -> the :class:`~attnlab.repro.ReproResult` of ``attnlab repro <slug> --quick``
    (run on first use, in its own temporary folder, then cached for the session)."""
    cache = {}

    def run(slug: str):
        if slug not in cache:
            cache[slug] = run_repro(slug, quick=True, out_dir=tmp_path_factory.mktemp(slug), progress=False)
        return cache[slug]

    return run
