"""The ``vision`` compare suite: every design builds for every task of the suite and gives logits."""
from __future__ import annotations

import pytest
import torch

from attnlab.compare import MODEL_PREFIX, _incompatible, _named_model, run_compare
from attnlab.models import build_for_task, create
from attnlab.suites import get_suite
from attnlab.tasks import create as create_task

SUITE = get_suite("vision")


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
        assert _incompatible(spec, task.spec) is None, spec
        torch.manual_seed(0)
        model = (_named_model(spec, task.spec) if spec.startswith(MODEL_PREFIX)
                 else build_for_task(task.spec, mixer=spec, dim=run.dim, depth=run.depth, num_heads=run.num_heads))
        with torch.no_grad():
            out = model.eval()(batch.inputs)
        assert out.shape == (2, task.spec.num_classes) and torch.isfinite(out).all(), spec


@pytest.mark.slow
def test_vision_suite_runs_end_to_end(tmp_path):
    result = run_compare(SUITE, out_dir=tmp_path, progress=False, steps_scale=0.01)
    assert len(result.records) == len(SUITE.mixers) * len(SUITE.tasks)
    assert all(r.status == "ok" for r in result.records), [r.status for r in result.records if r.status != "ok"]
    assert (tmp_path / "report.md").exists()
