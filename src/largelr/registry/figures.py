"""Figure families, one record each (torch-free; read at Snakemake's parse time).

A record says what a family draws and from what; everything else is derived from the records:
the figure files of a study's rule (``workflow/rules/common.smk``), the report's captions and
categories, the ``largelr figures --families`` choices, the report pages' family of a file, and
how the figures job calls each family's drawing function (imported by path only when drawing).

Adding a family: one record here, its drawing function, its caption (``workflow/report/<caption>.rst``).
The drawing function is called with, in order:

- a table family (``inputs`` are study tables, e.g. ``("cells",)``): each table named, then, if
  ``per_pair``, the pair's dataset and model, then the list of paths to write;
- a map family (``inputs`` is one npz source, ``("hilo",)`` or ``("training_maps",)``): the pair's
  npz file, the study, dataset and model, the pair's seed count if ``seeds``, then the paths.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

# What a family can read: the study's tables (aggregate outputs), or one npz file per pair.
TABLE_INPUTS = ("cells", "curves", "dynamics", "mechanism")
NPZ_INPUTS = ("hilo", "training_maps")


@dataclass(frozen=True)
class FigureFamily:
    name: str
    stem: str  # file stem under results/figures/<study>/; "{dataset}-{model}" in it for per-pair families
    inputs: tuple[str, ...]  # TABLE_INPUTS in the drawing function's order, or one of NPZ_INPUTS
    category: str  # the report's category (the paper's figure numbers, then what they show)
    draw: str  # "module:function", imported only when drawing (seaborn, matplotlib)
    caption: str = ""  # workflow/report/<caption>.rst; default: the family's name
    setting: str = ""  # an analysis setting that must be true for the study to draw the family
    seeds: bool = False  # a map family's function takes the pair's seed count

    @property
    def per_pair(self) -> bool:
        return "{" in self.stem

    @property
    def npz(self) -> str | None:
        """The npz source a map family draws one figure per file of; None for a table family."""
        return self.inputs[0] if self.inputs[0] in NPZ_INPUTS else None

    @property
    def caption_file(self) -> str:
        return f"{self.caption or self.name}.rst"

    def file_stem(self, dataset: str = "", model: str = "") -> str:
        return self.stem.format(dataset=dataset, model=model)

    def function(self) -> Callable[..., object]:
        module, name = self.draw.split(":")
        return getattr(importlib.import_module(module), name)


def _family(*args: object, **kwargs: object) -> tuple[str, FigureFamily]:
    family = FigureFamily(*args, **kwargs)  # type: ignore[arg-type]
    return family.name, family


# In the order a study's figures job draws them.
FIGURE_FAMILIES: dict[str, FigureFamily] = dict(
    [
        _family(
            "normalized",
            "{dataset}-{model}",
            ("cells",),
            "Fig. 1, 3-5, 7, 10, 11, 15-18, 22-25 - normalized sweeps",
            "largelr.figures.sweeps:pair_figure",
        ),
        _family(
            "compressibility",
            "{dataset}-{model}.compressibility",
            ("cells",),
            "Fig. 17, 25 - compressibility notions",
            "largelr.figures.sweeps:compressibility_figure",
        ),
        _family(
            "pruning",
            "{dataset}-{model}.pruning",
            ("curves", "cells"),
            "Fig. 20, 21 - pruning curves",
            "largelr.figures.sweeps:pruning_figure",
        ),
        _family(
            "dynamics",
            "{dataset}-{model}.dynamics",
            ("dynamics", "cells"),
            "Fig. 3 (right), 13, 24 - training dynamics",
            "largelr.figures.sweeps:dynamics_figure",
        ),
        _family(
            "mechanism",
            "mechanism",
            ("cells", "mechanism"),
            "Fig. 12, 27 - mechanism (max BC loss ratio)",
            "largelr.figures.sweeps:mechanism_figure",
        ),
        _family(
            "csi_core",
            "csi_core",
            ("cells",),
            "Fig. 26 - class selectivity vs core use",
            "largelr.figures.sweeps:csi_core_figure",
        ),
        _family(
            "training_maps",
            "{dataset}-{model}.training_maps",
            ("training_maps",),
            "Fig. 13 (left) - attribution maps over training",
            "largelr.figures_extra:training_maps_figure",
        ),
        _family(
            "neuron",
            "{dataset}-{model}.neuron",
            ("training_maps",),
            "Fig. 28 - one neuron over training",
            "largelr.figures_extra:neuron_figure",
        ),
        _family(
            "hilo",
            "{dataset}-{model}.hilo",
            ("hilo",),
            "Fig. 8, 29-34 - attribution maps, low vs high lr",
            "largelr.figures.maps:hilo_figure",
            seeds=True,
        ),
        _family(
            "hilo_methods",
            "{dataset}-{model}.hilo_methods",
            ("hilo",),
            "Fig. 14 - IG vs DeepLift maps",
            "largelr.figures_extra:hilo_methods_figure",
            setting="deeplift",
            seeds=True,
        ),
    ]
)

# Report categories of the figures that are not a study's family (drawn by rules of their own).
OTHER_CATEGORIES = {
    "landscape": "Fig. 9 - lr x focal gamma landscapes",
    "interventions": "Fig. 6, 19 - interventions",
    "summary": "Study summaries (trends, Table 1 shape)",
    "datasets": "Datasets (cards)",
}


def figure_files() -> dict[str, str]:
    """Family -> file stem pattern (the former ``largelr.config.FIGURE_FILES``)."""
    return {name: family.stem for name, family in FIGURE_FAMILIES.items()}


def figure_categories() -> dict[str, str]:
    """Family (or other figure kind) -> the report's category."""
    return {**{name: family.category for name, family in FIGURE_FAMILIES.items()}, **OTHER_CATEGORIES}


def figure_captions() -> dict[str, str]:
    """Family -> its caption file's name under workflow/report/ (without .rst)."""
    return {name: family.caption_file[: -len(".rst")] for name, family in FIGURE_FAMILIES.items()}
