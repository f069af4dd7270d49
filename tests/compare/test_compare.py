"""attnlab compare: which specs run on which task, the models it builds, ranking logic, outputs,
``model:<name>`` specs beside mixer specs, and (slow) that the ranking comes from training."""
from __future__ import annotations

import json
import math

import pytest
import torch

from attnlab.compare import (
    RunRecord, build_model, check_suite, failed_rows, incompatibility, named_model, rank_records, run_compare, table_rows,
)
from attnlab.models import build_for_task, count_parameters, create
from attnlab.suites import SUITES, Suite, TaskRun, get_suite
from attnlab.tasks import create as create_task


def _rec(mixer, task, q, hib=True, diverged=False, status="ok", val_loss=None):
    return RunRecord(mixer, task, "m", hib, q, val_loss, 0, 0.0, 0.0, 0.0, diverged, status)


@pytest.mark.parametrize("spec, task, why", [
    ("softmax", "associative_recall", None),
    ("deltanet,softmax", "associative_recall", None),
    ("deltanet", "digits", "deltanet is causal-only, the task is bidirectional"),
    ("softmax,gpsa", "char_lm", "gpsa cannot be causal, the task needs causal mixing"),
    ("strip_attention", "icl_regression", "strip_attention needs a 2-D grid, the task is a 1-D sequence"),
    ("strip_attention", "digits", None),
    ("model:convit_tiny", "char_lm", "model:convit_tiny is an image model, the task takes tokens"),
    ("model:convit_tiny", "shapes", None),
])
def test_incompatibility_names_the_reason(spec, task, why):
    assert incompatibility(spec, create_task(task).spec) == why


def test_incompatibility_of_an_unknown_mixer_is_a_key_error():
    with pytest.raises(KeyError):
        incompatibility("softmx", create_task("char_lm").spec)


def test_build_model_makes_the_design_or_the_backbone():
    spec = create_task("shapes").spec
    run = TaskRun("shapes", dim=32, depth=1, num_heads=2)
    torch.manual_seed(0)
    design = build_model("model:activator_tiny", run, spec)
    torch.manual_seed(0)
    same = create("activator_tiny", img_size=32, in_chans=3, num_classes=8)
    assert all(torch.equal(a, b) for a, b in zip(design.state_dict().values(), same.state_dict().values()))
    backbone = build_model("softmax", run, spec)
    assert count_parameters(backbone) == count_parameters(build_for_task(spec, dim=32, depth=1, num_heads=2))
    assert count_parameters(named_model("activator_tiny", spec, num_classes=3)) != count_parameters(design)


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


def test_failed_runs_are_never_ranked_and_their_mixer_leaves_the_overall_ranking():
    recs = [_rec("ok", "t1", 0.1), _rec("bad", "t1", None, status="error: KeyError: boom"),
            _rec("ok", "t2", 0.2), _rec("bad", "t2", 0.9), _rec("worse", "t2", 0.05)]
    assert rank_records(recs) == [("ok", 1.5), ("worse", 3.0)]  # bad is best on t2, but failed on t1
    assert recs[1].rank is None and recs[1].failed and not recs[0].failed
    assert [r.rank for r in recs[2:]] == [2, 1, 3]


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_a_step_scale_that_is_not_positive_is_refused_before_anything_runs(tmp_path, scale):
    with pytest.raises(ValueError, match=r"steps_scale: expected a finite number > 0, received"):
        run_compare(SUITES["smoke"], out_dir=tmp_path, steps_scale=scale, isolate=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("mixers, tasks, match", [
    (("softmx",), ("associative_recall",), r"mixer name: .* received 'softmx' \(did you mean softmax"),
    (("deltanet,sofmax",), ("associative_recall",), r"received 'sofmax' \(did you mean softmax"),
    (("softmax",), ("assoc",), r"task name: .* received 'assoc' \(did you mean associative_recall"),
])
def test_unknown_names_are_refused_up_front_with_close_matches(mixers, tasks, match):
    suite = Suite("t", "test", mixers, tuple(TaskRun(t, steps=2, warmup_steps=1) for t in tasks))
    with pytest.raises(KeyError, match=match):
        check_suite(suite)


def test_a_run_that_raises_is_listed_as_failed_below_the_ranking(tmp_path, monkeypatch):
    import attnlab.compare as compare

    real = compare.build_model

    def build(spec, run, task_spec):
        if spec == "identity":
            raise RuntimeError("simulated failure while building")
        return real(spec, run, task_spec)

    monkeypatch.setattr(compare, "build_model", build)
    result = run_compare(SUITES["smoke"], out_dir=tmp_path, progress=False, isolate=False, steps_scale=0.1)
    failed = [r for r in result.records if r.mixer == "identity"]
    assert failed and all(r.failed and r.rank is None for r in failed)
    assert result.failed == failed and [m for m, _ in result.overall] == ["softmax"]
    assert table_rows(result)[-1][2] == "identity" and table_rows(result)[-1][1] == "-"  # below the ranked rows
    assert failed_rows(result) == [["associative_recall", "identity", "RuntimeError: simulated failure while building"]]
    report = (tmp_path / "report.md").read_text()
    assert report.index("## Failed runs (not ranked)") > report.index("## Overall")
    assert "| associative_recall | identity | RuntimeError: simulated failure while building |" in report


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
    """Each run in a warm worker process that returned the previous run's memory to the OS first: two identical
    runs report similar peaks (without that the second would reuse the first's allocator memory and show less;
    without the worker's warm-up run the first would carry ~17 MiB of one-off start-up allocations)."""
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


def test_model_specs_build_the_named_design_and_skip_non_image_tasks(tmp_path):
    shapes = TaskRun("shapes", {}, dim=32, depth=1, num_heads=2, steps=4, batch_size=8, lr=1e-3, warmup_steps=1,
                     eval_batches=1)
    recall = TaskRun("associative_recall", {"seq_len": 32, "num_pairs": 4}, dim=32, depth=1, num_heads=2, steps=2,
                     batch_size=8, warmup_steps=1, eval_batches=1)
    with pytest.raises(KeyError, match="model name: expected one of .* received 'no_such_model'"):
        run_compare(Suite("t", "test", ("model:activator_tiny", "model:no_such_model"), (shapes, recall)),
                    out_dir=tmp_path, progress=False, isolate=False)
    assert not (tmp_path / "runs").exists()  # refused before anything ran
    suite = Suite("t", "test", ("model:activator_tiny",), (shapes, recall))
    result = run_compare(suite, out_dir=tmp_path, progress=False, isolate=False)
    by = {(r.mixer, r.task): r for r in result.records}

    named = by[("model:activator_tiny", "shapes")]
    assert named.status == "ok" and named.quality is not None and math.isfinite(named.quality)
    # The record is the registered design at the task's size (not a ViT with that name as mixer).
    expected = count_parameters(create("activator_tiny", img_size=32, in_chans=3, num_classes=8))
    assert named.params == expected
    spec = create_task("shapes").spec
    assert named.params != count_parameters(build_for_task(spec, dim=32, depth=1, num_heads=2))

    assert by[("model:activator_tiny", "associative_recall")].status.startswith(
        "skipped: model:activator_tiny is an image model")
    assert (tmp_path / "runs" / "shapes--model-activator_tiny").exists()
