"""A trained model back from disk without rebuilding it by hand: the architecture travels with the weights.

The weights alone (a checkpoint's ``model.safetensors``) do not say which model to build. A
*model record* does: ``{"class": "SequenceModel", "kwargs": <constructor arguments>, "task": <task
name or None>}``, JSON, for models that record their constructor arguments (``SequenceModel``
keeps them in ``init_config``). The trainer stores the record in every checkpoint's ``state.json``
(key ``"model"``); :func:`save_model` writes a standalone folder (``attnlab_model.json`` +
``model.safetensors``). :func:`load_model` reads any of

- a folder written by :func:`save_model`;
- a checkpoint folder (``<run>/checkpoints/step_00000500``);
- a run folder (``<run>``, the ``--out`` of ``attnlab train``): its newest complete checkpoint.

Nothing is pickled; the weights load strictly (a mismatch is an error naming the keys).
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model
from torch import nn

from attnlab.train.checkpoint import CHECKPOINT_DIR, list_checkpoints
from attnlab.utils.checks import describe, fail

__all__ = ["model_record", "save_model", "load_model", "RECORD_FILE"]

#: the model record of a folder written by :func:`save_model`
RECORD_FILE = "attnlab_model.json"


def _model_classes() -> dict:
    from attnlab.models import SequenceModel

    return {"SequenceModel": SequenceModel}


def model_record(model: nn.Module, task=None) -> dict | None:
    """The JSON record that rebuilds ``model``'s architecture, or None if it keeps no constructor arguments.

    ``task``: the :class:`~attnlab.tasks.Task` it is trained on (its name says how text maps to ids).
    """
    cls = type(model).__name__
    config = getattr(model, "init_config", None)
    if cls not in _model_classes() or not isinstance(config, dict):
        return None
    try:
        kwargs = json.loads(json.dumps(config))
    except TypeError:  # a constructor argument JSON cannot hold: no record rather than a wrong one
        return None
    return {"class": cls, "kwargs": kwargs, "task": getattr(task, "name", None)}


def save_model(model: nn.Module, folder: str | Path, *, task=None) -> Path:
    """Write ``model`` as a folder :func:`load_model` reads: ``attnlab_model.json`` and ``model.safetensors``.

    ValueError if the model keeps no record of its constructor arguments (see :func:`model_record`).
    """
    record = model_record(model, task)
    if record is None:
        fail("model", f"a model that records its constructor arguments ({', '.join(_model_classes())})",
             type(model).__name__)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors_model(model, str(folder / "model.safetensors"))
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return folder


def _weights_and_record(path: Path) -> tuple[Path, dict] | None:
    """(weights file, record) of a saved-model, checkpoint or run folder; None if ``path`` is none of them."""
    if (path / RECORD_FILE).is_file():
        return path / "model.safetensors", json.loads((path / RECORD_FILE).read_text())
    if (path / "state.json").is_file() and (path / "model.safetensors").is_file():
        state = json.loads((path / "state.json").read_text())
        if not isinstance(state.get("model"), dict):
            fail("path", "a checkpoint whose state.json holds the model record (written by attnlab >= this version)",
                 f"{path} (no 'model' entry: rebuild the model yourself and load model.safetensors)")
        return path / "model.safetensors", state["model"]
    found = list_checkpoints(path / CHECKPOINT_DIR)
    if found:
        return _weights_and_record(found[0][1])
    return None


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """The model saved at ``path`` (see the module docstring for the folders read) and its record, in eval mode.

    ValueError naming ``path`` if it holds no attnlab model.
    """
    path = Path(path)
    found = _weights_and_record(path) if path.is_dir() else None
    if found is None:
        fail("path", f"an attnlab model folder ({RECORD_FILE}), checkpoint folder or run folder", repr(str(path)))
    weights, record = found
    classes = _model_classes()
    if record.get("class") not in classes:
        fail("path", f"a model record of class {sorted(classes)}", f"{describe(record.get('class'))} in {path}")
    model = classes[record["class"]](**record["kwargs"])
    try:
        missing, unexpected = load_safetensors_model(model, str(weights), strict=False)
    except RuntimeError as e:  # shapes that do not fit the recorded architecture
        fail("path", f"weights matching the recorded {record['class']}", f"{str(e).splitlines()[1].strip()} ({weights})")
    if missing or unexpected:
        fail("path", f"weights matching the recorded {record['class']}",
             f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]} in {weights}")
    return model.eval(), record
