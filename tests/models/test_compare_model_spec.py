"""``attnlab compare`` with ``model:<name>`` specs: named designs trained beside mixer specs."""
from __future__ import annotations

import math

from attnlab.compare import run_compare
from attnlab.models import build_for_task, count_parameters, create
from attnlab.suites import Suite, TaskRun
from attnlab.tasks import create as create_task


def test_model_specs_build_the_named_design_and_skip_non_image_tasks(tmp_path):
    shapes = TaskRun("shapes", {}, dim=32, depth=1, num_heads=2, steps=4, batch_size=8, lr=1e-3, warmup_steps=1,
                     eval_batches=1)
    recall = TaskRun("associative_recall", {"seq_len": 32, "num_pairs": 4}, dim=32, depth=1, num_heads=2, steps=2,
                     batch_size=8, warmup_steps=1, eval_batches=1)
    suite = Suite("t", "test", ("model:activator_tiny", "model:no_such_model"), (shapes, recall))
    result = run_compare(suite, out_dir=tmp_path, progress=False, isolate=False)
    by = {(r.mixer, r.task): r for r in result.records}

    named = by[("model:activator_tiny", "shapes")]
    assert named.status == "ok" and named.quality is not None and math.isfinite(named.quality)
    # The record is the registered design at the task's size (not a ViT with that name as mixer).
    expected = count_parameters(create("activator_tiny", img_size=32, in_chans=3, num_classes=8))
    assert named.params == expected
    spec = create_task("shapes").spec
    assert named.params != count_parameters(build_for_task(spec, dim=32, depth=1, num_heads=2))

    assert by[("model:activator_tiny", "associative_recall")].status.startswith("skipped: model:activator_tiny is an image model")
    assert by[("model:no_such_model", "shapes")].status.startswith("error: KeyError")
    assert "model name: expected one of" in by[("model:no_such_model", "shapes")].status
    assert (tmp_path / "runs" / "shapes--model-activator_tiny").exists()
