"""Shared by the reproduction tests: the quick runs (through ``attnlab repro --all --quick``'s campaign runner, each
reproduction once per session, in its own process) and hand-written intervals for the rules."""
from __future__ import annotations

import pytest

from attnlab.repro import load_result
from attnlab.repro.harness.intervals import Interval


@pytest.fixture(scope="session")
def quick_dir(tmp_path_factory):
    """The session's folder of quick runs (one sub-folder per slug), filled on demand by ``quick_run``."""
    return tmp_path_factory.mktemp("quick-book")


@pytest.fixture(scope="session")
def quick_book(quick_dir):
    """``attnlab repro --all --quick --workers 2`` into the session's quick folder (the verdict book written at the
    end); returns the :class:`~attnlab.repro.book.Campaign`. The campaign test runs it first (tests/repro/book sorts
    before the per-slug tests), so the per-slug quick tests find their runs there."""
    from attnlab.repro.book import run_all

    return run_all(quick=True, out_dir=quick_dir, workers=2, progress=False)


@pytest.fixture(scope="session")
def quick_run(quick_dir):
    """``quick_run(slug)`` -> the :class:`~attnlab.repro.ReproResult` of ``attnlab repro <slug> --quick``, run by the
    campaign runner into the session's quick folder on first use (a run already there is kept: resumable)."""
    from attnlab.repro.book import run_all

    def run(slug: str):
        camp = run_all([slug], quick=True, out_dir=quick_dir, progress=False, book=False)
        assert not camp.failed, (quick_dir / slug / "log.txt").read_text()[-3000:]
        return load_result(quick_dir / slug)

    return run


@pytest.fixture
def iv():
    """``iv(low, high)`` -> an :class:`Interval` with those bounds (mean halfway), for hand-written rule inputs."""
    return lambda low, high: Interval((low + high) / 2, low, high, (low, high))


@pytest.fixture
def seed_gaps():
    """``seed_gaps(result, a, b, prefix="shapes/")`` -> per seed, 100 * (accuracy of a - accuracy of b), read from the
    result's per-seed accuracies; ``best(result, arms)`` is on it too: the arm of ``arms`` with the best mean."""

    def gaps(result, a: str, b: str, prefix: str = "shapes/") -> list[float]:
        per = result.per_seed
        return [100 * (x - y) for x, y in zip(per[f"{prefix}{a} accuracy"], per[f"{prefix}{b} accuracy"])]

    gaps.best = lambda result, arms, prefix="shapes/": max(arms, key=lambda a: result.measured[
        f"{prefix}{a} accuracy"].mean)
    return gaps
