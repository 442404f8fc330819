"""End to end: the real Snakemake workflow on the `smoke` study, in a temporary copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from largelr.aggregate import TABLE1_VARIABLES, seed_means
from largelr.config import study_cells

ROOT = Path(__file__).resolve().parents[1]
CELLS_COLUMNS = {"study", "dataset", "model", "knob", "value", "seed", "steps", "stopped_by", "diverged",
                 "test_acc", "test_acc_bc", "prunability", "compressibility", "csi", "class_sep",
                 "spurious_share", "attribution_entropy", "max_bc_loss_ratio", "in_range",
                 "largelr_version", "git_revision", "torch_version", "device"}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("workflow")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, work / name)
    for name in ("workflow", "profiles"):
        shutil.copytree(ROOT / name, work / name)
    return work


@pytest.fixture(scope="module")
def smoke_run(workdir) -> Path:
    run = snakemake(workdir, "smoke")
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
    assert counts == {"data": n_datasets, "train": n_cells, "analyze": n_cells, "aggregate": 1,
                      "figure": n_pairs, "card": n_datasets, "smoke": 1, "total": counts["total"]}


def test_smoke_study_writes_cells_table_and_figures(smoke_run):
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    cells = pd.read_parquet(smoke_run / "results/smoke/cells.parquet")
    assert len(cells) == len(study_cells(config, "smoke"))
    assert CELLS_COLUMNS <= set(cells.columns)
    assert cells["value"].dtype == "float64" and cells["seed"].dtype == "int64"
    assert cells.loc[~cells["diverged"], "test_acc"].between(0, 1).all()
    for cell in study_cells(config, "smoke"):
        base = smoke_run / "results" / cell.path
        assert {"model.pt", "history.parquet", "train.json", "prune.parquet", "represent.parquet",
                "attribute.parquet"} <= {p.name for p in base.iterdir()}
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
    run = snakemake(smoke_run, "smoke", "--dry-run")
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
    assert card["splits"]["train"]["rho"] == round(0.025 * 60) / 60
    assert (workdir / "results/data/colored_mnist.png").stat().st_size > 5_000


def test_missing_data_fails_with_the_expected_files_and_leaves_no_output(workdir, tmp_path):
    run = snakemake(workdir, "results/data/double_mnist.pt", "--config", f"data_root={tmp_path / 'empty'}")
    assert run.returncode != 0
    log = (workdir / "results/logs/data/double_mnist.log").read_text()
    assert "train-images-idx3-ubyte" in log and str(tmp_path / "empty") in log
    assert not list((workdir / "results/data").glob("double_mnist.pt*"))


def test_prunability_is_the_mean_structured_retention_and_every_curve_is_kept(smoke_run):
    cells = pd.read_parquet(smoke_run / "results/smoke/cells.parquet")
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    for cell in study_cells(config, "smoke")[:3]:
        prune = pd.read_parquet(smoke_run / "results" / cell.path / "prune.parquet")
        assert set(prune["method"]) == {"structured", "column", "magnitude", "magnitude_global"}
        assert (prune.groupby("method").size() == 10).all()
        row = cells[(cells["dataset"] == cell.dataset) & (cells["model"] == cell.model)
                    & (cells["value"] == float(cell.value)) & (cells["seed"] == cell.seed)].iloc[0]
        structured = prune[prune["method"] == "structured"]["retention"].mean()
        assert row["prunability"] == pytest.approx(structured, nan_ok=True)
        assert row["prunability_magnitude_global"] == pytest.approx(
            prune[prune["method"] == "magnitude_global"]["retention"].mean(), nan_ok=True)
