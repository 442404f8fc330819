"""Two-knob landscapes (Fig. 9) as sets of one-knob studies: the declarations.

A landscape names studies that sweep the same knob (e.g. focal_gamma) over the same
(dataset, model) pairs and differ in one training setting (``axis``, e.g. lr). Cells stay
one-knob (results/{study}/{dataset}/{model}/{knob}={value}/seed={seed}); the landscape
figure reads the studies' cells tables and puts each study on the row of its ``axis`` value.
The checks and accessors of the ``landscapes`` section live in :mod:`largelr.config`.
"""

from __future__ import annotations

from largelr.checks import Setting

# How "spurious feature use" is read from a cell (the landscape's third panel). The paper does not
# name the measure of its Fig. 9; "auto" takes the attribution share on the dataset's spurious
# region where the dataset marks one (its measure of feature use), else the bias selectivity of the
# penultimate neurons (BSI: the class-selectivity index computed with bias labels).
SPURIOUS_MEASURES = {
    "spurious_share": "spurious attribution share (IG)",
    "bsi": "bias selectivity (BSI)",
    "bias_gap": "bias-aligned − bias-conflicting test acc.",
}
SPURIOUS_CHOICES = ("auto", *SPURIOUS_MEASURES)
LANDSCAPE_KEYS: dict[str, Setting] = {
    "description": Setting("", "what the landscape shows", type=str),
    "studies": Setting(
        None,
        "the one-knob studies that make the landscape's rows (at least two)",
        type=list,
        items=Setting("", "a study", type=str),
        min_items=2,
    ),
    "axis": Setting("lr", "the training setting that tells the studies apart (the landscape's rows)", type=str),
    "spurious": Setting(
        "auto",
        "the spurious-feature-use panel: auto (spurious_share where the dataset marks its "
        "spurious region, else bsi) | spurious_share | bsi | bias_gap (test_acc_ba - test_acc_bc)",
        type=str,
        choices=SPURIOUS_CHOICES,
    ),
}
