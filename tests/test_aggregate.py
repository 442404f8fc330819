import pandas as pd
import pytest

from largelr.aggregate import mark_usable_range, max_bc_loss_ratio, table1


def sweep(accs: dict[float, list[float]], diverged: dict[float, list[bool]] | None = None) -> pd.DataFrame:
    rows = []
    for value, per_seed in accs.items():
        for seed, acc in enumerate(per_seed):
            rows.append({"study": "s", "dataset": "d", "model": "m", "knob": "lr", "value": value, "seed": seed,
                         "test_acc": acc, "diverged": (diverged or {}).get(value, [False] * 9)[seed],
                         "prunability": value * 10 + seed, "compressibility": 0.5, "csi": acc / 2, "class_sep": 1 - acc})
    return pd.DataFrame(rows)


def test_range_ends_at_first_value_losing_more_than_a_quarter_of_the_best_accuracy():
    # best = 0.1 (mean 0.8); 1.0 has mean 0.55 < 0.75 * 0.8 = 0.6 -> out, and so is 10.0 even though it recovers
    cells = mark_usable_range(sweep({0.01: [0.5, 0.5], 0.1: [0.8, 0.8], 1.0: [0.5, 0.6], 10.0: [0.8, 0.8]}))
    assert cells.groupby("value")["in_range"].all().to_dict() == {0.01: True, 0.1: True, 1.0: False, 10.0: False}


def test_a_single_diverged_seed_ends_the_range():
    cells = mark_usable_range(sweep({0.01: [0.7, 0.7], 0.1: [0.8, 0.8], 1.0: [0.8, 0.79]},
                                    diverged={1.0: [False, True]}))
    assert cells.groupby("value")["in_range"].all().to_dict() == {0.01: True, 0.1: True, 1.0: False}


def test_small_accuracy_drop_stays_in_range():
    cells = mark_usable_range(sweep({0.01: [0.8, 0.8], 0.1: [0.7, 0.7]}))  # 0.7 >= 0.6
    assert cells["in_range"].all()


def test_table1_takes_min_and_max_of_seed_means_within_range():
    cells = mark_usable_range(sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9], 1.0: [0.1, 0.1]}))
    table = table1(cells).set_index("variable")
    assert table.loc["lr", ["min", "max"]].tolist() == [0.01, 0.1]
    assert table.loc["test_acc", ["min", "max"]].tolist() == pytest.approx([0.6, 0.85])
    # prunability = value*10 + seed -> seed means 0.1 + 0.5 and 1.0 + 0.5
    assert table.loc["prunability", ["min", "max"]].tolist() == pytest.approx([0.6, 1.5])
    assert table.loc["class_separation", ["min", "max"]].tolist() == pytest.approx([0.15, 0.4])
    assert (table["n_values"] == 2).all() and (table["n_seeds"] == 2).all()


def test_max_bc_loss_ratio_ignores_non_finite_steps():
    history = pd.DataFrame({"bc_loss_ratio": [0.1, 0.7, float("nan"), float("inf"), 0.3]})
    assert max_bc_loss_ratio(history) == 0.7
