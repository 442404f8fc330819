import pandas as pd
import pytest

from largelr.aggregate import mark_included, mark_usable_range, max_bc_loss_ratio, table1


def sweep(accs: dict[float, list[float]], diverged: dict[float, list[bool]] | None = None) -> pd.DataFrame:
    rows = []
    for value, per_seed in accs.items():
        for seed, acc in enumerate(per_seed):
            rows.append(
                {
                    "study": "s",
                    "dataset": "d",
                    "model": "m",
                    "knob": "lr",
                    "value": value,
                    "seed": seed,
                    "test_acc": acc,
                    "diverged": (diverged or {}).get(value, [False] * 9)[seed],
                    "prunability": value * 10 + seed,
                    "compressibility": 0.5,
                    "csi": acc / 2,
                    "class_sep": 1 - acc,
                }
            )
    return pd.DataFrame(rows)


def test_range_ends_at_first_value_losing_more_than_a_quarter_of_the_best_accuracy():
    # best = 0.1 (mean 0.8); 1.0 has mean 0.55 < 0.75 * 0.8 = 0.6 -> out, and so is 10.0 even though it recovers
    cells = mark_usable_range(sweep({0.01: [0.5, 0.5], 0.1: [0.8, 0.8], 1.0: [0.5, 0.6], 10.0: [0.8, 0.8]}))
    assert cells.groupby("value")["in_range"].all().to_dict() == {0.01: True, 0.1: True, 1.0: False, 10.0: False}


def test_a_single_diverged_seed_ends_the_range():
    cells = mark_usable_range(
        sweep({0.01: [0.7, 0.7], 0.1: [0.8, 0.8], 1.0: [0.8, 0.79]}, diverged={1.0: [False, True]})
    )
    assert cells.groupby("value")["in_range"].all().to_dict() == {0.01: True, 0.1: True, 1.0: False}


def test_small_accuracy_drop_stays_in_range():
    cells = mark_usable_range(sweep({0.01: [0.8, 0.8], 0.1: [0.7, 0.7]}))  # 0.7 >= 0.6
    assert cells["in_range"].all()


def test_table1_takes_min_and_max_of_seed_means_within_range():
    cells = mark_included(sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9], 1.0: [0.1, 0.1]}))
    table = table1(cells).set_index("variable")
    assert table.loc["lr", ["min", "max"]].tolist() == [0.01, 0.1]  # exact: knob values picked, not computed
    assert table.loc["test_acc", ["min", "max"]].tolist() == pytest.approx([0.6, 0.85])
    # prunability = value*10 + seed -> seed means 0.1 + 0.5 and 1.0 + 0.5
    assert table.loc["prunability", ["min", "max"]].tolist() == pytest.approx([0.6, 1.5])
    assert table.loc["class_separation", ["min", "max"]].tolist() == pytest.approx([0.15, 0.4])
    assert (table["n_values"] == 2).all() and (table["n_seeds"] == 2).all()


def test_a_cells_max_bc_loss_ratio_is_the_engines_over_every_step_else_the_historys(tmp_path):
    from largelr.aggregate import cell_max_bc_loss_ratio

    pd.DataFrame({"step": [10, 20], "bc_loss_ratio": [0.4, 0.6]}).to_parquet(tmp_path / "history.parquet")
    # the engine saw every step (0.9 at a step the history did not record): its value wins
    assert cell_max_bc_loss_ratio({"max_bc_loss_ratio": 0.9}, tmp_path) == 0.9  # exact: passed through
    # an older train.json without it: the history's recorded steps
    assert cell_max_bc_loss_ratio({}, tmp_path) == 0.6  # exact: max picks an input value


def test_max_bc_loss_ratio_ignores_non_finite_steps():
    history = pd.DataFrame({"bc_loss_ratio": [0.1, 0.7, float("nan"), float("inf"), 0.3]})
    assert max_bc_loss_ratio(history) == 0.7  # exact: max picks an input value


# --- seed statistics, Table 2, comparison with the paper, mechanism, Markdown -------------

import math  # noqa: E402

import numpy as np  # noqa: E402

from largelr.aggregate import (  # noqa: E402
    PAPER_TABLE1,
    compare_with_paper,
    markdown,
    mechanism_table,
    paper_shape,
    seed_statistics,
    table2,
)


def test_two_seeds_give_the_sd_and_no_t_interval():
    cells = mark_included(sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9]}))
    row = seed_statistics(cells).set_index(["value", "metric"]).loc[(0.01, "test_acc")]
    # sd of 0.5 and 0.7 (ddof 1) = 0.1 * sqrt(2); no interval (t(0.975, 1) = 12.7 would give [-0.67, 1.87])
    assert row["n"] == 2 and row["std"] == pytest.approx(0.1 * math.sqrt(2))
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])


def test_seed_statistics_give_mean_sd_and_a_t_interval_worked_out_by_hand():
    cells = mark_included(sweep({0.01: [0.5, 0.6, 0.7], 0.1: [0.8, 0.8, 0.8]}))
    stats = seed_statistics(cells).set_index(["value", "metric"])
    row = stats.loc[(0.01, "test_acc")]
    # mean 0.6, sd 0.1 (ddof 1), t(0.975, 2) = 4.302653 -> half width 4.302653 * 0.1 / sqrt(3)
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.6) and row["std"] == pytest.approx(0.1)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.6 - half, 0.6 + half), abs=1e-6)
    flat = stats.loc[(0.1, "test_acc")]
    # pandas' float64 mean/std of three 0.8s may be off by an ulp: zero spread within 1e-12, not exactly
    assert flat["std"] == pytest.approx(0.0, abs=1e-12)
    assert (flat["ci_low"], flat["ci_high"]) == pytest.approx((0.8, 0.8), abs=1e-12)
    assert {"prunability", "csi", "class_sep"} <= set(stats.index.get_level_values("metric"))
    assert "seed" not in set(stats.index.get_level_values("metric"))


def test_seed_statistics_leave_nan_out_of_n_and_give_no_interval_for_one_seed():
    cells = mark_included(sweep({0.01: [0.5, float("nan")], 0.1: [0.8, 0.9]}))
    row = seed_statistics(cells).set_index(["value", "metric"]).loc[(0.01, "test_acc")]
    assert (
        row["n"] == 1
        and row["mean"] == pytest.approx(0.5, rel=1e-12)
        and np.isnan(row["ci_low"])
        and np.isnan(row["std"])
    )


def intervention(study: str, knob: str, accs: dict[float, list[float]]) -> pd.DataFrame:
    return sweep(accs).assign(study=study, knob=knob)


def test_table2_has_each_knob_of_the_intervention_pairs_and_the_lr_rows_of_the_same_pairs():
    lr_grid = mark_included(sweep({0.01: [0.5, 0.5], 0.1: [0.7, 0.9]}).assign(study="lr_grid"))
    other_pair = lr_grid.assign(model="other")  # an lr sweep with no intervention: left out
    momentum = mark_included(intervention("momentum_study", "momentum", {0.5: [0.6, 0.6], 0.9: [0.4, 0.6]}))
    table = table2(pd.concat([lr_grid, other_pair, momentum], ignore_index=True), ["momentum_study"])
    assert set(table["model"]) == {"m"}
    rows = table.set_index(["knob", "variable"])
    assert rows.loc[("lr", "test_acc"), ["min", "max"]].tolist() == pytest.approx([0.5, 0.8])
    assert rows.loc[("momentum", "momentum"), ["min", "max"]].tolist() == [0.5, 0.9]  # exact: knob values picked
    assert rows.loc[("momentum", "test_acc"), ["min", "max"]].tolist() == pytest.approx([0.5, 0.6])
    assert set(table["variable"]) == {"lr", "momentum", "test_acc", "prunability", "csi"}


def test_compare_with_paper_subtracts_the_reference_and_lists_every_reference_row():
    table = pd.DataFrame(
        {
            "study": "s",
            "dataset": "colored_mnist",
            "model": "cnn",
            "knob": "lr",
            "variable": ["lr", "test_acc"],
            "min": [0.01, 0.80],
            "max": [0.2, 0.95],
            "n_values": 5,
            "n_seeds": 3,
        }
    )
    compare = compare_with_paper(table).set_index(["dataset", "model", "variable"])
    # every reference entry once, the prunability ones a second time in the other reading; the CelebA row
    # twice more (celeba and celeba_blond)
    per_row = {key: len(v) + ("prunability" in v) for key, v in PAPER_TABLE1.items()}
    assert len(compare) == sum(per_row.values()) + per_row[("celeba", "swin_t")]
    row = compare.loc[("colored_mnist", "cnn", "test_acc")]
    assert (row["paper_min"], row["paper_max"]) == (0.882, 0.915)  # PAPER.md: 88.2-91.5
    assert row["diff_min"] == pytest.approx(0.80 - 0.882) and row["diff_max"] == pytest.approx(0.95 - 0.915)
    assert compare.loc[("colored_mnist", "cnn", "lr"), "diff_max"] == pytest.approx(0.2 - 0.35)
    assert np.isnan(compare.loc[("celeba", "swin_t", "worst_group_acc"), "ours_min"])


def test_compare_with_paper_uses_the_chosen_prunability_reading_and_lists_the_other():
    table = pd.DataFrame(
        {
            "study": "s",
            "dataset": "colored_mnist",
            "model": "cnn",
            "knob": "lr",
            "variable": ["prunability", "prunability_ratio", "prunability_chance"],
            "min": [0.5, 0.9, 0.5],
            "max": [0.8, 0.97, 0.8],
            "n_values": 5,
            "n_seeds": 3,
        }
    )
    for reading, other, other_min in (("chance", "ratio", 0.9), ("ratio", "chance", 0.5)):
        compare = compare_with_paper(table, reading).set_index(["dataset", "model", "variable"])
        chosen = compare.loc[("colored_mnist", "cnn", "prunability")]
        assert chosen["reading"] == reading and chosen["diff_min"] == pytest.approx(0.5 - 0.532)  # paper 0.532-0.931
        listed = compare.loc[("colored_mnist", "cnn", f"prunability_{other}")]
        assert listed["reading"] == other and listed["paper_min"] == pytest.approx(0.532)
        assert listed["ours_min"] == pytest.approx(other_min)
        assert ("colored_mnist", "cnn", f"prunability_{reading}") not in compare.index


def test_both_celeba_readings_stand_against_the_paper_row_and_the_note_names_the_closer():
    from largelr.aggregate import reading_fit_note

    # paper: worst-group 0.409-0.482. celeba: 0.10-0.30 (|diffs| 0.309 + 0.182 = 0.491);
    # celeba_blond: 0.40-0.50 (0.009 + 0.018 = 0.027): the benchmark reading fits
    table = pd.DataFrame(
        {
            "study": "lr_celeba",
            "dataset": ["celeba", "celeba_blond"],
            "model": "swin_t",
            "knob": "lr",
            "variable": "worst_group_acc",
            "min": [0.10, 0.40],
            "max": [0.30, 0.50],
            "n_values": 8,
            "n_seeds": 3,
        }
    )
    compare = compare_with_paper(table).set_index(["dataset", "model", "variable"])
    blond = compare.loc[("celeba_blond", "swin_t", "worst_group_acc")]
    assert (blond["paper_min"], blond["paper_max"]) == (0.409, 0.482)
    assert blond["diff_min"] == pytest.approx(-0.009)
    note = reading_fit_note(compare.reset_index())
    assert "fits `celeba_blond` best" in note and "celeba 0.491" in note and "celeba_blond 0.027" in note
    assert reading_fit_note(compare_with_paper(table.iloc[:1])) == ""  # one reading run: nothing to say


def test_build_cells_takes_prunability_from_the_chosen_reading():
    from largelr.analyses.prune import chosen_reading

    cells = pd.DataFrame(
        {
            "prunability_ratio": [0.9],
            "prunability_chance": [0.4],
            "prunability_ratio_magnitude": [0.95],
            "prunability_chance_magnitude": [0.7],
        }
    )
    assert chosen_reading(cells, "chance")["prunability"].tolist() == [0.4]
    ratio = chosen_reading(cells, "ratio")
    assert ratio["prunability"].tolist() == [0.9] and ratio["prunability_magnitude"].tolist() == [0.95]
    assert ratio["prunability_reading"] == "ratio"
    with pytest.raises(ValueError, match="allowed: \\['ratio', 'chance'\\]"):
        chosen_reading(cells, "percent")


def test_mechanism_table_pearson_r_matches_numpy_and_pools_per_study():
    cells = mark_included(sweep({0.01: [0.5, 0.6], 0.1: [0.7, 0.9], 0.2: [0.8, 0.85]}))
    cells["max_bc_loss_ratio"] = [0.1, 0.3, 0.2, 0.6, 0.5, 0.4]
    table = mechanism_table(cells).set_index("dataset")
    expected = np.corrcoef(cells["max_bc_loss_ratio"], cells["test_acc"])[0, 1]
    assert table.loc["d", "pearson_r"] == pytest.approx(expected)
    assert table.loc["d", "n_cells"] == 6
    slope = np.cov(cells["max_bc_loss_ratio"], cells["test_acc"])[0, 1] / np.var(cells["max_bc_loss_ratio"], ddof=1)
    assert table.loc["d", "slope"] == pytest.approx(slope)
    assert table.loc["all", "pearson_r"] == pytest.approx(expected)  # one pair: pooled = the pair


def test_markdown_and_paper_shape_render_min_max_per_variable():
    cells = mark_included(sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9]}))
    wide = paper_shape(table1(cells))
    assert wide.loc[0, "test_acc"] == "0.6 – 0.85" and wide.loc[0, "lr"] == "0.01 – 0.1"
    text = markdown(wide, "T")
    lines = text.splitlines()
    assert lines[0] == "# T" and lines[2].startswith("| study | dataset | model | knob | n_seeds | lr |")
    assert lines[3].count("|") == lines[2].count("|") and "| 0.6 – 0.85 |" in text
    assert markdown(pd.DataFrame({"x": [float("nan"), 1 / 3, None]})).splitlines()[2:] == ["|  |", "| 0.3333 |", "|  |"]
    two_knobs = pd.concat([table1(cells), table1(cells.assign(knob="momentum", study="t"))])
    shaped = paper_shape(two_knobs, knob_label="knob values").set_index("knob")
    assert shaped.loc["momentum", "knob values"] == shaped.loc["lr", "knob values"] == "0.01 – 0.1"
    assert "lr" not in shaped.columns and "momentum" not in shaped.columns


def test_one_seed_losing_a_quarter_of_the_best_accuracy_ends_the_range_even_if_the_mean_does_not():
    # best = 0.1 (mean 0.9); at 1.0 the mean 0.75 is above 0.75 * 0.9 = 0.675, but seed 1 (0.6) is below
    cells = mark_usable_range(sweep({0.01: [0.8, 0.8], 0.1: [0.9, 0.9], 1.0: [0.9, 0.6]}))
    assert cells.groupby("value")["in_range"].all().to_dict() == {0.01: True, 0.1: True, 1.0: False}


def test_cells_that_did_not_converge_are_left_out_of_the_tables_and_counted():
    from largelr.aggregate import left_out_note

    cells = sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9], 1.0: [0.85, 0.85]}).assign(converged=True, num_classes=2)
    cells.loc[(cells["value"] == 0.01) & (cells["seed"] == 0), "converged"] = False  # stopped at the step cap
    marked = mark_included(cells)
    assert marked["left_out"].tolist() == ["not converged (stopped at the step cap)", "", "", "", "", ""]
    table = table1(marked).set_index("variable")
    # lr 0.01 keeps only seed 1 (0.7): test_acc seed means 0.7, 0.85, 0.85
    assert table.loc["test_acc", ["min", "max"]].tolist() == pytest.approx([0.7, 0.85])
    assert "d × m: 6 cells; left out: 1 not converged (stopped at the step cap)" in left_out_note(marked)


def test_cells_within_a_few_points_of_chance_are_flagged():
    cells = mark_included(sweep({0.01: [0.52, 0.56], 0.1: [0.9, 0.9]}).assign(converged=True, num_classes=2))
    # chance 1/2, margin 0.05: 0.52 and 0.55 are near chance, 0.56 is not
    assert cells["near_chance"].tolist() == [True, False, False, False]


def test_trend_table_gives_the_spearman_rho_of_the_seed_means():
    from largelr.aggregate import trend_summary, trend_table

    # test_acc seed means 0.6, 0.85, 0.7 over three rates: ranks 1, 3, 2 -> rho = 1 - 6 * (0 + 1 + 1) / (3 * 8) = 0.5
    cells = mark_included(sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9], 1.0: [0.7, 0.7]}))
    trends = trend_table(cells).set_index("variable")
    assert trends.loc["test_acc", "spearman_rho"] == pytest.approx(0.5)
    # one rank swap on three values: no arrow. Seed 0 (0.5, 0.8, 0.7) has rho 0.5, seed 1 (0.7, 0.9, 0.7)
    # rho 0 (ranks 1.5, 3, 1.5 against 1, 2, 3): 1 of 2 seeds agrees
    assert trends.loc["test_acc", "trend"] == "~" and trends.loc["test_acc", "paper"] == "↑"
    assert trends.loc["test_acc", ["seeds", "seeds_agreeing"]].tolist() == [2, 1]
    # prunability = 10 * lr + seed rises with lr in the means and in both seeds: rho = 1, 2/2 seeds -> arrow
    assert trends.loc["prunability", "spearman_rho"] == pytest.approx(1.0)
    assert trends.loc["prunability", "trend"] == "↑"
    assert trends.loc["class_sep", "spearman_rho"] == pytest.approx(-0.5) and trends.loc["class_sep", "trend"] == "~"
    assert trends.loc["compressibility", "trend"] == "?"  # constant: no rank correlation
    summary = trend_summary(trend_table(cells)).loc[0]
    assert summary["test_acc"] == "~ +0.50 (1/2 seeds ↑)" and summary["prunability"] == "↑ +1.00 (2/2 seeds ↑)"


def trend_of(accs: dict[float, list[float]]) -> tuple[str, float, int, int]:
    """(arrow, rho, seeds, seeds agreeing) of test accuracy in a hand-made sweep."""
    from largelr.aggregate import trend_table

    row = trend_table(mark_included(sweep(accs))).set_index("variable").loc["test_acc"]
    return row["trend"], row["spearman_rho"], row["seeds"], row["seeds_agreeing"]


def test_three_values_earn_an_arrow_only_when_every_seed_agrees():
    # every seed rises over the three rates: means rise, rho = 1, 3/3 seeds
    arrow, rho, seeds, agree = trend_of({0.01: [0.5, 0.6, 0.55], 0.1: [0.6, 0.7, 0.65], 1.0: [0.7, 0.8, 0.75]})
    assert (arrow, seeds, agree) == ("↑", 3, 3) and rho == pytest.approx(1.0)
    # means 0.85, 0.7933, 0.72 fall (rho = -1), but seed 2 (0.75, 0.78, 0.76: ranks 1, 3, 2) has rho +0.5
    arrow, rho, seeds, agree = trend_of({0.01: [0.9, 0.9, 0.75], 0.1: [0.8, 0.8, 0.78], 1.0: [0.7, 0.7, 0.76]})
    assert (arrow, seeds, agree) == ("~", 3, 2) and rho == pytest.approx(-1.0)
    # one seed: rho = 1 on three values is 1 ordering in 6 by chance -> no arrow
    arrow, rho, seeds, agree = trend_of({0.01: [0.5], 0.1: [0.6], 1.0: [0.7]})
    assert (arrow, seeds, agree) == ("~", 1, 1) and rho == pytest.approx(1.0)


def test_four_values_earn_an_arrow_on_a_strong_rho_of_the_means():
    # means 0.7, 0.7, 0.725, 0.75 (ranks 1.5, 1.5, 3, 4): rho = 4.5 / sqrt(5 * 4.5) = 0.9487 >= 0.8 -> arrow,
    # although seed 1 (0.9, 0.8, 0.75, 0.7) falls: 1 of 2 seeds agrees, and the summary says so
    arrow, rho, seeds, agree = trend_of({0.01: [0.5, 0.9], 0.1: [0.6, 0.8], 1.0: [0.7, 0.75], 10.0: [0.8, 0.7]})
    assert (arrow, seeds, agree) == ("↑", 2, 1) and rho == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    # ranks 2, 1, 4, 3: rho = 1 - 6 * 4 / (4 * 15) = 0.6 < 0.8 -> no arrow, even with every seed agreeing
    arrow, rho, seeds, agree = trend_of({0.01: [0.6, 0.6], 0.1: [0.5, 0.5], 1.0: [0.8, 0.8], 10.0: [0.7, 0.7]})
    assert (arrow, seeds, agree) == ("~", 2, 2) and rho == pytest.approx(0.6)
    # falling on five values with one seed (each within the usable range's quarter drop): rho = -1 -> down arrow
    arrow, rho, _, _ = trend_of({0.001: [0.9], 0.01: [0.88], 0.1: [0.86], 1.0: [0.84], 10.0: [0.82]})
    assert arrow == "↓" and rho == pytest.approx(-1.0)


def test_table2_prints_the_batch_size_knob_as_one_over_b():
    lr_grid = mark_included(sweep({0.01: [0.5, 0.5], 0.1: [0.7, 0.9]}).assign(study="lr_grid"))
    batch = mark_included(intervention("batch_study", "batch_size", {3: [0.6, 0.6], 100: [0.4, 0.6]}))
    rows = table2(pd.concat([lr_grid, batch], ignore_index=True), ["batch_study"]).set_index(["knob", "variable"])
    assert rows.loc[("batch_size", "1/batch_size"), ["min", "max"]].tolist() == pytest.approx([0.01, 1 / 3])
    shaped = paper_shape(
        table2(pd.concat([lr_grid, batch], ignore_index=True), ["batch_study"]), knob_label="knob values"
    ).set_index("knob")
    assert shaped.loc["batch_size", "knob values"] == "0.01 – 0.3333"


def test_summary_names_each_pairs_trends_and_the_cells_left_out():
    from largelr.aggregate import summary_text

    cells = sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9], 1.0: [0.95, 0.95]}).assign(converged=True, num_classes=2)
    cells.loc[0, "converged"] = False
    text = summary_text(mark_included(cells))
    assert text.startswith("Study s: trend of each variable over lr")
    assert "the paper: test_acc ↑" in text
    # test_acc seed means 0.7, 0.85, 0.95 rise monotonically: rho = 1; class_sep = 1 - acc falls: rho = -1.
    # Three values, and only seed 1 keeps all three (seed 0's first cell is left out): no arrow
    assert "~ +1.00 (1/1 seeds ↑)" in text and "~ -1.00 (1/1 seeds ↓)" in text and "1 not converged" in text
    assert "|rho| >= 0.8 on >= 4 values" in text


def test_summary_page_for_the_report_holds_the_trends_and_the_min_max_table():
    from html.parser import HTMLParser

    from largelr.aggregate import summary_html

    cells = sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9], 1.0: [0.95, 0.95], 10.0: [0.96, 0.97]})
    page = summary_html(mark_included(cells.assign(converged=True, num_classes=2)))

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.data, self.classes = [], [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.classes += [value for name, value in attrs if name == "class"]

        def handle_data(self, data):
            self.data.append(data)

    parsed = Cells()
    parsed.feed(page)
    text = "".join(parsed.data)
    assert parsed.tags.count("pre") == 0 and parsed.tags.count("table") == 2
    assert "Study s" in text and "|rho| >= 0.8 on >= 4 values" in text  # '>' escaped, read back
    assert "&gt;=" in page and "|rho| >=" not in page
    # test accuracy seed means 0.6, 0.85, 0.95, 0.965 rise over four rates: rho = 1, an arrow, coloured
    assert "↑ +1.00 (2/2 seeds ↑)" in text and "up" in parsed.classes
    # class_sep = 1 - acc falls: a down arrow
    assert "↓ -1.00 (2/2 seeds ↓)" in text and "down" in parsed.classes
    # the min/max table: test accuracy seed means 0.6 ... 0.965 -> "0.6 – 0.965"
    assert "0.6 – 0.965" in text


def test_a_study_may_keep_capped_cells_and_choose_its_range_drop():
    cells = sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9], 1.0: [0.7, 0.7]}).assign(converged=False)
    assert not mark_included(cells)["included"].any()  # the paper's rule: nothing converged, nothing in
    kept = mark_included(cells, require_converged=False)
    assert kept["included"].all()  # 1.0: 0.7 >= 0.75 * 0.85
    strict = mark_included(cells, require_converged=False, drop=0.1)  # 0.7 < 0.9 * 0.85 = 0.765
    assert strict.groupby("value")["included"].all().to_dict() == {0.01: True, 0.1: True, 1.0: False}


# --- readings where the paper is silent: the usable range, the max BC loss ratio ------------------


def test_usable_range_relative_and_points_readings_end_the_range_at_different_rates():
    # MNIST-CIFAR-like accuracies: best seed mean 0.44 at lr 0.1. Relative floor 0.75 x 0.44 = 0.33;
    # points floor 0.44 - 0.25 = 0.19. lr 1.0 (worst seed 0.30) is out only for the relative reading,
    # lr 3.0 (worst seed 0.18) is out for both.
    accs = sweep({0.01: [0.40, 0.42], 0.1: [0.44, 0.44], 1.0: [0.30, 0.36], 3.0: [0.18, 0.25]})
    relative = mark_usable_range(accs, 0.25, "relative").groupby("value")["in_range"].all().to_dict()
    points = mark_usable_range(accs, 0.25, "points").groupby("value")["in_range"].all().to_dict()
    assert relative == {0.01: True, 0.1: True, 1.0: False, 3.0: False}
    assert points == {0.01: True, 0.1: True, 1.0: True, 3.0: False}
    with pytest.raises(ValueError, match="usable_range_reading = 'percent'"):
        mark_usable_range(accs, 0.25, "percent")


def test_build_cells_marks_the_chosen_range_reading_and_records_the_other(monkeypatch):
    import largelr.aggregate.cells as aggregate  # where build_cells looks read_cell up

    accs = sweep({0.01: [0.40, 0.42], 0.1: [0.44, 0.44], 1.0: [0.30, 0.36], 3.0: [0.18, 0.25]})
    rows = [
        row | {"converged": True, "max_bc_loss_ratio_minibatch": 0.5, "max_bc_loss_ratio_fixed": 0.2}
        for row in accs.to_dict("records")
    ]
    monkeypatch.setattr(aggregate, "read_cell", lambda path: rows[int(path)])
    paths = [str(i) for i in range(len(rows))]
    cells = aggregate.build_cells(paths, {"usable_range_reading": "points", "bc_ratio": "fixed"})
    at_one = cells[cells["value"] == 1.0]
    assert at_one["in_range"].all() and not at_one["in_range_relative"].any()
    assert (cells["max_bc_loss_ratio"] == 0.2).all()  # exact: the fixed-set column, copied
    default = aggregate.build_cells(paths)
    assert not default.loc[default["value"] == 1.0, "in_range"].any()
    assert default.loc[default["value"] == 1.0, "in_range_points"].all()
    assert (default["max_bc_loss_ratio"] == 0.5).all()
    with pytest.raises(ValueError, match="bc_ratio = 'median'"):
        aggregate.build_cells(paths, {"bc_ratio": "median"})


def test_the_paper_comparison_lists_csi_under_the_other_neuron_reading():
    from largelr.aggregate import with_other_csi_reading

    cells = mark_included(sweep({0.01: [0.8, 0.8], 0.1: [0.9, 0.9]}).assign(dataset="colored_mnist", model="cnn"))
    # csi = acc / 2 is the chosen (active) reading; the all-neuron one is half of it: 0.2 and 0.225
    cells = cells.assign(csi_active=cells["csi"], csi_all=cells["csi"] / 2)
    compare = with_other_csi_reading(compare_with_paper(table1(cells)), cells).set_index(
        ["dataset", "model", "variable"]
    )
    row = compare.loc[("colored_mnist", "cnn", "csi")]
    assert row["other_reading"] == "csi_all"
    assert (row["ours_min"], row["ours_max"]) == pytest.approx((0.4, 0.45))
    assert (row["other_min"], row["other_max"]) == pytest.approx((0.2, 0.225))
    assert np.isnan(compare.loc[("colored_mnist", "cnn", "test_acc"), "other_min"])
    all_chosen = cells.assign(csi=cells["csi_all"])  # csi_neurons: all
    flipped = with_other_csi_reading(compare_with_paper(table1(all_chosen)), all_chosen)
    row = flipped.set_index(["dataset", "model", "variable"]).loc[("colored_mnist", "cnn", "csi")]
    assert row["other_reading"] == "csi_active" and row["other_max"] == pytest.approx(0.45)


def test_a_rank_correlation_of_exactly_the_threshold_earns_its_arrow():
    from largelr.aggregate import spearman, trend_arrow

    # ranks 2, 1, 3, 4 against 1, 2, 3, 4: rho = 1 - 6 (1 + 1) / (4 (16 - 1)) = 0.8 by hand
    means = pd.Series([0.942, 0.938, 0.952, 0.954], index=[0.05, 0.1, 0.2, 0.3])
    rho = spearman(means)
    assert rho == pytest.approx(0.8, abs=1e-12)
    assert trend_arrow(rho, 4, [0.8, 1.0]) == "↑"
    assert trend_arrow(0.79, 4, [0.8, 1.0]) == "~"
