"""attnlab compare: outputs, ranking logic, and (slow) that the ranking comes from training."""
from __future__ import annotations

import json
import math

import pytest

from attnlab.compare import RunRecord, rank_records, run_compare
from attnlab.suites import SUITES, get_suite


def _rec(mixer, task, q, hib=True, diverged=False, status="ok", val_loss=None):
    return RunRecord(mixer, task, "m", hib, q, val_loss, 0, 0.0, 0.0, 0.0, diverged, status)


def test_ranking_orders_by_quality_per_task_and_averages():
    recs = [_rec("a", "t1", 0.9), _rec("b", "t1", 0.5), _rec("c", "t1", float("nan")),
            _rec("a", "t2", 2.0, hib=False), _rec("b", "t2", 1.0, hib=False), _rec("c", "t2", 0.5, hib=False, diverged=True)]
    overall = rank_records(recs)
    assert [r.rank for r in recs] == [1, 2, 3, 2, 1, 3]
    assert overall == [("a", 1.5), ("b", 1.5), ("c", 3.0)]


def test_equal_quality_is_ranked_by_validation_loss_not_by_listing_order():
    recs = [_rec("first", "t", 1.0, val_loss=0.07), _rec("second", "t", 1.0, val_loss=0.01),
            _rec("third", "t", 0.5, val_loss=0.001)]
    assert rank_records(recs) == [("second", 1.0), ("first", 2.0), ("third", 3.0)]


def test_skipped_runs_are_not_ranked():
    recs = [_rec("a", "t", 0.1), _rec("g", "t", None, status="skipped: needs a grid")]
    assert rank_records(recs) == [("a", 1.0)]
    assert recs[1].rank is None


def test_unknown_suite_is_named():
    with pytest.raises(KeyError, match="suite: expected one of"):
        get_suite("nope")


def test_smoke_suite_writes_every_output(tmp_path):
    result = run_compare(SUITES["smoke"], out_dir=tmp_path, progress=False, isolate=False)
    assert {r.mixer for r in result.records} == {"softmax", "identity"}
    assert all(r.status == "ok" and r.quality is not None and math.isfinite(r.quality) for r in result.records)
    assert all(r.params > 0 and r.tokens_per_second > 0 and r.curve for r in result.records)
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["records"]) == 2
    assert (tmp_path / "results.csv").read_text().count("\n") == 3
    assert (tmp_path / "loss_curves.png").stat().st_size > 5000
    assert "| task | rank | mixer |" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_default_suite_recall_ranking_is_real(tmp_path):
    """Trained for real: the no-mixing baseline must lose on associative recall."""
    from dataclasses import replace

    suite = get_suite("default")
    recall_only = replace(suite, tasks=tuple(t for t in suite.tasks if t.task == "associative_recall"))
    result = run_compare(recall_only, out_dir=tmp_path, progress=False)
    by = {r.mixer: r for r in result.records}
    assert by["identity"].rank == len(by)
    assert by["softmax"].quality > 0.9 > 0.1 > by["identity"].quality
    assert by["softmax"].quality > by["linear_attention"].quality + 0.3  # MQAR: linear attention cannot bind pairs


def test_isolated_runs_measure_their_own_peak_memory(tmp_path):
    """Each run in a fresh process: two identical runs report similar peaks (in one process the second
    would reuse the first's allocator memory and show less)."""
    from dataclasses import replace

    smoke = SUITES["smoke"]
    twice = replace(smoke, mixers=("softmax", "softmax"))
    result = run_compare(twice, out_dir=tmp_path, progress=False)
    a, b = (r.peak_mem_mib for r in result.records)
    assert a > 0 and b > 0 and max(a, b) < 3 * min(a, b)
    assert result.records[0].quality == result.records[1].quality  # same seed, same data: same result


def test_threads_is_validated(tmp_path):
    with pytest.raises(ValueError, match="threads"):
        run_compare(SUITES["smoke"], out_dir=tmp_path, threads=0)
