"""Checkpoints: safetensors (never pickle), written atomically, the latest complete one loadable.

A checkpoint is a folder ``<root>/step_<8 digits>/`` holding

- ``model.safetensors``: the model's state dict (shared / tied tensors stored once);
- ``optimizer.safetensors``: every tensor of the optimizer state, flattened to
  keys ``state.<param index>.<name>`` (AdamW: ``exp_avg``, ``exp_avg_sq``, ``step``);
- ``optimizer.json``: the non-tensor parts (param groups with their hyper-parameters,
  non-tensor per-parameter state);
- ``rng.safetensors``: torch's CPU RNG state as a uint8 tensor ``torch_cpu``;
- ``state.json``: step, config, history and evaluations so far, Python's ``random`` state;
- ``manifest.json`` (written last): size and SHA-256 of each of the files above.

Verification: loading checks every file against the manifest (present, size, SHA-256) before
parsing anything, so a damaged header, a truncated file and a same-size corruption of the
weights are all caught; :func:`load_latest` then skips that checkpoint, says which and why,
and takes the next older one. Checkpoints written before the manifest existed (state.json
holding the file sizes) are still read, with their sizes checked only.

Atomicity: everything is written into a hidden temporary folder next to the
target (``<root>/.tmp-step_...``), each file and the folder are fsync'ed, and
only then is the folder renamed into place (``os.replace``) and the parent fsync'ed.
A folder named ``step_*`` is therefore always complete; a crash mid-save leaves
at most a hidden temporary folder, which loading ignores and the next save
removes. Older checkpoints are pruned only after the new one is in place.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

__all__ = ["save_checkpoint", "load_latest", "list_checkpoints", "verify_checkpoint", "Checkpoint", "CheckpointError",
           "CHECKPOINT_DIR", "MANIFEST"]

#: sub-folder of a run's out_dir that holds its checkpoints
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{8,})$")
_FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors", "state.json")
#: the file of a checkpoint that records the size and SHA-256 of the others (written last)
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint is damaged (or every checkpoint of a folder is); the message says which file and how."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{idx}.{k}"] = v.detach().contiguous()
            else:
                rest.setdefault(str(idx), {})[k] = v
    return tensors, {"state": rest, "param_groups": sd["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(v) for i, v in meta["state"].items()}
    for key, t in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = t
    return {"state": state, "param_groups": meta["param_groups"]}


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return sorted(found, reverse=True)


def save_checkpoint(
    root: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict,
    *,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically under ``root`` and keep the newest ``keep``.

    Args:
        root: checkpoint folder (usually ``<out_dir>/checkpoints``).
        step: steps done; names the folder.
        model, optimizer: saved as safetensors (plus the optimizer's JSON metadata).
        state: JSON-able training state (config, history, ...), stored in state.json
            together with ``step`` and the RNG states.
        keep: number of complete checkpoints kept after this one is in place (>= 1).
    Returns:
        The path of the new checkpoint folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    _fsync_file(tmp / "model.safetensors")
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    _fsync_file(tmp / "optimizer.safetensors")
    _write_json(tmp / "optimizer.json", opt_meta)
    save_file({"torch_cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    _fsync_file(tmp / "rng.safetensors")
    py_state = random.getstate()
    payload = {**state, "step": step, "python_random": [py_state[0], list(py_state[1]), py_state[2]]}
    _write_json(tmp / "state.json", payload)
    files = {f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)} for f in _FILES}
    _write_json(tmp / MANIFEST, {"format": 2, "step": step, "files": files})
    _fsync_dir(tmp)

    final = root / name
    old = None
    if final.exists():  # re-saving a step (e.g. after resuming at it): move the old copy aside first
        old = root / f".old-{name}-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for _, path in list_checkpoints(root)[max(keep, 1):]:
        shutil.rmtree(path, ignore_errors=True)
    for p in root.iterdir():  # leftovers of interrupted saves
        if p.name.startswith((".tmp-", ".old-")) and p.is_dir() and not p.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(p, ignore_errors=True)
    return final


def _write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class Checkpoint:
    """A complete checkpoint read from disk (tensors checked to be readable)."""

    path: Path
    step: int
    state: dict
    optimizer_state: dict
    rng_state: torch.Tensor

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Load weights into ``model`` (strict), optimizer state, and torch / Python RNG states."""
        missing, unexpected = load_model(model, str(self.path / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"model: expected a model matching checkpoint {self.path}, received one with "
                f"missing keys {sorted(missing)[:5]} and unexpected keys {sorted(unexpected)[:5]}"
            )
        if optimizer is not None:
            optimizer.load_state_dict(self.optimizer_state)
        torch.set_rng_state(self.rng_state)
        v, s, g = self.state["python_random"]
        random.setstate((v, tuple(s), g))


def verify_checkpoint(path: str | Path) -> None:
    """Check every file of checkpoint folder ``path`` against its manifest (present, size, SHA-256).

    CheckpointError naming the file and what is wrong with it. A checkpoint written before
    manifests existed has its sizes checked against state.json (its content is not checkable).
    """
    path = Path(path)
    if (path / MANIFEST).exists():
        try:
            files = json.loads((path / MANIFEST).read_text())["files"]
            expected = {f: (int(files[f]["bytes"]), str(files[f]["sha256"])) for f in _FILES}
        except (ValueError, KeyError, TypeError) as e:  # damaged manifest: JSON, missing entries, wrong types
            raise CheckpointError(f"{path / MANIFEST}: unreadable manifest ({type(e).__name__}: {e})") from None
    elif (path / "state.json").exists():  # written before manifests: sizes only
        try:
            sizes = json.loads((path / "state.json").read_text())["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path / 'state.json'}: unreadable ({type(e).__name__}: {e})") from None
        expected = {f: (int(n), None) for f, n in sizes.items()}
    else:
        raise CheckpointError(f"{path}: no {MANIFEST}")
    for name, (size, digest) in expected.items():
        f = path / name
        if not f.exists():
            raise CheckpointError(f"{f}: missing")
        if f.stat().st_size != size:
            raise CheckpointError(f"{f}: expected {size} bytes, received {f.stat().st_size} (truncated or extended)")
        if digest is not None and (got := _sha256(f)) != digest:
            raise CheckpointError(f"{f}: expected SHA-256 {digest[:16]}..., received {got[:16]}... (content damaged)")


def _read(path: Path) -> Checkpoint:
    verify_checkpoint(path)
    state = json.loads((path / "state.json").read_text())
    load_file(str(path / "model.safetensors"))  # parses?
    opt = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), json.loads((path / "optimizer.json").read_text()))
    rng = load_file(str(path / "rng.safetensors"))["torch_cpu"]
    return Checkpoint(path=path, step=int(state["step"]), state=state, optimizer_state=opt, rng_state=rng)


def load_latest(root: str | Path) -> Checkpoint | None:
    """The newest checkpoint under ``root`` that verifies and reads back completely; None if there is none.

    Each checkpoint is first checked against its manifest (:func:`verify_checkpoint`); one that fails
    (a file missing, truncated or with damaged bytes anywhere, or one that does not parse) is skipped
    with a warning naming it and the reason, and the next older one is tried. CheckpointError, listing
    every checkpoint and why it was skipped, if checkpoints exist but none is usable (a run should not
    silently restart from step 0 over damaged checkpoints).
    """
    skipped = []
    for _, path in list_checkpoints(root):
        try:
            return _read(path)
        # Any failure to verify or parse means this checkpoint is unusable, whatever the exception type
        # (SafetensorError, UnicodeDecodeError, KeyError from a damaged JSON, ...): skip it, say why.
        except Exception as e:  # noqa: BLE001, PERF203
            why = str(e) if isinstance(e, CheckpointError) else f"{type(e).__name__}: {e}"
            skipped.append(f"{path.name} ({why})")
            warnings.warn(f"checkpoint {path} skipped: {why}; trying an older one", stacklevel=2)
    if skipped:
        raise CheckpointError(f"{root}: expected a checkpoint that verifies, received only damaged ones: "
                              + "; ".join(skipped))
    return None
