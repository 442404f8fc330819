"""Figure families and study tables are one record each (largelr.registry): a toy family and a toy
table, registered as one record each, reach the rules' outputs, the CLI and the figures job."""

from __future__ import annotations

import dataclasses
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
from largelr.registry.reference import reference_markdown
from largelr.registry.tables import STUDY_TABLES, StudyTable

TOY_FAMILY = FigureFamily(
    "toy",
    "{dataset}-{model}.toy",
    ("cells",),
    "Toy - one line per pair",
    "test_registry:toy_figure",
    caption="normalized",
)
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
    run = subprocess.run(
        [sys.executable, "run_with_toys.py", "--cores", "1", "--dry-run", "--printshellcmds", "smoke"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
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
    from largelr.figures import run_tasks, study_figure_tasks

    args = build_parser().parse_args(["figures", "--families", "toy", "--out-dir", "d", "--cells", "c.parquet"])
    assert args.families == ["toy"]
    args = build_parser().parse_args(
        [
            "aggregate",
            "--train-json",
            "t.json",
            "--out-cells",
            "c",
            "--out-curves",
            "p",
            "--out-dynamics",
            "h",
            "--out-toy",
            "toy.parquet",
        ]
    )
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


def test_the_records_and_the_target_helpers_import_neither_torch_nor_the_plotting_stack():
    code = (
        "import sys, largelr.registry.figures, largelr.registry.tables, largelr.targets, largelr.report_pages; "
        "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'seaborn') if m in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_checked_in_reference_page_is_the_records():
    assert (ROOT / "docs/reference.md").read_text() == reference_markdown(), (
        "regenerate it: python -m largelr.registry.reference"
    )


def test_the_reference_page_lists_a_record_added_at_run_time(monkeypatch):
    toy = dataclasses.replace(STUDY_TABLES["table1"], name="toy_table", stem="toy_stem", what="a toy table")
    monkeypatch.setitem(STUDY_TABLES, "toy_table", toy)
    assert "| `toy_table` | `toy_stem` | a toy table |" in reference_markdown()


def test_every_record_names_an_implementation_and_a_caption_that_exist():
    for family in FIGURE_FAMILIES.values():
        assert callable(family.function()), family.name
        assert (ROOT / "workflow/report" / family.caption_file).exists(), family.name
        assert set(family.inputs) <= set(figure_registry.TABLE_INPUTS) or (len(family.inputs) == 1 and family.npz), (
            family.name
        )
    for table in STUDY_TABLES.values():
        assert callable(table.writer()), table.name


# A dry run that reports, after Snakemake has parsed the workflow and planned the jobs, whether
# anything imported torch on the way.
RUN_AND_REPORT_TORCH = textwrap.dedent("""
    import sys
    from snakemake.cli import main
    sys.argv = ["snakemake", *sys.argv[1:]]
    try:
        main()
    except SystemExit as done:
        print("torch imported:", "torch" in sys.modules)
        raise
""")


@pytest.mark.parametrize("target", ["demo", "all"])
def test_snakemakes_parse_and_dry_run_import_no_torch(tmp_path, target):
    # "all" is the whole config's default target: its sets read MNIST, CIFAR, CelebA, ... files,
    # absent here, so the parse runs every kind's data check (largelr.data_files) too.
    work = copy_workflow(tmp_path / "work")
    (work / "run_and_report.py").write_text(RUN_AND_REPORT_TORCH)
    run = subprocess.run(
        [sys.executable, "run_and_report.py", "--cores", "1", "--dry-run", target],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert "This was a dry-run" in run.stdout
    assert "torch imported: False" in run.stdout
    if target == "all":  # the data checks ran: they name the missing files
        assert "CelebA not found" in run.stderr and "MNIST not found" in run.stderr
