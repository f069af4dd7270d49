"""Training: ``train(model, task, config)`` with AdamW, warm-up + cosine, z-loss, checkpoints and resume.

    from attnlab.train import TrainConfig, train, evaluate
    result = train(model, task, TrainConfig(steps=500, lr=3e-3), out_dir="runs/x")
    result.final_eval            # {"loss": ..., <task metric>: ...}
    train(model, task, config, out_dir="runs/x", resume=True)   # continue exactly

Modules: ``config`` (TrainConfig), ``optim`` (AdamW groups, weight-decay modes),
``losses`` (z-loss), ``checkpoint`` (atomic safetensors checkpoints), ``metrics``
(JSONL/CSV, read_jsonl), ``evaluate`` (evaluate), ``trainer`` (Trainer: setup / step / finish of one
run, TrainResult), ``loop`` (train: the loop over a Trainer's phases), ``run_lock`` (one run per
folder), ``signals`` (SIGINT / SIGTERM stop at a step boundary), ``throughput`` (image-classifier
step timing shared by benchmarks and reproductions), ``saved_model`` (a model and the record that rebuilds
its architecture: save_model / load_model from a saved, checkpoint or run folder).
"""
from attnlab.train.checkpoint import Checkpoint, CheckpointError, list_checkpoints, load_latest, save_checkpoint
from attnlab.train.config import TrainConfig
from attnlab.train.evaluate import evaluate
from attnlab.train.losses import log_partition, z_loss
from attnlab.train.metrics import read_jsonl
from attnlab.train.loop import Callback, train
from attnlab.train.optim import build_optimizer, decay_split
from attnlab.train.run_lock import RunLockedError
from attnlab.train.saved_model import load_model, model_record, save_model
from attnlab.train.trainer import Trainer, TrainResult

__all__ = [
    "TrainConfig", "TrainResult", "Trainer", "train", "evaluate", "Callback",
    "build_optimizer", "decay_split", "z_loss", "log_partition",
    "save_checkpoint", "load_latest", "list_checkpoints", "Checkpoint", "CheckpointError", "RunLockedError",
    "read_jsonl",
    "save_model", "load_model", "model_record",
]
