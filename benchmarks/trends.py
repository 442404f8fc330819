#!/usr/bin/env python3
"""Print, for any study that has run, each Table 1 variable's trend over the study's knob.

    python benchmarks/trends.py results/lr_synthetic/cells.parquet [more cells.parquet ...]

Per (dataset, model): the Spearman rho of the seed means against the knob value over the
included cells (converged, not diverged, in the usable range), how many seeds' own rho agree
in sign, the arrow they earn (largelr.aggregate.TREND_RULE: |rho| >= 0.8 on >= 4 values, or on
3 values with every seed agreeing), min and max of the seed means, the paper's direction for
learning-rate sweeps, and the cells left out and why. The same code writes
results/tables/{study}_trends.md and prints the summary at the end of `make demo`.
"""

from __future__ import annotations

import argparse

import pandas as pd

from largelr.aggregate import summary_text, trend_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", nargs="+", help="a study's results/{study}/cells.parquet")
    parser.add_argument("--full", action="store_true", help="also print the long table (min, max, n_values)")
    args = parser.parse_args()
    for path in args.cells:
        cells = pd.read_parquet(path)
        print(summary_text(cells))
        if args.full:
            print()
            print(trend_table(cells).to_string(index=False))
        print()


if __name__ == "__main__":
    main()
