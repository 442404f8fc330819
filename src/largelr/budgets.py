"""Step caps checked against training-set sizes before launch.

The paper trains "with a constant LR until 100% accuracy"; a cell stopped by its step cap first is
left out of the tables when ``require_converged`` is on. A cap of ``max_steps`` x ``batch_size``
samples that covers fewer than ``min_epochs`` passes over the training set cannot be expected to
reach that criterion, so :func:`budget_errors` reports such cells when config.yaml is parsed, before
hundreds of GPU-hours produce empty tables. Studies that do not require converged cells (a
fixed-budget protocol, ``require_converged: false``) and schedules that run to their cap
(``target_train_acc`` above 1) are not checked: their cells are complete when the budget is spent.

Training-set sizes are known without reading data: the official splits of the bases, and the
``n_train`` parameter of the synthetic sets. A kind whose size is not known here is not checked.
"""

from __future__ import annotations

from typing import Any

# Training-set sizes of the official splits (CelebA: the 162 770 faces of its train partition;
# Waterbirds: 4 795 of metadata.csv's split 0; ImageNet-1k: 1 281 167).
BASE_TRAIN_SIZES = {
    "mnist": 60000,
    "fashion_mnist": 60000,
    "digits": 1258,
    "cifar10": 50000,
    "cifar100": 50000,
    "celeba": 162770,
    "waterbirds": 4795,
    "imagenet": 1281167,
}
# The base a kind reads its training split from (None: the kind's `base` parameter says).
KIND_BASES = {
    "colored_mnist": None,
    "colored_digits": None,
    "double_mnist": None,
    "double_digits": None,
    "colored_fashion_mnist": None,
    "double_fashion_mnist": None,
    "mnist_cifar": "cifar10",
    "corrupted_cifar10": "cifar10",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "celeba": "celeba",
    "waterbirds": "waterbirds",
    "imagenet": "imagenet",
}


def train_size(kind: str, params: dict[str, Any]) -> int | None:
    """Training samples of a dataset of ``kind`` with its merged ``params``; None where not known."""
    if params.get("n_train") is not None:
        return int(params["n_train"])
    if kind not in KIND_BASES:
        return None
    base = KIND_BASES[kind] or params.get("base")
    return BASE_TRAIN_SIZES.get(base)


def epochs(max_steps: int, batch_size: int, n_train: int) -> float:
    """Passes over the training set a step cap allows."""
    return max_steps * batch_size / n_train


def needs_fit(train: dict[str, Any], require_converged: bool) -> bool:
    """Whether a cell must reach its fit criterion (100% training accuracy or the CE target) to count."""
    # a target of 0 is met at the first evaluation; above 1 the schedule runs to its cap
    return require_converged and (0.0 < train["target_train_acc"] <= 1.0 or train["stop_train_ce"] > 0)


def budget_errors(
    cells: list[tuple[str, str, int, dict[str, Any]]], min_epochs: float, require_converged: bool, where: str
) -> list[str]:
    """One message per (dataset, model, batch size) whose cap is under ``min_epochs`` epochs.

    ``cells``: (dataset name, model, training-set size or None, the cell's full training settings).
    """
    errors, seen = [], set()
    for dataset, model, n_train, train in cells:
        if n_train is None or not needs_fit(train, require_converged):
            continue
        allowed = epochs(train["max_steps"], train["batch_size"], n_train)
        key = (dataset, model, train["max_steps"], train["batch_size"])
        if allowed < min_epochs and key not in seen:
            seen.add(key)
            steps_needed = -(-min_epochs * n_train // train["batch_size"])
            errors.append(
                f"{where}: ({dataset}, {model}) max_steps {train['max_steps']} x batch_size "
                f"{train['batch_size']} is {allowed:.2f} epochs of its {n_train} training samples, under "
                f"min_epochs {min_epochs:g}: its cells cannot be expected to reach the fit criterion and "
                f"require_converged would leave them all out; allowed: max_steps >= {int(steps_needed)}, "
                "or a fixed-budget protocol (analysis.require_converged: false, documented), or a lower "
                "analysis.min_epochs"
            )
    return errors
