"""The cell's keys and the files the train step writes, torch-free (largelr.io and largelr.config read them)."""

CELL_KEYS = ["study", "dataset", "model", "knob", "value", "seed"]
PROVENANCE_KEYS = ("largelr_version", "git_revision", "torch_version", "device")
# The files the train step writes into a cell's folder (re-exported by largelr.config with the
# analysis tables as CELL_FILES); the summary is written last and seals the others.
TRAIN_FILES = {
    "model": "model.pt",
    "history": "history.parquet",
    "predictions": "predictions.parquet",
    "summary": "train.json",
}
SEALED_FILES = ("model", "history", "predictions")
