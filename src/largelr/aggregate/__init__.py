"""Cells -> tables: one row per cell, the usable LR range, the paper's Tables 1 and 2,
seed statistics, trends, the mechanism correlation and the comparison with the paper.

A cell enters tables and figures only when it is ``included``: it did not diverge, it
converged (was stopped by its fit criterion, not by the step cap) and its value lies in
the usable range of its sweep. The others stay in cells.parquet with ``left_out`` saying
why, and every table's Markdown counts them. Seeds are averaged before any min/max across
knob values, as in the paper. Cells whose test accuracy is within ``NEAR_CHANCE_MARGIN`` (the ``chance_margin`` setting) of chance
are flagged ``near_chance``: their pruning retention is trivially close to 1.

- :mod:`largelr.aggregate.cells`: one row per cell, which cells are included, figure inputs;
- :mod:`largelr.aggregate.paper`: the paper's tables, seed statistics, comparison with the paper;
- :mod:`largelr.aggregate.notes`: cells left out, trends over the knob, study summaries;
- :mod:`largelr.aggregate.write`: the aggregation jobs (a study's tables, Tables 1 and 2);
- :mod:`largelr.aggregate.study_tables`: the study tables' writers (largelr.registry.tables).
"""

from largelr.aggregate.cells import (ACCURACY_DROP, BC_RATIO_READINGS, BOOKKEEPING, NEAR_CHANCE_MARGIN, DYNAMICS_POINTS,
                                     LEFT_OUT, PAIR_KEYS, USABLE_RANGE_READINGS, accuracy_floor, build_cells,
                                     cell_max_bc_loss_ratio, checked_record, dynamics, mark_included,
                                     mark_usable_range, max_bc_loss_ratio, prune_curves, read_cell,
                                     with_chosen_bc_ratio)
from largelr.aggregate.paper import (CI_MIN_SEEDS, CONFIDENCE, NOT_METRICS, PAPER_READINGS, PAPER_TABLE1,
                                     TABLE1_VARIABLES, TABLE2_VARIABLES, compare_shape,
                                     compare_with_paper, format_cell, markdown, mechanism_table, metric_columns,
                                     minmax_table, other_csi_column, paper_shape, reading_fit_note, seed_means,
                                     seed_statistics, table1, table2, with_other_csi_reading)
from largelr.aggregate.notes import (TREND_MIN_VALUES, TREND_RHO, TREND_RULE, TREND_VALUES, TREND_VARIABLES,
                                     cell_counts, counts_text, left_out_note, spearman, summary_html, summary_text,
                                     trend_arrow, trend_row, trend_summary, trend_table, trend_text)
from largelr.aggregate.write import (aggregate_study, write_table, write_table1, write_table2)
from largelr.aggregate.study_tables import (write_mechanism, write_minmax, write_stats, write_trends)

__all__ = [
    "ACCURACY_DROP", "BC_RATIO_READINGS", "BOOKKEEPING", "NEAR_CHANCE_MARGIN", "CI_MIN_SEEDS", "CONFIDENCE",
    "DYNAMICS_POINTS", "LEFT_OUT", "NOT_METRICS", "PAIR_KEYS", "PAPER_READINGS", "PAPER_TABLE1", "TABLE1_VARIABLES",
    "TABLE2_VARIABLES", "TREND_MIN_VALUES", "TREND_RHO", "TREND_RULE", "TREND_VALUES", "TREND_VARIABLES",
    "USABLE_RANGE_READINGS", "accuracy_floor", "aggregate_study", "build_cells", "cell_counts",
    "cell_max_bc_loss_ratio", "checked_record", "compare_shape", "compare_with_paper", "counts_text", "dynamics",
    "format_cell", "left_out_note", "mark_included", "mark_usable_range", "markdown", "max_bc_loss_ratio",
    "mechanism_table", "metric_columns", "minmax_table", "other_csi_column", "paper_shape", "prune_curves",
    "read_cell", "reading_fit_note", "seed_means", "seed_statistics", "spearman", "summary_html", "summary_text",
    "table1", "table2", "trend_arrow", "trend_row", "trend_summary", "trend_table", "trend_text",
    "with_chosen_bc_ratio", "with_other_csi_reading", "write_mechanism", "write_minmax", "write_stats",
    "write_table", "write_table1", "write_table2", "write_trends",
]
