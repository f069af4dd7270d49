"""``attnlab repro --all --quick`` end to end (every reproduction, two workers, the verdict book), resumability,
failures, the wall-time estimate."""
from __future__ import annotations

import json

import pytest

from attnlab.repro import REPROS, load_result
from attnlab.repro.book.campaign import CAMPAIGN_FILE, FULL_CPU_ESTIMATE, estimate_wall, is_done, run_all


def test_every_quick_reproduction_runs_in_the_campaign(quick_book):
    assert not quick_book.failed, {s: quick_book.status[s] for s in quick_book.failed}
    assert set(quick_book.status) == set(REPROS)
    record = json.loads((quick_book.out_dir / CAMPAIGN_FILE).read_text())
    assert record["quick"] is True and record["workers"] == 2 and record["load_samples"]
    assert {"python", "torch", "cpu", "cores", "attnlab_revision"} <= set(record["environment"])
    for slug in REPROS:
        r = load_result(quick_book.out_dir / slug)
        assert r.quick and r.threads == 1 and r.slug == slug
        assert r.cpu_seconds < 60, f"{slug}: a quick run must stay under a minute of one core"
    assert quick_book.book == quick_book.out_dir / "index.html" and quick_book.book.stat().st_size > 10_000


def test_a_finished_run_is_kept_and_rerun_on_request(tmp_path):
    camp = run_all(["random_features"], quick=True, out_dir=tmp_path, progress=False, book=False)
    assert camp.status["random_features"]["status"] == "done" and is_done(tmp_path / "random_features", True)
    assert not is_done(tmp_path / "random_features", False)  # a quick run does not stand in for a full one
    first = (tmp_path / "random_features" / "result.json").read_text()
    again = run_all(["random_features"], quick=True, out_dir=tmp_path, progress=False)
    assert again.status["random_features"]["status"] == "kept" and again.book.exists()
    assert (tmp_path / "random_features" / "result.json").read_text() == first
    rerun = run_all(["random_features"], quick=True, out_dir=tmp_path, progress=False, rerun=True, book=False)
    assert rerun.status["random_features"]["status"] == "done"
    assert json.loads((tmp_path / "random_features" / "result.json").read_text())["seconds"] != \
        json.loads(first)["seconds"]



def test_the_record_says_pending_until_a_reproduction_finishes(tmp_path, monkeypatch):
    """campaign.json exists from the start with every slug to run ``pending``; an interrupted campaign leaves the
    unfinished ones ``pending`` (not ``kept``, which means finished by an earlier invocation)."""
    import attnlab.repro.book.campaign as campaign

    seen = []

    def fake_run_one(slug, folder, quick, seed, timeout):
        seen.append(json.loads((tmp_path / CAMPAIGN_FILE).read_text())["status"][slug]["status"])
        if slug == "att_svm":
            raise KeyboardInterrupt  # the user stops the campaign during its second reproduction
        return {"status": "done", "seconds": 1.0, "returncode": 0, "log": str(folder / "log.txt")}

    monkeypatch.setattr(campaign, "_run_one", fake_run_one)
    with pytest.raises(KeyboardInterrupt):  # att_svm's estimate is shorter: it runs second on one worker
        run_all(["att_svm", "random_features"], quick=True, out_dir=tmp_path, progress=False, book=False)
    assert seen == ["pending", "pending"]
    status = json.loads((tmp_path / CAMPAIGN_FILE).read_text())["status"]
    assert status["random_features"]["status"] == "done" and status["att_svm"]["status"] == "pending"

def test_a_failed_run_is_listed_with_its_log(tmp_path):
    camp = run_all(["random_features"], quick=True, out_dir=tmp_path, progress=False, timeout=0.01)
    assert camp.failed == ["random_features"] and camp.status["random_features"]["returncode"] != 0
    assert "timeout" in (tmp_path / "random_features" / "log.txt").read_text()
    assert "failed" in camp.book.read_text()


@pytest.mark.parametrize("kw, exc, match", [
    (dict(slugs=["nope"]), KeyError, "slugs: expected slugs among"),
    (dict(workers=0), ValueError, "workers: expected an int >= 1"),
])
def test_bad_arguments_are_named(tmp_path, kw, exc, match):
    with pytest.raises(exc, match=match):
        run_all(kw.get("slugs"), quick=True, out_dir=tmp_path, workers=kw.get("workers", 1), progress=False)


def test_wall_estimate_schedules_the_longest_first(monkeypatch):
    assert set(FULL_CPU_ESTIMATE) <= set(REPROS)
    assert estimate_wall(["deltanet"], 2) == FULL_CPU_ESTIMATE["deltanet"]
    # hand-written times, independent of the measured ones: longest first on two workers gives [1000] and
    # [900 + 200], not the [1000 + 200] and [900] of the given order
    for slug, cpu in (("shvit", 200), ("combiner", 900), ("deltanet", 1000)):
        monkeypatch.setitem(FULL_CPU_ESTIMATE, slug, cpu)
    assert estimate_wall(["shvit", "combiner", "deltanet"], 2) == 1100
    assert estimate_wall(["shvit", "combiner", "deltanet"], 3) == 1000
    assert estimate_wall(list(FULL_CPU_ESTIMATE), 1) == sum(FULL_CPU_ESTIMATE.values())
    with pytest.raises(ValueError, match="workers: expected"):
        estimate_wall(["deltanet"], 0)
