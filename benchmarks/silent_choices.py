#!/usr/bin/env python3
"""Measure, on a study that has run, how much each choice where the paper is silent moves the numbers.

    python benchmarks/silent_choices.py results/demo/cells.parquet [more cells.parquet ...]
    python benchmarks/silent_choices.py results/demo/cells.parquet --write docs/where-the-paper-is-silent.md

One run records both readings of these choices side by side in cells.parquet, so no rerun is
needed: CSI and BSI over active vs all neurons (with the active fraction), the spurious
attribution share on the normalised map vs raw |attribution|, the max BC loss ratio on
minibatches vs a fixed training set (and the mechanism's Pearson r under each), and the usable
LR range under the relative vs the points reading. Per (study, dataset, model) and knob value it
prints the seed means of both readings, their difference, and the Spearman trend over the knob
of each. ``--write`` replaces the part of the docs page between its ``measured`` markers.
Choices that change the model or its inputs (representation layer, BatchNorm mode,
standardisation, CNN pool, sample seed) need a second run: ``--against`` takes that run's
cells.parquet and compares the representation columns cell by cell.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

PAIR = ["study", "dataset", "model", "knob"]
# (label, the default reading's column, the other reading's column)
SIDE_BY_SIDE = [
    ("CSI: active vs all neurons", "csi_active", "csi_all"),
    ("BSI: active vs all neurons", "bsi_active", "bsi_all"),
    ("spurious share: normalised map vs raw", "spurious_share_normalized", "spurious_share_raw"),
    ("max BC loss ratio: minibatch vs fixed set", "max_bc_loss_ratio_minibatch", "max_bc_loss_ratio_fixed"),
]
REPRESENTATION = ["csi", "bsi", "class_sep", "compressibility", "active_fraction"]
START, END = "<!-- measured:start -->", "<!-- measured:end -->"


def spearman(values: pd.Series, knob: pd.Series) -> float:
    ok = values.notna()
    if ok.sum() < 3 or values[ok].nunique() < 2:
        return float("nan")
    return float(scipy.stats.spearmanr(knob[ok], values[ok])[0])


def fmt(value: float) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.3g}"


def readings_table(cells: pd.DataFrame) -> str:
    """Seed means of both readings per knob value (included cells), with their Spearman trends."""
    usable = cells[cells["included"]]
    lines = []
    for label, default, other in SIDE_BY_SIDE:
        if default not in cells or other not in cells or cells[[default, other]].isna().all().all():
            lines.append(f"\n**{label}**: not recorded in this study.\n")
            continue
        extra = ["active_fraction"] if default.startswith(("csi", "bsi")) else []
        lines += [
            f"\n**{label}** (seed means of included cells)\n",
            "| study | dataset | model | value | default | other | other - default |"
            + "".join(f" {e} |" for e in extra),
            "|---|---|---|---|---|---|---|" + "---|" * len(extra),
        ]
        for keys, pair in usable.groupby(PAIR):
            means = pair.groupby("value")[[default, other, *extra]].mean()
            for value, row in means.iterrows():
                lines.append(
                    f"| {' | '.join(map(str, keys[:3]))} | {value:g} | {fmt(row[default])} | "
                    f"{fmt(row[other])} | {fmt(row[other] - row[default])} |"
                    + "".join(f" {fmt(row[e])} |" for e in extra)
                )
            trend = [spearman(means[c], pd.Series(means.index, index=means.index)) for c in (default, other)]
            lines.append(
                f"| {' | '.join(map(str, keys[:3]))} | Spearman rho over {keys[3]} | {fmt(trend[0])} | "
                f"{fmt(trend[1])} | |" + " |" * len(extra)
            )
    return "\n".join(lines)


def mechanism_rows(cells: pd.DataFrame) -> str:
    """Pearson r of max BC loss ratio vs test accuracy under each reading, per pair."""
    usable = cells[cells["included"]]
    lines = [
        "\n**Mechanism (Fig 12): Pearson r, max BC loss ratio vs test accuracy**\n",
        "| study | dataset | model | cells | r (minibatch) | r (fixed set) |",
        "|---|---|---|---|---|---|",
    ]
    for keys, pair in usable.groupby(PAIR):
        rs = []
        for column in ("max_bc_loss_ratio_minibatch", "max_bc_loss_ratio_fixed"):
            frame = pair[[column, "test_acc"]].dropna() if column in pair else pd.DataFrame()
            enough = len(frame) > 2 and frame[column].nunique() > 1 and frame["test_acc"].nunique() > 1
            rs.append(scipy.stats.pearsonr(frame[column], frame["test_acc"])[0] if enough else np.nan)
        lines.append(f"| {' | '.join(map(str, keys[:3]))} | {len(pair)} | {fmt(rs[0])} | {fmt(rs[1])} |")
    return "\n".join(lines)


def range_rows(cells: pd.DataFrame) -> str:
    """The largest knob value inside the usable range under each reading, per pair."""
    other = next((c for c in cells if c.startswith("in_range_")), None)
    if other is None:
        return "\n**Usable LR range**: the other reading is not recorded in this study.\n"
    name = other.removeprefix("in_range_")
    lines = [
        f"\n**Usable LR range: largest value in range** (chosen reading vs {name})\n",
        f"| study | dataset | model | chosen | {name} |",
        "|---|---|---|---|---|",
    ]
    for keys, pair in cells.groupby(PAIR):
        ends = [pair.loc[pair.groupby("value")[c].transform("all"), "value"].max() for c in ("in_range", other)]
        lines.append(f"| {' | '.join(map(str, keys[:3]))} | {fmt(ends[0])} | {fmt(ends[1])} |")
    return "\n".join(lines)


def against_rows(cells: pd.DataFrame, other: pd.DataFrame, label: str) -> str:
    """Representation columns of two runs of the same cells (e.g. represent_bn eval vs batch), seed means."""
    keys = [*PAIR, "value", "seed"]
    columns = [c for c in REPRESENTATION if c in cells and c in other]
    both = cells[keys + columns].merge(other[keys + columns], on=keys, suffixes=("", "_other"))
    means = both.groupby([*PAIR[:3], "value"]).mean(numeric_only=True)
    lines = [
        f"\n**{label}** (seed means; this run / the other run)\n",
        "| dataset | model | value | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for (_study, dataset, model, value), row in means.iterrows():
        lines.append(
            f"| {dataset} | {model} | {value:g} | "
            + " | ".join(f"{fmt(row[c])} / {fmt(row[c + '_other'])}" for c in columns)
            + " |"
        )
    return "\n".join(lines)


def report(paths: list[str], against: str | None, against_label: str) -> str:
    cells = pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True)
    parts = [readings_table(cells), mechanism_rows(cells), range_rows(cells)]
    if against:
        parts.append(against_rows(cells, pd.read_parquet(against), against_label))
    return "\n".join(parts) + "\n"


def write_into(page: Path, text: str, command: str) -> None:
    """Replace the page's measured part (between START and END) with the command and its output."""
    body = page.read_text()
    if START not in body or END not in body:
        raise SystemExit(f"{page} has no {START} ... {END} markers to write between")
    block = f"{START}\n\nGenerated by `{command}`:\n{text}\n{END}"
    page.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, body, flags=re.S))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", nargs="+", help="a study's results/{study}/cells.parquet")
    parser.add_argument("--against", help="cells.parquet of the same cells run with another setting")
    parser.add_argument("--against-label", default="this run vs the other run", help="what --against changes")
    parser.add_argument("--write", type=Path, help="the docs page whose measured part to replace")
    args = parser.parse_args()
    text = report(args.cells, args.against, args.against_label)
    print(text)
    if args.write:
        against = f" --against {args.against} --against-label {shlex.quote(args.against_label)}" if args.against else ""
        write_into(args.write, text, "python benchmarks/silent_choices.py " + " ".join(args.cells) + against)


if __name__ == "__main__":
    main()
