"""The paper's figures, one seaborn style, one function per family (largelr.registry.figures
lists the families): normalized multi-variable plots, the intervention grid (Fig. 6), pruning
curves (Figs 20/21), max BC loss ratio vs accuracy (Fig. 12), training dynamics (Fig. 13) and
low/high learning-rate attribution maps (Fig. 8).

- :mod:`largelr.figures.base`: style, normalization per variable, knob axis, titles, saving;
- :mod:`largelr.figures.sweeps`: the families drawn from the study's tables;
- :mod:`largelr.figures.maps`: the low/high attribution maps;
- :mod:`largelr.figures.draw`: one job draws a study's figures (and the intervention grid).

Every figure names its study and seed count, and is written to every path given (format from the
suffix: .png, .pdf).
"""

from largelr.figures.base import (
    COMPRESSIBILITY_VARIABLES,
    DPI,
    FIGURE_VARIABLES,
    INTERVENTION_VARIABLES,
    PRUNING_METHODS,
    STYLE,
    finish_grid,
    knob_axis,
    knob_x,
    left_out_text,
    normalize_per_variable,
    normalized_lines,
    pair_title,
    placeholder_figure,
    save_figure,
    select_pair,
    to_long,
    usable_rows,
    use_style,
    value_labels,
)
from largelr.figures.draw import (
    draw_intervention_figure,
    draw_study_figures,
    figure_paths,
    run_tasks,
    study_figure_tasks,
)
from largelr.figures.maps import attribution_heat, displayable, hilo_figure
from largelr.figures.sweeps import (
    DYNAMICS_PANELS,
    SMOOTHING_FRACTION,
    compressibility_figure,
    csi_core_figure,
    dynamics_figure,
    intervention_grid,
    mechanism_figure,
    normalized_figure,
    normalized_plot,
    pair_figure,
    pruning_figure,
    smoothed,
)

__all__ = [
    "COMPRESSIBILITY_VARIABLES",
    "DPI",
    "DYNAMICS_PANELS",
    "FIGURE_VARIABLES",
    "INTERVENTION_VARIABLES",
    "PRUNING_METHODS",
    "SMOOTHING_FRACTION",
    "STYLE",
    "attribution_heat",
    "compressibility_figure",
    "csi_core_figure",
    "displayable",
    "draw_intervention_figure",
    "draw_study_figures",
    "dynamics_figure",
    "figure_paths",
    "finish_grid",
    "hilo_figure",
    "intervention_grid",
    "knob_axis",
    "knob_x",
    "left_out_text",
    "mechanism_figure",
    "normalize_per_variable",
    "normalized_figure",
    "normalized_lines",
    "normalized_plot",
    "pair_figure",
    "pair_title",
    "placeholder_figure",
    "pruning_figure",
    "run_tasks",
    "save_figure",
    "select_pair",
    "smoothed",
    "study_figure_tasks",
    "to_long",
    "usable_rows",
    "use_style",
    "value_labels",
]
