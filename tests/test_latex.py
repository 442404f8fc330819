"""The LaTeX tables (largelr.latex) beside the Markdown ones, read back to their values."""

import math

import pytest
from test_aggregate import intervention, sweep

from largelr.aggregate import mark_included, table1, write_table1, write_table2
from largelr.latex import escape, read_latex_table, unescape


def span(text: str) -> tuple[float, float]:
    low, high = text.split(" – ")
    return float(low), float(high)


def test_escaping_round_trips_the_special_characters():
    text = "test_acc 50% & {x} #1 $2 ~ ^ \\ 0.1 – 0.2 ↑"
    assert escape("a_b & 0.1 – 0.2") == r"a\_b \& 0.1 -- 0.2"
    assert unescape(escape(text)) == text


def test_table1_tex_reads_back_to_the_min_and_max_of_the_seed_means(tmp_path):
    cells = mark_included(sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9], 1.0: [0.85, 0.95]})).assign(study="lr_grid")
    cells.to_parquet(tmp_path / "cells.parquet")
    write_table1([str(tmp_path / "cells.parquet")], str(tmp_path / "table1.parquet"), str(tmp_path / "compare.parquet"))
    source = (tmp_path / "table1.tex").read_text()
    assert source.startswith("% Table 1") and r"\begin{tabular}" in source and r"\toprule" in source
    row = read_latex_table(source).iloc[0]
    assert (row["dataset"], row["model"], row["n_seeds"]) == ("d", "m", "2")
    # seed means of test accuracy: 0.6, 0.85, 0.9 -> 0.6 -- 0.9; the rates 0.01 -- 1
    assert span(row["test_acc"]) == pytest.approx((0.6, 0.9))
    assert span(row["lr"]) == pytest.approx((0.01, 1.0))
    # prunability = 10 lr + seed: seed means 0.6, 1.5, 10.5
    assert span(row["prunability"]) == pytest.approx((0.6, 10.5))
    # the same numbers as the tidy table (and the Markdown)
    tidy = table1(cells).set_index("variable")
    assert span(row["csi"]) == pytest.approx(tuple(tidy.loc["csi", ["min", "max"]]), abs=5e-4)


def test_compare_paper_tex_gives_paper_ours_and_diff_per_variable(tmp_path):
    cells = mark_included(sweep({0.01: [0.7, 0.74], 0.1: [0.76, 0.8]})).assign(
        study="lr", dataset="colored_mnist", model="fcn"
    )
    cells.to_parquet(tmp_path / "cells.parquet")
    write_table1([str(tmp_path / "cells.parquet")], str(tmp_path / "table1.parquet"), str(tmp_path / "compare.parquet"))
    rows = read_latex_table((tmp_path / "compare.tex").read_text()).set_index(["dataset", "model", "variable"])
    row = rows.loc[("colored_mnist", "fcn", "test_acc")]
    # the paper: 0.727 -- 0.761; ours: seed means 0.72, 0.78; diff -0.007, 0.019
    assert span(row["paper"]) == pytest.approx((0.727, 0.761))
    assert span(row["ours"]) == pytest.approx((0.72, 0.78))
    assert [float(x) for x in row["diff"].split(", ")] == pytest.approx([-0.007, 0.019], abs=1e-9)
    assert rows.loc[("celeba", "swin_t", "prunability"), "ours"] == ""  # not run


def test_table2_tex_has_one_knob_values_column(tmp_path):
    lr_grid = mark_included(sweep({0.01: [0.5, 0.5], 0.1: [0.7, 0.9]}).assign(study="lr_grid"))
    batch = mark_included(intervention("batch_study", "batch_size", {3: [0.6, 0.6], 100: [0.4, 0.6]}))
    lr_grid.to_parquet(tmp_path / "lr.parquet")
    batch.to_parquet(tmp_path / "batch.parquet")
    write_table2([str(tmp_path / "batch.parquet")], [str(tmp_path / "lr.parquet")], str(tmp_path / "table2.parquet"))
    rows = read_latex_table((tmp_path / "table2.tex").read_text()).set_index("knob")
    low, high = span(rows.loc["batch_size", "knob values"])
    assert low == pytest.approx(0.01) and high == pytest.approx(1 / 3, abs=5e-5)  # 1/b, 4 significant digits
    assert span(rows.loc["lr", "knob values"]) == pytest.approx((0.01, 0.1))
    assert not math.isnan(span(rows.loc["batch_size", "test_acc"])[0])
