"""Figure families and study tables are one record each (largelr.registry): a toy family and a toy
table, registered as one record each, reach the rules' outputs, the CLI and the figures job; the
target helpers of workflow/rules/common.smk (largelr.targets) against hand-worked cases."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from test_workflow import ROOT, copy_workflow

from largelr import targets
from largelr.registry import figures as figure_registry
from largelr.registry import tables as table_registry
from largelr.registry.figures import FIGURE_FAMILIES, FigureFamily
from largelr.registry.tables import STUDY_TABLES, StudyTable

TOY_FAMILY = FigureFamily("toy", "{dataset}-{model}.toy", ("cells",), "Toy - one line per pair",
                          "test_registry:toy_figure", caption="normalized")
TOY_TABLE = StudyTable("toy", "toy", "test_registry:write_toy")
DRAWN: list[tuple] = []


def toy_figure(cells: pd.DataFrame, dataset: str, model: str, paths: list) -> None:
    DRAWN.append((len(cells), dataset, model, [str(path) for path in paths]))


def write_toy(cells: pd.DataFrame, path: str, note: str) -> None:
    DRAWN.append((len(cells), path, note))


@pytest.fixture
def toy_records(monkeypatch):
    monkeypatch.setitem(FIGURE_FAMILIES, "toy", TOY_FAMILY)
    monkeypatch.setitem(STUDY_TABLES, "toy", TOY_TABLE)
    DRAWN.clear()
    yield
    DRAWN.clear()


# A dry run whose process registers the toy records first (as a test fixture module would), then
# hands its command line to Snakemake: the records are the only change.
RUN_WITH_TOYS = textwrap.dedent("""
    import sys
    from largelr.registry.figures import FIGURE_FAMILIES, FigureFamily
    from largelr.registry.tables import STUDY_TABLES, StudyTable
    FIGURE_FAMILIES["toy"] = FigureFamily("toy", "{dataset}-{model}.toy", ("cells",), "Toy - one line per pair",
                                          "test_registry:toy_figure", caption="normalized")
    STUDY_TABLES["toy"] = StudyTable("toy", "toy", "test_registry:write_toy")
    from snakemake.cli import main
    sys.argv = ["snakemake", *sys.argv[1:]]
    main()
""")


def test_a_toy_family_and_a_toy_table_flow_into_the_dry_runs_rules_outputs(tmp_path):
    work = copy_workflow(tmp_path / "work")
    (work / "run_with_toys.py").write_text(RUN_WITH_TOYS)
    run = subprocess.run([sys.executable, "run_with_toys.py", "--cores", "1", "--dry-run", "--printshellcmds",
                          "smoke"], cwd=work, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert run.returncode == 0, run.stderr + run.stdout
    out = run.stdout
    for pair in ("tiny_parity-fcn", "tiny_moon_star-cnn"):  # per pair: every format and its report page
        for suffix in ("png", "pdf", "html"):
            assert f"results/figures/smoke/{pair}.toy.{suffix}" in out
    figures = next(line for line in out.splitlines() if "largelr figures" in line)
    assert "--families normalized compressibility pruning dynamics mechanism csi_core toy --out-dir" in figures
    for suffix in ("parquet", "md"):
        assert f"results/tables/smoke_toy.{suffix}" in out
    assert "results/tables/smoke_toy.tex" not in out  # the record asks for no LaTeX
    aggregate = next(line for line in out.splitlines() if "largelr aggregate" in line)
    assert "--out-trends results/tables/smoke_trends.parquet --out-toy results/tables/smoke_toy.parquet" in aggregate


def test_a_toy_family_and_table_are_choices_of_the_cli_and_drawn_by_the_figures_job(toy_records, tmp_path):
    from largelr.cli import build_parser
    from largelr.figures import study_figure_tasks, run_tasks

    args = build_parser().parse_args(["figures", "--families", "toy", "--out-dir", "d", "--cells", "c.parquet"])
    assert args.families == ["toy"]
    args = build_parser().parse_args(["aggregate", "--train-json", "t.json", "--out-cells", "c", "--out-curves", "p",
                                      "--out-dynamics", "h", "--out-toy", "toy.parquet"])
    assert args.out_toy == "toy.parquet"
    cells = pd.DataFrame({"study": "s", "dataset": ["a", "a", "b"], "model": ["m", "m", "n"], "seed": [0, 1, 0]})
    run_tasks(study_figure_tasks(["toy"], tmp_path, {"cells": cells}, {}, ["png"]), workers=1)
    assert DRAWN == [(3, "a", "m", [str(tmp_path / "a-m.toy.png")]), (3, "b", "n", [str(tmp_path / "b-n.toy.png")])]


def test_the_toy_records_reach_captions_categories_and_report_pages(toy_records):
    from largelr.report_pages import family_of

    assert figure_registry.figure_captions()["toy"] == "normalized"
    assert figure_registry.figure_categories()["toy"] == "Toy - one line per pair"
    assert family_of("d-m.toy", ["normalized", "toy"]) == "toy"
    assert table_registry.aggregate_outputs("s")["toy_md"] == "results/tables/s_toy.md"
    assert "results/tables/s_toy.parquet" in targets.study_table_files("s")


def test_every_record_names_an_implementation_and_a_caption_that_exist():
    for family in FIGURE_FAMILIES.values():
        assert callable(family.function()), family.name
        assert (ROOT / "workflow/report" / family.caption_file).exists(), family.name
        assert set(family.inputs) <= set(figure_registry.TABLE_INPUTS) or (
            len(family.inputs) == 1 and family.npz), family.name
    for table in STUDY_TABLES.values():
        assert callable(table.writer()), table.name


PAIRS = [("d1", "fcn"), ("d1", "cnn"), ("d2", "fcn")]


def test_a_study_draws_the_families_whose_pairs_and_setting_it_has():
    only_study = {"study": PAIRS, "hilo": [], "training_maps": []}
    assert targets.study_families(only_study, {}) == ["normalized", "compressibility", "pruning", "dynamics",
                                                      "mechanism", "csi_core"]
    maps = {"study": PAIRS, "hilo": PAIRS[:1], "training_maps": PAIRS[:1]}
    assert targets.study_families(maps, {"deeplift": False})[-3:] == ["training_maps", "neuron", "hilo"]
    assert targets.study_families(maps, {"deeplift": True})[-2:] == ["hilo", "hilo_methods"]


def test_map_pairs_follow_the_switch_and_hilo_models():
    assert targets.map_pairs({"hilo": False}, PAIRS, "hilo") == []
    assert targets.map_pairs({"hilo": True}, PAIRS, "hilo") == PAIRS
    assert targets.map_pairs({"training_maps": True, "hilo_models": ["fcn"]}, PAIRS, "training_maps") == [
        ("d1", "fcn"), ("d2", "fcn")]


def test_figure_files_are_one_per_pair_or_one_per_study_in_every_format():
    files = targets.study_figure_files("s", {"study": PAIRS[:2], "hilo": [], "training_maps": []}, {}, ["png", "pdf"])
    by_family = {}
    for family, stem, paths in files:
        by_family.setdefault(family, []).append((stem, paths))
    assert by_family["normalized"] == [("d1-cnn", ["results/figures/s/d1-cnn.png", "results/figures/s/d1-cnn.pdf"]),
                                       ("d1-fcn", ["results/figures/s/d1-fcn.png", "results/figures/s/d1-fcn.pdf"])]
    mechanism = ["results/figures/s/mechanism.png", "results/figures/s/mechanism.pdf"]
    assert by_family["mechanism"] == [("mechanism", mechanism)]
    assert len(files) == 4 * 2 + 2


@pytest.mark.parametrize(("argv", "expected", "dry"), [
    (["/usr/bin/snakemake", "-n", "smoke", "--configfile", "extra.yaml"], ["smoke"], True),
    (["/v/lib/python3.12/site-packages/snakemake/__main__.py", "--cores", "2", "a", "b"], ["a", "b"], False),
    (["/usr/bin/snakemake", "--dry-run"], [], True),
    (["/usr/bin/pytest", "-n", "smoke"], [], False),  # another program: its command line says nothing
    ([], [], False),
])
def test_the_snakemake_command_line_gives_the_targets_and_the_dry_run(argv, expected, dry):
    assert targets.command_line_targets(argv) == expected
    assert targets.command_line_dry_run(argv) is dry


def test_targets_name_the_studies_they_build():
    studies, default = ["demo", "smoke", "lr_cifar"], ["demo"]
    assert targets.requested_studies([], studies, default) == ["demo"]
    assert targets.requested_studies(["all", "smoke"], studies, default) == ["demo"]
    assert targets.requested_studies(["figures_smoke", "results/tables/lr_cifar_stats.md"], studies, default) == [
        "smoke", "lr_cifar"]
    assert targets.requested_studies(["results/figures/smoke/x.png", "results/smoke/cells.parquet"], studies,
                                     default) == ["smoke"]
    assert targets.requested_studies(["results/data/parity.pt"], studies, default) == []
