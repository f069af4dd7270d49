"""A model back from disk with its architecture: saved folders, checkpoint folders, run folders; errors."""
from __future__ import annotations

import json

import pytest
import torch

from attnlab.models import SequenceModel
from attnlab.train import TrainConfig, load_model, model_record, save_model, train
from attnlab.train.saved_model import RECORD_FILE


def _model(**kw) -> SequenceModel:
    return SequenceModel(vocab_size=11, dim=16, depth=2, num_heads=2, max_len=8, **kw).eval()


def test_save_and_load_round_trip(tmp_path):
    model = _model(mixer=[("softmax", {}), ("deltanet", {})], ffn="glu")
    save_model(model, tmp_path / "m")
    loaded, record = load_model(tmp_path / "m")
    assert record["class"] == "SequenceModel" and record["kwargs"]["ffn"] == "glu" and record["task"] is None
    ids = torch.randint(0, 11, (2, 8))
    assert torch.equal(loaded(ids), model(ids)) and not loaded.training


def test_every_checkpoint_carries_the_record_and_a_run_folder_loads_its_newest(tmp_path, make_tiny):
    _, task = make_tiny()
    model = SequenceModel(vocab_size=task.spec.vocab_size, dim=16, depth=1, num_heads=2, max_len=8)
    cfg = TrainConfig(steps=4, batch_size=4, warmup_steps=1, eval_every=0, ckpt_every=2, log_every=1)
    train(model, task, cfg, out_dir=tmp_path / "run", progress=False)
    state = json.loads((tmp_path / "run/checkpoints/step_00000004/state.json").read_text())
    assert state["model"] == model_record(model, task) and state["model"]["task"] == "shift"
    ids = torch.randint(0, task.spec.vocab_size, (2, 8))
    for path in (tmp_path / "run", tmp_path / "run/checkpoints/step_00000004"):
        loaded, record = load_model(path)
        assert torch.equal(loaded(ids), model.eval()(ids))
    older, _ = load_model(tmp_path / "run/checkpoints/step_00000002")
    assert not torch.equal(older(ids), model(ids))  # a checkpoint folder loads that step, not the newest


def test_models_without_a_record_and_folders_without_a_model(tmp_path):
    assert model_record(torch.nn.Linear(2, 2)) is None
    assert model_record(_model(mixer_kwargs={"softmax": {"qkv_bias": True}})) is not None
    with pytest.raises(ValueError, match="model: expected a model that records its constructor arguments "
                                         r"\(SequenceModel\), received Linear"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "x")
    with pytest.raises(ValueError, match=r"path: expected an attnlab model folder \(attnlab_model.json\), checkpoint "
                                         "folder or run folder, received"):
        load_model(tmp_path)
    save_model(_model(), tmp_path / "m")
    record = json.loads((tmp_path / "m" / RECORD_FILE).read_text())
    (tmp_path / "m" / RECORD_FILE).write_text(json.dumps({**record, "kwargs": {**record["kwargs"], "dim": 32}}))
    with pytest.raises(ValueError, match="path: expected weights matching the recorded SequenceModel, received size mismatch for"):
        load_model(tmp_path / "m")
