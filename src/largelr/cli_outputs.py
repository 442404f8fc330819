"""``largelr`` subcommands that turn cells into outputs: aggregate, paper-tables, summary, figures,
intervention-figure, landscape-figure (argument parsing only; largelr.cli assembles the parser).

The figure families and the study tables come from their records (largelr.registry), so a new
family is a new ``--families`` choice and a new table a new ``--out-<name>`` option by itself.
"""

from __future__ import annotations

import argparse

from largelr.registry.figures import FIGURE_FAMILIES  # the families' names; not largelr.figures (seaborn: ~2 s)
from largelr.registry.tables import STUDY_FILES, STUDY_TABLES

# What each aggregate output besides the study tables holds, for --help.
STUDY_FILES_HELP = {"cells": "one row per cell", "curves": "all pruning curves", "dynamics": "all histories, thinned"}


def cmd_aggregate(args: argparse.Namespace) -> None:
    from largelr.aggregate import aggregate_study
    from largelr.config import AnalysisSettings

    settings = AnalysisSettings(args.settings, where="analysis")
    tables = {name: getattr(args, f"out_{name}") for name in STUDY_TABLES if getattr(args, f"out_{name}")}
    aggregate_study(args.train_json, args.out_cells, args.out_curves, args.out_dynamics, tables, dict(settings))


def cmd_paper_tables(args: argparse.Namespace) -> None:
    from largelr.aggregate import write_table1, write_table2

    if args.out_table1:
        write_table1(args.table1_cells, args.out_table1, args.out_compare)
    if args.out_table2:
        write_table2(args.table2_cells, args.table1_cells, args.out_table2)


def write_summary_html(cells: list[str], out: str) -> None:
    import pandas as pd

    from largelr.aggregate import summary_html
    from largelr.io import atomic_path
    from largelr.report_pages import page

    with atomic_path(out) as tmp:
        tmp.write_text(page("".join(summary_html(pd.read_parquet(path)) for path in cells), "largelr summary"))


def cmd_summary(args: argparse.Namespace) -> None:
    import pandas as pd

    from largelr.aggregate import summary_text

    if args.html:
        write_summary_html(args.cells, args.html)
        return
    for path in args.cells:
        print(summary_text(pd.read_parquet(path)))
        print()
    if args.where:
        print("\n".join(args.where))


def cmd_figures(args: argparse.Namespace) -> None:
    from largelr.figures import draw_study_figures

    draw_study_figures(
        args.families,
        args.out_dir,
        cells=args.cells,
        curves=args.curves,
        dynamics=args.dynamics,
        mechanism=args.mechanism,
        hilo=args.hilo,
        formats=args.formats,
        workers=args.workers,
        training_maps=args.training_maps,
    )
    if args.summary_html:  # the study's summary page, in the same process
        write_summary_html([args.cells], args.summary_html)
    if args.caption_dir:  # one page per figure, its caption under it, for the report
        from largelr.report_pages import write_figure_pages

        write_figure_pages(args.out_dir, args.families, args.caption_dir)


def cmd_intervention_figure(args: argparse.Namespace) -> None:
    from largelr.figures import draw_intervention_figure

    draw_intervention_figure(args.cells, args.dataset, args.model, args.out)


def cmd_landscape_figure(args: argparse.Namespace) -> None:
    from largelr.figures_extra import draw_landscape_figure

    draw_landscape_figure(
        args.cells, args.rows, args.dataset, args.model, args.spurious, args.name, args.axis, args.out
    )


def add_aggregate_step(steps, json_object) -> None:
    aggregate = steps.add_parser("aggregate", help="one study's cells -> cells.parquet, its tables and figure inputs")
    aggregate.set_defaults(func=cmd_aggregate)
    aggregate.add_argument("--train-json", nargs="+", required=True, help="train.json of every cell of the study")
    for name in STUDY_FILES:
        aggregate.add_argument(f"--out-{name}", required=True, help=STUDY_FILES_HELP.get(name, name))
    for name, table in STUDY_TABLES.items():  # a table not named is not written
        aggregate.add_argument(f"--out-{name}", help=f"{(table.what or name).replace('%', '%%')} (Markdown beside)")
    aggregate.add_argument(
        "--settings",
        type=json_object,
        default={},
        help="the study's analysis settings JSON (require_converged, usable_range_drop, chance_margin)",
    )


def add_figures_step(steps) -> None:
    figures = steps.add_parser("figures", help="every figure of one study, for the families named")
    figures.set_defaults(func=cmd_figures)
    figures.add_argument(
        "--families", nargs="+", choices=list(FIGURE_FAMILIES), required=True, help="figure families to draw"
    )
    figures.add_argument("--out-dir", required=True, help="the study's figure folder")
    figures.add_argument("--formats", nargs="+", default=["png", "pdf"], help="file formats (default: png pdf)")
    figures.add_argument("--cells", required=True, help="the study's cells.parquet")
    figures.add_argument("--curves", help="the study's prune_curves.parquet (pruning)")
    figures.add_argument("--dynamics", help="the study's dynamics.parquet (dynamics)")
    figures.add_argument("--mechanism", help="the study's mechanism table (mechanism)")
    figures.add_argument("--hilo", nargs="*", default=[], help="hi/lo attribution npz files (hilo)")
    figures.add_argument(
        "--training-maps", nargs="*", default=[], help="maps-over-training npz files (training_maps, neuron)"
    )
    figures.add_argument("--workers", type=int, default=1, help="processes drawing figures at once")
    figures.add_argument("--summary-html", help="also write the study's summary page (as `summary --html`)")
    figures.add_argument(
        "--caption-dir",
        help="also write <figure>.html beside each PNG, with the caption "
        "<family>.rst of this folder under it (for the report)",
    )


def add_output_steps(steps, json_object) -> None:
    add_aggregate_step(steps, json_object)

    paper = steps.add_parser("paper-tables", help="Tables 1 and 2 across studies, and the comparison with the paper")
    paper.set_defaults(func=cmd_paper_tables)
    paper.add_argument("--table1-cells", nargs="*", default=[], help="cells.parquet of the Table 1 studies")
    paper.add_argument("--table2-cells", nargs="*", default=[], help="cells.parquet of the intervention studies")
    paper.add_argument("--out-table1", help="Table 1 (Markdown beside); with --out-compare")
    paper.add_argument("--out-compare", help="the comparison with the paper's Table 1 ranges (Markdown beside)")
    paper.add_argument("--out-table2", help="Table 2 (Markdown beside)")

    summary = steps.add_parser("summary", help="one screen per study: trends over the knob, cells left out")
    summary.set_defaults(func=cmd_summary)
    summary.add_argument("--cells", nargs="+", required=True, help="cells.parquet of the studies")
    summary.add_argument("--where", nargs="*", default=[], help="lines to print after, e.g. where outputs are")
    summary.add_argument("--html", help="write the summaries as an HTML page for the report instead of printing them")

    add_figures_step(steps)

    interventions = steps.add_parser("intervention-figure", help="Fig. 6: one (dataset, model)'s interventions")
    interventions.set_defaults(func=cmd_intervention_figure)
    interventions.add_argument("--cells", nargs="+", required=True, help="cells.parquet of the studies to compare")
    interventions.add_argument("--dataset", required=True, help="the dataset of the pair to draw")
    interventions.add_argument("--model", required=True, help="the model of the pair to draw")
    interventions.add_argument("--out", nargs="+", required=True, help="output files; format from suffix")


def add_landscape_step(steps) -> None:
    from largelr.landscape import SPURIOUS_CHOICES

    landscape = steps.add_parser("landscape-figure", help="Fig. 9: one landscape's heatmaps for one (dataset, model)")
    landscape.set_defaults(func=cmd_landscape_figure)
    landscape.add_argument("--cells", nargs="+", required=True, help="cells.parquet of the landscape's studies")
    landscape.add_argument("--rows", nargs="+", required=True, help="study=axis value, one per study")
    landscape.add_argument("--axis", default="lr", help="the training setting of the rows")
    landscape.add_argument(
        "--spurious",
        default="auto",
        choices=SPURIOUS_CHOICES,
        help="the spurious-use measure of the third heatmap (auto: the IG share on the spurious "
        "region where the dataset marks one, else BSI)",
    )
    landscape.add_argument("--name", default="", help="the landscape's name, for the title")
    landscape.add_argument("--dataset", required=True, help="the dataset of the pair to draw")
    landscape.add_argument("--model", required=True, help="the model of the pair to draw")
    landscape.add_argument("--out", nargs="+", required=True, help="output files; format from suffix")
