"""The training engine of one cell, one module per concern.

- ``loop``: :func:`~largelr.training.loop.train_cell`, the run top to bottom (start here);
- ``optim``: optimizers (``PlainSGD``), the learning-rate schedule, the loss, ASAM;
- ``data``: the seeded, resumable batch order and the splits it draws from;
- ``compute``: bf16 autocast and channels-last (``ComputeFormat``);
- ``history``: per-step statistics in device buffers, reduced in batched passes;
- ``state``: what a checkpoint saves (``TrainState``), the stopping rules, the run's clock, signals;
- ``probes``: attribution shares and the fixed-set BC loss ratio, measured at some steps;
- ``summary``: train.json's summary.

``largelr.train`` trains a cell and writes its files, and re-exports the names used elsewhere.
"""
