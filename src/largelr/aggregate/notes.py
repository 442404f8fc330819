"""Notes and trends: counts of the cells left out (and why), the trend of each variable over the knob,
and each study's summary (text for the terminal, HTML for the report).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

from largelr.aggregate.cells import LEFT_OUT, PAIR_KEYS
from largelr.aggregate.paper import paper_shape, table1


def cell_counts(cells: pd.DataFrame) -> dict[str, int]:
    """How many cells are converged and included, included though not converged (``require_converged:
    false``), and left out as diverged, not converged or past the usable range; each cell counted once."""
    converged = cells["converged"].fillna(False).astype(bool) if "converged" in cells else pd.Series(True, cells.index)
    included = cells["included"].astype(bool)
    return {
        "converged": int((included & converged).sum()),
        "unconverged_kept": int((included & ~converged).sum()),
        **{key: int((cells["left_out"] == reason).sum()) for key, reason in LEFT_OUT.items()},
    }


def counts_text(counts: dict[str, int]) -> str:
    """The non-zero counts of :func:`cell_counts` as words."""
    words = {
        "converged": "converged and included",
        "unconverged_kept": "included though not converged (require_converged: false)",
        "diverged": "left out: diverged",
        "not_converged": "left out: not converged (stopped at the step cap)",
        "past_range": "left out: past the usable range",
    }
    return ", ".join(f"{counts[key]} {text}" for key, text in words.items() if counts[key])


def left_out_note(cells: pd.DataFrame) -> str:
    """The cells' fate, counted apart: converged and included, included though not converged, diverged,
    not converged and left out, past the usable range; then one Markdown line per (dataset, model) with
    cells left out, kept unconverged or near chance. "All ... converged" only when every cell did."""
    counts = cell_counts(cells)
    if counts["converged"] == len(cells) and not ("near_chance" in cells and cells["near_chance"].any()):
        return f"All {len(cells)} cells included (none diverged, all converged, all in the usable range)."
    lines = []
    for (dataset, model), pair in cells.groupby(["dataset", "model"], sort=True):
        left = [f"{count} {reason}" for reason, count in pair["left_out"].value_counts().sort_index().items() if reason]
        parts = [f"left out: {', '.join(left)}"] if left else []
        if unconverged := cell_counts(pair)["unconverged_kept"]:
            parts.append(f"{unconverged} included though not converged")
        if "near_chance" in pair and (near := int((pair["near_chance"] & pair["included"]).sum())):
            parts.append(f"{near} included near chance (retention trivially ≈ 1)")
        if parts:
            lines.append(f"- {dataset} × {model}: {len(pair)} cells; {'; '.join(parts)}")
    return (
        f"{len(cells)} cells: {counts_text(counts)}. Per pair (cells left out stay in cells.parquet with "
        "`left_out`):\n" + "\n".join(lines)
    )


# The Table 1 variables and the direction the paper reports as the learning rate grows.
TREND_VARIABLES = {
    "test_acc": "↑",
    "test_worst_group_acc": "↑",
    "prunability": "↑",
    "compressibility": "↑",
    "csi": "↑",
    "class_sep": "↑",
}


# When a trend earns an arrow (↑/↓; "~" otherwise, "?" when no rho can be computed). The rho of the
# seed means is computed over at least TREND_MIN_VALUES knob values; it must reach TREND_RHO in size,
# and hold on TREND_VALUES values or more, or else in every seed's own rho (at least two seeds, all of
# the same sign). With three values a single rank swap gives rho = 0.5: no arrow.
TREND_MIN_VALUES = 3

TREND_RHO = 0.8

TREND_VALUES = 4

TREND_RULE = (
    f"↑/↓ when |rho| >= {TREND_RHO} on >= {TREND_VALUES} values, or on {TREND_MIN_VALUES} values with "
    "every seed's own rho of that sign; ~ otherwise; k/n seeds: seeds whose own rho has the sign of the means'"
)


def spearman(series: pd.Series) -> float:
    """Spearman rho of ``series`` (indexed by knob value) against its index; NaN on too few values or a constant."""
    series = series.dropna()
    if len(series) < TREND_MIN_VALUES or series.nunique() < 2:
        return np.nan
    return float(scipy.stats.spearmanr(series.index, series.to_numpy())[0])


def trend_arrow(rho: float, n_values: int, seed_rhos: list[float]) -> str:
    """The arrow the rho of the seed means earns under the rule above (TREND_RULE)."""
    if not np.isfinite(rho):
        return "?"
    agreeing = len(seed_rhos) >= 2 and all(np.sign(r) == np.sign(rho) for r in seed_rhos)
    # rho of ranks is a ratio of whole numbers: 0.8 may come out an ulp below it
    if abs(rho) < TREND_RHO - 1e-9 or not (n_values >= TREND_VALUES or agreeing):
        return "~"
    return "↑" if rho > 0 else "↓"


def trend_row(usable: pd.DataFrame, means: pd.DataFrame, variable: str) -> dict:
    """One variable's trend over the knob: rho of the seed means, every seed's own rho, the arrow."""
    series = means[variable].dropna()
    rho = spearman(series)
    # every seed with enough values has its own rho (NaN when constant over the knob: it does not agree)
    seed_rhos = [
        spearman(seed.set_index("value")[variable])
        for _, seed in usable.groupby("seed")
        if seed[variable].count() >= TREND_MIN_VALUES
    ]
    agree = sum(np.sign(r) == np.sign(rho) for r in seed_rhos) if np.isfinite(rho) else 0
    return {
        "variable": variable,
        "n_values": len(series),
        "spearman_rho": rho,
        "trend": trend_arrow(rho, len(series), seed_rhos),
        "seeds": len(seed_rhos),
        "seeds_agreeing": int(agree),
        "min": series.min(),
        "max": series.max(),
    }


def trend_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (study, dataset, model, knob) and variable: Spearman rho of the seed means against the
    knob value over the included cells, how many seeds' own rho share its sign, the arrow they earn
    (TREND_RULE), min and max of the seed means, the paper's direction (lr sweeps) and how many
    cells were left out."""
    rows = []
    for keys, pair in cells.groupby(PAIR_KEYS, sort=True):
        usable = pair[pair["included"]]
        present = [v for v in TREND_VARIABLES if v in usable and usable[v].notna().any()]
        means = usable.groupby("value")[present].mean()
        for variable in present:
            rows.append(
                dict(zip(PAIR_KEYS, keys))
                | trend_row(usable, means, variable)
                | {
                    "paper": TREND_VARIABLES[variable] if keys[3] == "lr" else "",
                    "cells": len(pair),
                    "left_out": int((~pair["included"]).sum()),
                }
            )
    columns = PAIR_KEYS + [
        "variable",
        "n_values",
        "spearman_rho",
        "trend",
        "seeds",
        "seeds_agreeing",
        "paper",
        "min",
        "max",
        "cells",
        "left_out",
    ]
    return pd.DataFrame(rows, columns=columns).astype(
        {"n_values": "int64", "seeds": "int64", "seeds_agreeing": "int64", "cells": "int64", "left_out": "int64"}
    )


def trend_text(arrow: str, rho: float, seeds: int, agreeing: int) -> str:
    """'↑ +0.94 (3/3 seeds ↑)': the arrow, the rho of the seed means, the seeds whose own rho agrees."""
    if not np.isfinite(rho):
        return arrow
    agreement = f" ({agreeing}/{seeds} seeds {'↑' if rho > 0 else '↓'})" if seeds and rho != 0 else ""
    return f"{arrow} {rho:+.2f}{agreement}"


def trend_summary(trends: pd.DataFrame) -> pd.DataFrame:
    """One row per pair, one column per variable: 'arrow rho (k/n seeds)', for a one-screen view."""
    text = trends.assign(
        shown=[
            trend_text(*row)
            for row in zip(trends["trend"], trends["spearman_rho"], trends["seeds"], trends["seeds_agreeing"])
        ]
    )
    wide = text.pivot_table(
        index=PAIR_KEYS + ["cells", "left_out"], columns="variable", values="shown", aggfunc="first", sort=False
    )
    order = [v for v in TREND_VARIABLES if v in wide.columns]
    wide = wide.reindex(columns=order).reset_index()
    wide.columns.name = None
    return wide


def summary_text(cells: pd.DataFrame) -> str:
    """One screen per study: every pair's trend of each variable over the knob (arrow and Spearman
    rho of the seed means; the paper's direction for lr sweeps), and the cells left out and why."""
    trends = trend_table(cells)
    shown = trend_summary(trends).drop(columns=["study"])
    paper = {v: d for v, d in TREND_VARIABLES.items() if v in shown.columns}
    lines = [
        f"Study {cells['study'].iloc[0]}: trend of each variable over {cells['knob'].iloc[0]} "
        f"(Spearman rho of seed means over included cells; {TREND_RULE})"
    ]
    if (cells["knob"] == "lr").all():
        lines.append("the paper: " + ", ".join(f"{v} {d}" for v, d in paper.items()))
    lines += ["", shown.to_string(index=False), "", left_out_note(cells)]
    return "\n".join(lines)


def summary_html(cells: pd.DataFrame) -> str:
    """The study's summary for the HTML report (a fragment; largelr.report_pages styles it): the trend
    of every variable as a table with coloured arrows, the rule, the cells left out, then its
    Table-1-shaped min/max table."""
    import html

    from largelr.report_pages import trend_cells_html

    study, knob = html.escape(str(cells["study"].iloc[0])), html.escape(str(cells["knob"].iloc[0]))
    trends = trend_summary(trend_table(cells)).drop(columns=["study"])
    shown = [v for v in TREND_VARIABLES if v in trends.columns]
    paper = ", ".join(f"{v} {TREND_VARIABLES[v]}" for v in shown)
    trend_table_html = trend_cells_html(
        trends.to_html(index=False, na_rep="", border=0), [text for v in shown for text in trends[v].dropna()]
    )
    table = paper_shape(table1(cells)).to_html(index=False, na_rep="", float_format="{:.4g}".format, border=0)
    return (
        f"<h2>Study {study}</h2>\n<p>Trend of each variable over {knob}: Spearman rho of the seed means over "
        f"the included cells. {html.escape(TREND_RULE)}.</p>\n"
        + (
            f"<p>The paper, as the learning rate grows: {html.escape(paper)}.</p>\n"
            if (cells["knob"] == "lr").all()
            else ""
        )
        + f'{trend_table_html}\n<p class="note">{html.escape(left_out_note(cells))}</p>\n'
        f"<h3>Min and max over the included cells (Table 1 shape)</h3>\n{table}\n"
    )
