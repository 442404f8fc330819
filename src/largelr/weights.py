"""Where pretrained weights belong, checked from file existence alone (torch-free: Snakemake's parse
reads it): the torch hub cache of torchvision's segmenters, and the parse-time notice naming the
outputs that will lack a background share because a segmenter's file is absent."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from largelr.registry.analyses import SEGMENTERS, TORCHVISION_SEGMENTERS

# The COCO_WITH_VOC_LABELS_V1 weight URLs of torchvision's segmenters (tests check them against
# torchvision), so that where their files belong is known without importing torchvision.
TORCHVISION_WEIGHT_URLS = {
    "deeplabv3_mobilenet_v3_large": "https://download.pytorch.org/models/deeplabv3_mobilenet_v3_large-fc3c493d.pth",
    "deeplabv3_resnet50": "https://download.pytorch.org/models/deeplabv3_resnet50_coco-cd0a2569.pth",
}


def hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub,
    else ~/.cache/torch/hub (a test compares it with torch's own answer)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch"
    )
    return Path(os.path.expanduser(torch_home)) / "hub"


def torchvision_weights_path(name: str = "deeplabv3_resnet50") -> Path:
    """Where torch hub keeps the COCO_WITH_VOC_LABELS_V1 weights of torchvision segmenter ``name``."""
    if name not in TORCHVISION_WEIGHT_URLS:
        raise ValueError(f"segmenter {name!r} is not known; allowed: {list(TORCHVISION_SEGMENTERS)}")
    return hub_dir() / "checkpoints" / Path(urlparse(TORCHVISION_WEIGHT_URLS[name]).path).name


def how_to_get_torchvision_weights(name: str) -> str:
    """The sentence saying how to put segmenter ``name``'s weights file where it is expected."""
    return (
        f'On a machine with internet run `python -c "import torchvision; torchvision.models.segmentation.{name}'
        f"(weights='COCO_WITH_VOC_LABELS_V1')\"` (or download {TORCHVISION_WEIGHT_URLS[name]}) and copy the file "
        f"to {torchvision_weights_path(name)}, keeping its name (TORCH_HOME moves the hub directory)."
    )


def segmenter_available(name: str, checkpoint: str | Path = "") -> bool:
    """Whether segmenter ``name``'s weights are here (file existence only; nothing is loaded)."""
    if name == "smp":
        return bool(checkpoint) and Path(checkpoint).is_file()
    return torchvision_weights_path(name).is_file()


# --- parse time: which outputs will lack a background -------------------------------------------


def _auto_wants(has_oracle: bool, baseline: str, image: bool, auto_segmenter: str) -> str:
    """What ``background: auto`` asks for on a dataset, before looking for a segmenter's file."""
    if not image:
        return "none"
    if has_oracle and baseline != "zero":
        return "oracle"
    return auto_segmenter


def _missing_segmenters(
    studies_settings: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[tuple[str, str], dict[str, list[str]]], dict[tuple[str, str], list[str]]]:
    """((segmenter, checkpoint) -> {study: datasets} that ``auto`` leaves without a background,
    (segmenter, checkpoint) -> studies that name a segmenter explicitly) for absent weight files."""
    lacking: dict[tuple[str, str], dict[str, list[str]]] = {}
    failing: dict[tuple[str, str], list[str]] = {}
    for study, entry in studies_settings.items():
        settings, datasets = entry["analysis"], entry["datasets"]
        background, checkpoint = settings["background"], settings["segmenter_checkpoint"]
        if background in SEGMENTERS:
            if not segmenter_available(background, checkpoint):
                failing.setdefault((background, checkpoint), []).append(study)
            continue
        if background != "auto":
            continue
        for name, facts in datasets.items():
            wanted = _auto_wants(
                facts.get("oracle_background", False),
                settings["ig_baseline"],
                facts.get("image", True),
                settings["auto_segmenter"],
            )
            if wanted in SEGMENTERS and not segmenter_available(wanted, checkpoint):
                lacking.setdefault((wanted, checkpoint), {}).setdefault(study, []).append(name)
    return lacking, failing


def _where_and_how(segmenter: str, checkpoint: str) -> str:
    if segmenter in TORCHVISION_SEGMENTERS:
        return (
            f"{segmenter} weights are not at {torchvision_weights_path(segmenter)}. "
            f"{how_to_get_torchvision_weights(segmenter)}"
        )
    return (
        f"the smp segmenter checkpoint {checkpoint or '(segmenter_checkpoint is not set)'} is not there. Set "
        "segmenter_checkpoint to a file written by largelr.analyses.segment.save_smp_checkpoint."
    )


def background_notice(studies_settings: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The one message, for parse time, naming the outputs that will lack a background share because
    a segmenter's weights file is absent, and which file to put where; None when nothing lacks it.

    ``studies_settings`` maps each study to ``{"analysis": its analysis settings (every key of
    ANALYSIS_KEYS), "datasets": {dataset name: {"oracle_background": bool, "image": bool}}}``
    (a dataset's traits; "image" is False for flat inputs such as parity and defaults to True).
    Cheap: file existence only, nothing is loaded.
    """
    lacking, failing = _missing_segmenters(studies_settings)
    if not lacking and not failing:
        return None
    lines = []
    for (segmenter, checkpoint), studies in lacking.items():
        where = "; ".join(f"study {study} ({', '.join(names)})" for study, names in studies.items())
        lines.append(
            f"background_share and background_iou will be NaN (background: auto) for {where}: "
            f"{_where_and_how(segmenter, checkpoint)}"
        )
    for (segmenter, checkpoint), studies in failing.items():
        lines.append(
            f"analyze jobs of {', '.join(f'study {study}' for study in studies)} will stop (background: "
            f"{segmenter}): {_where_and_how(segmenter, checkpoint)}"
        )
    lines.append(
        "Cells analysed before the file is there keep NaN: rerun their analyses once it is "
        "(snakemake <target> --forcerun analyze), or set analysis background: none to silence this."
    )
    return "\n".join(lines)
