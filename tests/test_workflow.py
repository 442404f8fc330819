"""End to end: the real Snakemake workflow on the `smoke` study, in a temporary copy.

The copy's config marks `smoke` as a Table 1 study with hi/lo maps and adds a tiny
intervention study, so that its default target builds every table and figure family."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from largelr.aggregate import TABLE1_VARIABLES, seed_means
from largelr.config import AnalysisSettings, study_cells

ROOT = Path(__file__).resolve().parents[1]
CELLS_COLUMNS = {
    "study",
    "dataset",
    "model",
    "knob",
    "value",
    "seed",
    "steps",
    "stopped_by",
    "diverged",
    "test_acc",
    "test_acc_bc",
    "prunability",
    "compressibility",
    "csi",
    "class_sep",
    "spurious_share",
    "attribution_entropy",
    "max_bc_loss_ratio",
    "in_range",
    "largelr_version",
    "git_revision",
    "torch_version",
    "device",
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def copy_workflow(work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, work / name)
    for name in ("workflow", "profiles", "envs"):
        shutil.copytree(ROOT / name, work / name)
    return work


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def paper_shaped_smoke(config: dict) -> dict:
    """`smoke` as a Table 1 study with hi/lo maps, plus a tiny Table 2 study; both the default target."""
    smoke = config["studies"]["smoke"]
    smoke["paper"] = "table1"
    smoke["analysis"] = smoke.get("analysis", {}) | {"hilo": True}
    config["studies"]["smoke_momentum"] = {
        "description": "tiny intervention",
        "paper": "table2",
        "knob": "momentum",
        "seeds": [0, 1],
        "values": [0.5, 0.9],
        "train": smoke["train"] | {"lr": 0.05},
        "analysis": smoke["analysis"] | {"hilo": False},
        "grid": [{"datasets": ["tiny_parity"], "models": ["fcn"], "model_params": {"fcn": {"depth": 2, "width": 32}}}],
    }
    config["default_studies"] = ["smoke", "smoke_momentum"]
    return config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("paper_smoke"))
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    (workdir / "config.yaml").write_text(yaml.safe_dump(paper_shaped_smoke(config), sort_keys=False))
    run = snakemake(workdir)  # the default target
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


def test_dry_run_schedules_one_job_per_cell_and_step(workdir):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    smoke = config["studies"]["smoke"]
    n_pairs = sum(len(b["datasets"]) * len(b["models"]) for b in smoke["grid"])
    n_cells = n_pairs * len(smoke["values"]) * len(smoke["seeds"])
    run = snakemake(workdir, "smoke", "--dry-run", "--quiet", "rules")
    assert run.returncode == 0, run.stderr
    counts = {}
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    n_datasets = len({d for b in smoke["grid"] for d in b["datasets"]})
    assert counts == {
        "data": n_datasets,
        "train": n_cells,
        "analyze": n_cells,
        "aggregate": 1,
        "figures_smoke": 1,
        "smoke": 1,
        "total": counts["total"],
    }


def test_smoke_study_writes_cells_table_and_figures(smoke_run):
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    cells = pd.read_parquet(smoke_run / "results/smoke/cells.parquet")
    assert len(cells) == len(study_cells(config, "smoke"))
    assert CELLS_COLUMNS <= set(cells.columns)
    assert cells["value"].dtype == "float64" and cells["seed"].dtype == "int64"
    assert cells.loc[~cells["diverged"], "test_acc"].between(0, 1).all()
    for cell in study_cells(config, "smoke"):
        base = smoke_run / "results" / cell.path
        assert {
            "model.pt",
            "history.parquet",
            "train.json",
            "prune.parquet",
            "represent.parquet",
            "attribute.parquet",
        } <= {p.name for p in base.iterdir()}
        for rule in ("train", "analyze"):
            benchmark = pd.read_csv(smoke_run / f"results/benchmarks/{rule}/{cell.path}.tsv", sep="\t")
            assert benchmark["s"].iloc[0] > 0
        assert (smoke_run / f"results/logs/train/{cell.path}.log").read_text().startswith("training")
    for dataset, model in set(zip(cells["dataset"], cells["model"])):
        png = smoke_run / f"results/figures/smoke/{dataset}-{model}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_table1_matches_a_recomputation_from_cells(smoke_run):
    cells = pd.read_parquet(smoke_run / "results/smoke/cells.parquet")
    table = pd.read_parquet(smoke_run / "results/tables/smoke_table1.parquet")
    usable = cells[cells["in_range"]]
    for (dataset, model), pair in usable.groupby(["dataset", "model"]):
        rows = table[(table["dataset"] == dataset) & (table["model"] == model)].set_index("variable")
        for variable, column in TABLE1_VARIABLES.items():
            means = pair.groupby("value")[column].mean()
            assert rows.loc[variable, "min"] == pytest.approx(means.min(), nan_ok=True)
            assert rows.loc[variable, "max"] == pytest.approx(means.max(), nan_ok=True)
        assert rows.loc["lr", "min"] == pair["value"].min()
    assert len(seed_means(cells, ["test_acc"])) == usable.groupby(["dataset", "model", "value"]).ngroups


def test_second_run_has_nothing_to_do(smoke_run):
    run = snakemake(smoke_run, "--dry-run")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


def test_adding_a_seed_schedules_only_the_new_cells(smoke_run, tmp_path):
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    config["studies"]["smoke"]["seeds"].append(9)
    alt = tmp_path / "more_seeds.yaml"
    alt.write_text(yaml.safe_dump(config))
    run = snakemake(smoke_run, "smoke", "--dry-run", "--quiet", "rules", "--configfile", str(alt))
    assert run.returncode == 0, run.stderr
    n_pairs = sum(len(b["datasets"]) * len(b["models"]) for b in config["studies"]["smoke"]["grid"])
    counts = {p[0]: int(p[1]) for p in map(str.split, run.stdout.splitlines()) if len(p) == 2 and p[1].isdigit()}
    assert counts["train"] == n_pairs * len(config["studies"]["smoke"]["values"])
    assert "data" not in counts


def test_workflow_files_are_snakefmt_clean():
    files = [str(ROOT / "Snakefile"), str(ROOT / "workflow")]
    run = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_data_rule_builds_a_dataset_and_its_card_from_a_data_root(workdir, tmp_path):
    from test_bases import write_mnist

    write_mnist(tmp_path / "raw", n_train=60, n_test=20)
    overrides = tmp_path / "fabricated.yaml"
    overrides.write_text(yaml.safe_dump({"datasets": {"colored_mnist": {"verify_checksums": False}}}))
    target = "results/data/colored_mnist.json"
    run = snakemake(workdir, target, "--configfile", str(overrides), "--config", f"data_root={tmp_path / 'raw'}")
    assert run.returncode == 0, run.stderr[-3000:]
    card = json.loads((workdir / target).read_text())
    assert card["splits"]["train"]["size"] == 60 and card["splits"]["test"]["size"] == 20
    # LfF's per-class blocks: no class of the 60 images holds 20, so 0.025 x n_k < 0.5 rounds every
    # other colour's block to empty: no conflicting sample
    assert card["splits"]["train"]["rho"] == pytest.approx(0.0, abs=1e-12)  # a torch mean vs /
    assert (workdir / "results/data/colored_mnist.png").stat().st_size > 5_000


def test_missing_data_fails_with_the_expected_files_and_leaves_no_output(workdir, tmp_path):
    run = snakemake(workdir, "results/data/double_mnist.pt", "--config", f"data_root={tmp_path / 'empty'}")
    assert run.returncode != 0
    log = (workdir / "results/logs/data/double_mnist.log").read_text()
    assert "train-images-idx3-ubyte" in log and str(tmp_path / "empty") in log
    assert not list((workdir / "results/data").glob("double_mnist.pt*"))


def test_prunability_is_the_mean_chance_corrected_structured_retention_and_every_curve_is_kept(smoke_run):
    cells = pd.read_parquet(smoke_run / "results/smoke/cells.parquet")
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    for cell in study_cells(config, "smoke")[:3]:
        prune = pd.read_parquet(smoke_run / "results" / cell.path / "prune.parquet")
        assert set(prune["method"]) == set(AnalysisSettings().prune_methods)  # every default curve
        assert (prune.groupby("method").size() == 10).all()
        row = cells[
            (cells["dataset"] == cell.dataset)
            & (cells["model"] == cell.model)
            & (cells["value"] == float(cell.value))
            & (cells["seed"] == cell.seed)
        ].iloc[0]
        structured = prune[prune["method"] == "structured"]
        # c = 1/2 (binary smoke sets) or 1/10: the chance-corrected retention from the accuracies by hand
        base = structured.loc[structured["kappa"] == 0.0, "accuracy"].iloc[0]
        chance = 1 / row["num_classes"]
        by_hand = ((structured["accuracy"] - chance) / (base - chance)).mean() if base > chance else float("nan")
        assert row["prunability"] == pytest.approx(by_hand, nan_ok=True) and row["prunability_reading"] == "chance"
        assert row["prunability_chance"] == pytest.approx(by_hand, nan_ok=True)
        assert row["prunability_ratio"] == pytest.approx(structured["retention"].mean(), nan_ok=True)
        assert row["prunability_ratio_magnitude_global"] == pytest.approx(
            prune[prune["method"] == "magnitude_global"]["retention"].mean(), nan_ok=True
        )


STUDY_FAMILIES = ["cells.parquet", "prune_curves.parquet", "dynamics.parquet"]
TABLE_FAMILIES = ["table1", "stats", "mechanism"]


def test_default_target_builds_every_table_and_figure_family(smoke_run):
    results = smoke_run / "results"
    for name in STUDY_FAMILIES:
        assert (results / "smoke" / name).stat().st_size > 0
    for study in ("smoke", "smoke_momentum"):
        for table in TABLE_FAMILIES:
            assert len(pd.read_parquet(results / f"tables/{study}_{table}.parquet")) > 0
            assert (results / f"tables/{study}_{table}.md").read_text().startswith(f"# {study}")
    for name in ("tables/table1", "tables/table2", "compare_paper"):
        assert len(pd.read_parquet(results / f"{name}.parquet")) > 0
        assert "| --- |" not in (results / f"{name}.md").read_text() and "|---|" in (results / f"{name}.md").read_text()
    cells = pd.read_parquet(results / "smoke/cells.parquet")
    stems = [
        f"smoke/{d}-{m}{kind}"
        for d, m in set(zip(cells["dataset"], cells["model"]))
        for kind in ("", ".pruning", ".dynamics", ".hilo")
    ]
    stems += ["smoke/mechanism", "smoke_momentum/mechanism", "interventions-tiny_parity-fcn"]
    for stem in stems:
        assert (results / f"figures/{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        assert (results / f"figures/{stem}.pdf").read_bytes()[:5] == b"%PDF-", stem
    for study in ("smoke", "smoke_momentum"):  # the report's summary page of every study
        page = (results / f"figures/{study}/summary.html").read_text()
        assert page.startswith("<!DOCTYPE html>") and f"<h2>Study {study}</h2>" in page and "<table" in page
    for stem in stems[:-1]:  # every study figure has its report page: the PNG inline, the caption under it
        page = (results / f"figures/{stem}.html").read_text()
        assert "data:image/png;base64," in page and "<figcaption>" in page, stem
    for name in ("tables/smoke_table1", "tables/table1", "tables/table2", "compare_paper"):
        assert r"\begin{tabular}" in (results / f"{name}.tex").read_text(), name


def t_half_width(std: float, n: int) -> float:
    from scipy.stats import t

    return t.ppf(0.975, n - 1) * std / n**0.5


def test_seed_statistics_match_a_groupby_of_cells(smoke_run):
    cells = pd.read_parquet(smoke_run / "results/smoke/cells.parquet")
    stats = pd.read_parquet(smoke_run / "results/tables/smoke_stats.parquet")
    for metric in ("test_acc", "prunability", "csi", "max_bc_loss_ratio"):
        grouped = cells.groupby(["dataset", "model", "value"])[metric]
        expected = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(), "n": grouped.count()})
        ours = stats[stats["metric"] == metric].set_index(["dataset", "model", "value"])
        assert len(ours) == len(expected)
        for key, row in expected.iterrows():
            assert ours.loc[key, "mean"] == pytest.approx(row["mean"], nan_ok=True)
            assert ours.loc[key, "std"] == pytest.approx(row["std"], nan_ok=True)
            assert ours.loc[key, "n"] == row["n"]
            if row["n"] >= 3:
                half = t_half_width(row["std"], row["n"])
                assert ours.loc[key, "ci_high"] == pytest.approx(row["mean"] + half)
            else:  # below 3 seeds: the sd alone, no interval
                assert math.isnan(ours.loc[key, "ci_high"])


def test_table2_and_mechanism_match_a_recomputation_from_cells(smoke_run):
    results = smoke_run / "results"
    lr = pd.read_parquet(results / "smoke/cells.parquet")
    momentum = pd.read_parquet(results / "smoke_momentum/cells.parquet")
    table2 = pd.read_parquet(results / "tables/table2.parquet").set_index(["knob", "variable"])
    assert set(zip(table2["dataset"], table2["model"])) == {("tiny_parity", "fcn")}
    for knob, cells in (("lr", lr), ("momentum", momentum)):
        usable = cells[cells["in_range"] & (cells["dataset"] == "tiny_parity") & (cells["model"] == "fcn")]
        for variable in ("test_acc", "prunability", "csi"):
            means = usable.groupby("value")[variable].mean()
            assert table2.loc[(knob, variable), "min"] == pytest.approx(means.min())
            assert table2.loc[(knob, variable), "max"] == pytest.approx(means.max())
        assert table2.loc[(knob, knob), "max"] == usable["value"].max()
    mechanism = pd.read_parquet(results / "tables/smoke_mechanism.parquet").set_index(["dataset", "model"])
    for (dataset, model), pair in lr[lr["in_range"]].groupby(["dataset", "model"]):
        r = pair[["max_bc_loss_ratio", "test_acc"]].corr().iloc[0, 1]
        assert mechanism.loc[(dataset, model), "pearson_r"] == pytest.approx(r, nan_ok=True)
    table1 = pd.read_parquet(results / "tables/table1.parquet")
    smoke_table1 = pd.read_parquet(results / "tables/smoke_table1.parquet")
    pd.testing.assert_frame_equal(table1, smoke_table1)  # the only Table 1 study
    compare = pd.read_parquet(results / "compare_paper.parquet")
    assert compare["ours_min"].isna().all()  # no reference row is a tiny dataset
    assert compare["paper_min"].notna().all()


def test_report_bundles_the_figures_with_captions(smoke_run):
    run = snakemake(smoke_run, "--report", "results/report.html")
    assert run.returncode == 0, run.stderr[-3000:]
    page = (smoke_run / "results/report.html").read_text()
    assert len(page) > 100_000
    # the study's summary page and the figures, each with its family's caption (workflow/report/)
    assert "summary.html" in page and "The study at a glance" in page
    assert "Normalized multi-variable plot" in page and "mechanism.html" in page
    # the landing page: what was run, and the figures filed under the paper's figure numbers
    assert "Studies run" in page and "Fig. 12, 27 - mechanism" in page
    assert "Study smoke" in page and "Study smoke_momentum" in page  # every study's summary on the landing page


def test_missing_data_is_listed_before_scheduling_and_other_studies_still_run(tmp_path):
    work = copy_workflow(tmp_path / "work")
    config = yaml.safe_load((work / "config.yaml").read_text())
    tiny = {
        "knob": "lr",
        "seeds": [0],
        "values": [0.1],
        "paper": "table1",
        "train": {"batch_size": 100, "eval_every": 10, "max_steps": 10, "target_train_acc": 0.0},
        "analysis": {"represent_samples": 50, "attribute_samples": 4, "ig_steps": 4, "prune_methods": ["structured"]},
    }
    config["studies"] = {
        "needs_mnist": tiny | {"grid": [{"datasets": ["colored_mnist"], "models": ["fcn"]}]},
        "tiny_ok": tiny
        | {
            "grid": [
                {"datasets": ["tiny_parity"], "models": ["fcn"], "model_params": {"fcn": {"depth": 1, "width": 8}}}
            ]
        },
    }
    config["default_studies"] = ["needs_mnist", "tiny_ok"]
    config.pop("landscapes", None)  # they name studies this config replaced
    config["data_root"] = str(tmp_path / "empty")
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(work, "--keep-going")
    assert run.returncode != 0  # the missing dataset's data job fails, loudly
    output = run.stdout + run.stderr
    block = output.index("largelr: data missing")
    assert block < output.index("Building DAG")
    assert "needs_mnist: cannot run, missing colored_mnist" in output
    assert "train-images-idx3-ubyte" in output and str(tmp_path / "empty") in output
    assert "tiny_ok" not in output[block : output.index("Building DAG")]
    table = pd.read_parquet(work / "results/tables/table1.parquet")
    assert set(table["study"]) == {"tiny_ok"}  # the paper table uses the studies whose data is present
    assert (work / "results/figures/tiny_ok/tiny_parity-fcn.png").exists()
    assert not (work / "results/needs_mnist").exists()


def test_every_figure_family_renders_the_smoke_study_with_its_axes_titles_and_legends(smoke_run, tmp_path):
    import numpy as np

    from largelr import figures

    results = smoke_run / "results"
    cells = pd.read_parquet(results / "smoke/cells.parquet")
    curves = pd.read_parquet(results / "smoke/prune_curves.parquet")
    history = pd.read_parquet(results / "smoke/dynamics.parquet")
    mechanism = pd.read_parquet(results / "tables/smoke_mechanism.parquet")
    dataset, model = "tiny_parity", "fcn"
    pair = cells[(cells["dataset"] == dataset) & (cells["model"] == model)]
    seeds = f"{pair.loc[pair['included'], 'seed'].nunique()} seeds"

    fig = figures.pair_figure(cells, dataset, model, [tmp_path / "n.png"])
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("learning rate η", "normalized value (per variable)")
    assert ax.get_title().startswith(f"smoke: {dataset} × {model}") and seeds in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("unbiased test acc.  [") for t in legend) and any(
        t.startswith("prunability") for t in legend
    )

    fig = figures.compressibility_figure(cells, dataset, model, [tmp_path / "c.png"])
    assert any(t.get_text().startswith("act. PQ-index") for t in fig.axes[0].get_legend().get_texts())

    fig = figures.pruning_figure(curves, cells, dataset, model, [tmp_path / "p.png"])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in panels] == list(dict.fromkeys(curves["method"]))
    assert (
        panels[0].get_xlabel() == "pruned fraction κ"
        and panels[0].get_legend().get_title().get_text() == "lr (test acc.)"
    )

    fig = figures.dynamics_figure(history, cells, dataset, model, [tmp_path / "d.png"])
    assert (
        fig.axes[0].get_ylabel() == "BC loss ratio (share of batch CE)" and fig.axes[0].get_xlabel() == "training step"
    )
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == sorted(
        f"{v:g}" for v in pair.loc[pair["included"], "value"].unique()
    )

    fig = figures.mechanism_figure(cells, mechanism, [tmp_path / "m.png"])
    assert all(" r = " in ax.get_title() for ax in fig.axes if ax.get_title())
    assert fig.axes[0].get_xlabel() == "max BC loss ratio in training"

    fig = figures.csi_core_figure(cells, [tmp_path / "k.png"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert all(
        title.split(":")[0] in {f"{d} × {m}" for d, m in zip(cells["dataset"], cells["model"])} for title in titles
    )

    npz = next((results / "smoke/hilo").glob("*.npz"))
    fig = figures.hilo_figure(npz, "smoke", *npz.stem.split("-", 1), 2, [tmp_path / "h.png"])
    with np.load(npz) as data:
        shown = min(8, len(data["labels"]))
    assert len(fig.axes) == (3 * shown if shown else 1)
