"""The named suites: looked up by name; every spec of every suite runs on its tasks (the ``vision`` suite
builds every design and gives logits, and runs end to end in the slow tests)."""
from __future__ import annotations

import pytest
import torch

from attnlab.compare import MODEL_PREFIX, build_model, incompatibility, run_compare
from attnlab.models import create
from attnlab.suites import SUITES, get_suite
from attnlab.tasks import create as create_task

SUITE = get_suite("vision")


def test_unknown_suite_is_named():
    with pytest.raises(KeyError, match="suite: expected one of"):
        get_suite("nope")
    assert get_suite("smoke") is SUITES["smoke"]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_spec_of_every_suite_runs_on_its_tasks(name):
    # A suite that lists a mixer its task cannot take would rank a skipped run: none does.
    suite = SUITES[name]
    assert suite.name == name and suite.mixers and suite.tasks
    for run in suite.tasks:
        spec = create_task(run.task, **run.task_kwargs).spec
        assert [m for m in suite.mixers if incompatibility(m, spec) is not None] == [], run.task


def test_vision_suite_names_every_design():
    names = {m[len(MODEL_PREFIX):] for m in SUITE.mixers if m.startswith(MODEL_PREFIX)}
    assert names == {f"{d}_tiny" for d in ("spectformer", "activator", "convit", "crossvit", "tnt", "shvit",
                                           "biformer", "dinat", "s2aformer", "hyena_vit", "hyena_hybrid",
                                           "path_ensemble")}
    assert "softmax" in SUITE.mixers  # the plain ViT baseline
    for name in names:
        create(name)  # registered


@pytest.mark.parametrize("run", SUITE.tasks, ids=lambda r: r.task)
def test_every_spec_builds_for_the_task(run):
    task = create_task(run.task, **run.task_kwargs)
    batch = task.batch("val", 0, 2)
    for spec in SUITE.mixers:
        torch.manual_seed(0)
        model = build_model(spec, run, task.spec)
        with torch.no_grad():
            out = model.eval()(batch.inputs)
        assert out.shape == (2, task.spec.num_classes) and torch.isfinite(out).all(), spec


@pytest.mark.slow
def test_vision_suite_runs_end_to_end(tmp_path):
    result = run_compare(SUITE, out_dir=tmp_path, progress=False, steps_scale=0.01)
    assert len(result.records) == len(SUITE.mixers) * len(SUITE.tasks)
    assert all(r.status == "ok" for r in result.records), [r.status for r in result.records if r.status != "ok"]
    assert (tmp_path / "report.md").exists()
