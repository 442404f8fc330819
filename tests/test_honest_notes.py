"""Table notes and summaries count converged, kept-unconverged, diverged and out-of-range cells apart."""

import pandas as pd
import pytest

from largelr.aggregate import left_out_note, mark_included, summary_text


def cells_of(fates: list[str]) -> pd.DataFrame:
    """One cell per fate, lr 0.01, 0.02, ... (accuracies 0.9, in range), seed 0, two classes.

    fate: "ok" converged, "cap" stopped at the step cap, "nan" diverged; "low" converged with an
    accuracy of 0.1, which ends the usable range for it and every larger value."""
    rows = []
    for position, fate in enumerate(fates):
        rows.append(
            {
                "study": "s",
                "dataset": "d",
                "model": "m",
                "knob": "lr",
                "value": 0.01 * (position + 1),
                "seed": 0,
                "test_acc": 0.1 if fate == "low" else 0.9,
                "diverged": fate == "nan",
                "converged": fate in ("ok", "low"),
                "num_classes": 2,
                "prunability": 0.5,
                "compressibility": 0.5,
                "csi": 0.5,
                "class_sep": 0.5,
            }
        )
    return pd.DataFrame(rows)


NOTES = [  # fates, require_converged, phrases the note must hold, phrases it must not
    (["ok", "ok", "ok"], True, ["All 3 cells included (none diverged, all converged"], []),
    (["ok", "ok", "ok"], False, ["All 3 cells included (none diverged, all converged"], []),
    (
        ["ok", "cap", "cap"],
        False,
        [
            "1 converged and included",
            "2 included though not converged",
            "d × m: 3 cells; 2 included though not converged",
        ],
        ["all converged", "left out:"],
    ),
    (["cap"] * 8, False, ["8 included though not converged (require_converged: false)"], ["all converged", "0 "]),
    (["ok", "cap", "cap"], True, ["1 converged and included", "2 left out: not converged"], ["all converged"]),
    (["ok", "ok", "nan"], True, ["2 converged and included", "1 left out: diverged"], ["all converged"]),
    (
        ["ok", "cap", "nan"],
        False,
        ["1 converged and included", "1 included though not converged", "1 left out: diverged"],
        ["all converged"],
    ),
    (
        ["ok", "ok", "low", "ok"],
        True,
        ["2 converged and included", "2 left out: past the usable range"],
        ["all converged"],
    ),
]


@pytest.mark.parametrize(("fates", "require_converged", "present", "absent"), NOTES)
def test_the_note_counts_each_fate_apart(fates, require_converged, present, absent):
    marked = mark_included(cells_of(fates), require_converged=require_converged)
    note = left_out_note(marked)
    for phrase in present:
        assert phrase in note
    for phrase in absent:
        assert phrase not in note


def test_the_summary_of_a_fixed_budget_study_never_says_all_converged():
    marked = mark_included(cells_of(["cap"] * 8), require_converged=False)
    assert marked["included"].all()  # require_converged: false keeps them in the tables
    text = summary_text(marked)
    assert "all converged" not in text and "8 included though not converged" in text
