"""The target helpers of workflow/rules/common.smk (largelr.targets), against hand-worked cases."""

from __future__ import annotations

import pytest

from largelr import targets

PAIRS = [("d1", "fcn"), ("d1", "cnn"), ("d2", "fcn")]


def test_a_study_draws_the_families_whose_pairs_and_setting_it_has():
    only_study = {"study": PAIRS, "hilo": [], "training_maps": []}
    assert targets.study_families(only_study, {}) == [
        "normalized",
        "compressibility",
        "pruning",
        "dynamics",
        "mechanism",
        "csi_core",
    ]
    maps = {"study": PAIRS, "hilo": PAIRS[:1], "training_maps": PAIRS[:1]}
    assert targets.study_families(maps, {"deeplift": False})[-3:] == ["training_maps", "neuron", "hilo"]
    assert targets.study_families(maps, {"deeplift": True})[-2:] == ["hilo", "hilo_methods"]


def test_map_pairs_follow_the_switch_and_hilo_models():
    assert targets.map_pairs({"hilo": False}, PAIRS, "hilo") == []
    assert targets.map_pairs({"hilo": True}, PAIRS, "hilo") == PAIRS
    assert targets.map_pairs({"training_maps": True, "hilo_models": ["fcn"]}, PAIRS, "training_maps") == [
        ("d1", "fcn"),
        ("d2", "fcn"),
    ]


def test_figure_files_are_one_per_pair_or_one_per_study_in_every_format():
    files = targets.study_figure_files("s", {"study": PAIRS[:2], "hilo": [], "training_maps": []}, {}, ["png", "pdf"])
    by_family = {}
    for family, stem, paths in files:
        by_family.setdefault(family, []).append((stem, paths))
    assert by_family["normalized"] == [
        ("d1-cnn", ["results/figures/s/d1-cnn.png", "results/figures/s/d1-cnn.pdf"]),
        ("d1-fcn", ["results/figures/s/d1-fcn.png", "results/figures/s/d1-fcn.pdf"]),
    ]
    mechanism = ["results/figures/s/mechanism.png", "results/figures/s/mechanism.pdf"]
    assert by_family["mechanism"] == [("mechanism", mechanism)]
    assert len(files) == 4 * 2 + 2


@pytest.mark.parametrize(
    ("argv", "expected", "dry"),
    [
        (["/usr/bin/snakemake", "-n", "smoke", "--configfile", "extra.yaml"], ["smoke"], True),
        (["/v/lib/python3.12/site-packages/snakemake/__main__.py", "--cores", "2", "a", "b"], ["a", "b"], False),
        (["/usr/bin/snakemake", "--dry-run"], [], True),
        (["/usr/bin/pytest", "-n", "smoke"], [], False),  # another program: its command line says nothing
        ([], [], False),
    ],
)
def test_the_snakemake_command_line_gives_the_targets_and_the_dry_run(argv, expected, dry):
    assert targets.command_line_targets(argv) == expected
    assert targets.command_line_dry_run(argv) is dry


def test_targets_name_the_studies_they_build():
    studies, default = ["demo", "smoke", "lr_cifar"], ["demo"]
    assert targets.requested_studies([], studies, default) == ["demo"]
    assert targets.requested_studies(["all", "smoke"], studies, default) == ["demo"]
    assert targets.requested_studies(["figures_smoke", "results/tables/lr_cifar_stats.md"], studies, default) == [
        "smoke",
        "lr_cifar",
    ]
    assert targets.requested_studies(
        ["results/figures/smoke/x.png", "results/smoke/cells.parquet"], studies, default
    ) == ["smoke"]
    assert targets.requested_studies(["results/data/parity.pt"], studies, default) == []


def test_hilo_values_are_the_extremes_or_the_chosen_values_of_the_pair():
    values = ["0.5", "0.05", "1", "0.1"]
    where = ("s", "d", "m")
    assert targets.hilo_values(values, None, None, str, where) == ["0.05", "1"]
    assert targets.hilo_values(values, 0.1, None, str, where) == ["0.1", "1"]
    with pytest.raises(
        ValueError,
        match=r"hilo_high = 2 \(study s\) is not a value of \(d, m\); allowed: "
        r"\['0.05', '0.1', '0.5', '1'\]",
    ):
        targets.hilo_values(values, None, 2, str, where)


def test_the_missing_data_report_names_each_study_and_each_missing_dataset_once():
    reasons = {"a": None, "b": "needs data/b/x.npz", "c": "needs data/c/"}
    report = targets.missing_data_report(
        {"s1": ["a", "b"], "s2": ["b", "c"], "s3": ["a"]}, reasons.get, "data", dry_run=False
    )
    lines = report.splitlines()
    assert lines[0] == "largelr: data missing under data_root='data'. Studies that cannot run (fully or in part):"
    assert lines[1:3] == ["  s1: runs in part, missing b", "  s2: cannot run, missing b, c"]
    assert lines[-2:] == ["  - b: needs data/b/x.npz", "  - c: needs data/c/"]
    assert "Dry run" not in report
    assert "Dry run: the plan below" in targets.missing_data_report({"s2": ["c"]}, reasons.get, "data", True)
    assert targets.missing_data_report({"s3": ["a"]}, reasons.get, "data", True) == ""
