"""Train one cell and write its files: the entry point of ``largelr train``.

The training engine lives in :mod:`largelr.training` (start at ``largelr.training.loop``); its
names used by the rest of the package, the tests and the benchmarks are importable from here.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from largelr.config import TrainSettings
from largelr.evaluate import Split, predictions_and_losses
from largelr.training.compute import ComputeFormat
from largelr.training.data import BatchOrder
from largelr.training.history import HISTORY_COLUMNS, History
from largelr.training.loop import Observer, train_cell
from largelr.training.optim import PlainSGD, focal_loss, lr_factor, training_loss
from largelr.training.probes import ATTRIBUTION_SAMPLES, bc_loss_ratio
from largelr.training.state import Preempted, RunClock, Stopping, TrainState
from largelr.training.summary import converged

__all__ = [
    "ATTRIBUTION_SAMPLES",
    "HISTORY_COLUMNS",
    "BatchOrder",
    "ComputeFormat",
    "History",
    "Observer",
    "PlainSGD",
    "Preempted",
    "RunClock",
    "Stopping",
    "TrainState",
    "bc_loss_ratio",
    "converged",
    "focal_loss",
    "lr_factor",
    "test_predictions",
    "train_and_save",
    "train_cell",
    "training_loss",
]


def test_predictions(
    model: nn.Module, dataset: dict[str, Any], spec: dict[str, Any], device: torch.device, diverged: bool
) -> pd.DataFrame:
    """predictions.parquet: per test sample its index, y, b, group, predicted class and true-class
    probability, so a new group metric needs no retraining. A diverged cell has no predictions
    (pred -1, p_true NaN)."""
    test = Split(dataset, "test", device)
    frame = pd.DataFrame(
        {
            "index": range(len(test)),
            "y": test.y.cpu().numpy(),
            "b": test.b.cpu().numpy(),
            "group": (test.y * dataset["num_bias"] + test.b).cpu().numpy(),
        }
    )
    if diverged:
        return frame.assign(pred=-1, p_true=math.nan)
    compute = ComputeFormat(model, spec["model"], TrainSettings(spec["train"]), device)
    pred, _, p_true = predictions_and_losses(model, test, compute.reported, compute.prepare)
    return frame.assign(pred=pred.cpu().numpy(), p_true=p_true.double().cpu().numpy())


def train_and_save(
    spec: dict[str, Any],
    data_path: str | Path,
    out_dir: Path,
    device: torch.device,
    checkpoint_every: int = 1000,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> None:
    """Train one cell and write its files (largelr.config.TRAIN_FILES) into ``out_dir``, train.json last.

    The resume checkpoint lives beside the declared outputs, so a preempted job resumes from it;
    it is removed once the cell's files exist.
    """
    from largelr.config import CELL_KEYS, TRAIN_FILES
    from largelr.datasets import load_dataset
    from largelr.io import provenance, with_cell_keys, write_cell_record, write_parquet
    from largelr.models import save_checkpoint

    dataset = load_dataset(data_path)
    log(
        f"training {spec['study']}/{spec['dataset']}/{spec['model']} {spec['knob']}={spec['value']} "
        f"seed={spec['seed']} on {device}{placement()} at {timestamp()}"
    )
    checkpoint = out_dir / "checkpoint.pt"
    model, history, summary = train_cell(
        spec, dataset, device, log=log, checkpoint=checkpoint, checkpoint_every=checkpoint_every
    )
    cell = {key: spec[key] for key in CELL_KEYS}
    save_checkpoint(model, summary["model_spec"], out_dir / TRAIN_FILES["model"])
    write_parquet(with_cell_keys(history, cell, device), out_dir / TRAIN_FILES["history"])
    predictions = test_predictions(model, dataset, spec, device, summary["diverged"])
    write_parquet(with_cell_keys(predictions, cell, device), out_dir / TRAIN_FILES["predictions"])
    # train.json last: its presence marks the cell as trained.
    settings = dict(TrainSettings(spec["train"]))  # the spec's explicit settings with every default filled in
    write_cell_record(
        {"cell": cell, "spec": spec, "settings": settings, "summary": summary, "provenance": provenance(device)},
        out_dir,
    )
    checkpoint.unlink(missing_ok=True)
    reason = f" ({summary['diverged_reason']} at step {summary['diverged_step']})" if summary["diverged"] else ""
    log(
        f"done: {summary['stopped_by']}{reason} after {summary['steps']} steps, "
        f"test acc {summary.get('test_acc', math.nan):.4f} at {timestamp()}"
    )


def timestamp() -> str:
    """Local time to the millisecond, for the start and end lines of a cell's log."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def placement() -> str:
    """Where this process runs, from the scheduler's environment: its Slurm job and the GPUs it may see."""
    parts = [f"slurm job {os.environ['SLURM_JOB_ID']}"] if os.environ.get("SLURM_JOB_ID") else []
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        parts.append(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}")
    return f" ({', '.join(parts)})" if parts else ""
