"""The workflow on a real Slurm cluster through `--profile slurm`, in temporary copies.

Needs a running Slurm (`tools/local_slurm.sh`, started by `make test` as root). Without
one the tests are skipped; under CI (`CI` set) they fail instead. The local cluster
has no accounting daemon, hence the overlay flags `--slurm-status-command squeue
--slurm-no-account`; everything else comes from `profiles/slurm` as a user gets it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import ROOT, snakemake

pytestmark = pytest.mark.slow

JOB_PREFIX = "largelrtest"
OVERLAY = ["--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-jobname-prefix", JOB_PREFIX]
# Columns that describe the run, not the result: provenance, and timings (seconds, rates).
PROVENANCE = {"device", "git_revision", "largelr_version", "torch_version"}


def describes_the_run(name: str) -> bool:
    return name in PROVENANCE or name.endswith("_s")


def slurm_ready() -> str | None:
    """None when a Slurm node takes jobs, else why not."""
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (as root: tools/local_slurm.sh)"
    if os.geteuid() == 0:
        subprocess.run([str(ROOT / "tools/local_slurm.sh")], capture_output=True, timeout=600)
    states = subprocess.run(["sinfo", "--responding", "--noheader", "--format=%T"], capture_output=True, text=True)
    if not {"idle", "mixed", "allocated", "completing"} & set(states.stdout.split()):
        return f"no Slurm node takes jobs (sinfo: {states.stdout.strip() or states.stderr.strip()})"
    return None


def our_jobs() -> list[str]:
    listing = subprocess.run(["squeue", "--noheader", "--format=%i %j"], capture_output=True, text=True).stdout
    return [job for job, name in map(str.split, listing.splitlines()) if name.startswith(JOB_PREFIX)]


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_ready()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Slurm for these tests: {reason}")
        pytest.skip(reason)
    yield
    jobs = our_jobs()
    if jobs:
        subprocess.run(["scancel", *jobs], check=False)


def repository_copy(dest: Path) -> Path:
    for name in ("Snakefile", "config.yaml", "Makefile"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("workflow", "profiles", "tools", "envs"):
        shutil.copytree(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def slurm_home(tmp_path_factory) -> dict:
    """Environment whose user config directory got the profile by the documented step."""
    config_home = tmp_path_factory.mktemp("config_home")
    env = os.environ | {
        "XDG_CONFIG_HOME": str(config_home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    setup = subprocess.run(["make", "slurm-profile"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert setup.returncode == 0, setup.stderr
    assert (config_home / "snakemake/slurm/config.yaml").is_file()
    return env


def slurm_snakemake(
    workdir: Path, env: dict, *args: str, background: bool = False
) -> subprocess.CompletedProcess | subprocess.Popen:
    # The documented command, `snakemake --cores all --profile slurm`, plus the test overlay.
    command = [str(Path(sys.executable).parent / "snakemake"), "--cores", "all", "--profile", "slurm", *OVERLAY, *args]
    if background:
        return subprocess.Popen(
            command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def slurm_run(cluster, slurm_home, tmp_path_factory) -> Path:
    work = repository_copy(tmp_path_factory.mktemp("slurm"))
    run = slurm_snakemake(work, slurm_home, "smoke")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return work


@pytest.fixture(scope="module")
def local_run(cluster, tmp_path_factory) -> Path:
    work = repository_copy(tmp_path_factory.mktemp("local"))
    run = snakemake(work, "smoke")
    assert run.returncode == 0, run.stderr[-3000:]
    return work


def result_tables(work: Path) -> dict[str, pd.DataFrame]:
    paths = [work / "results/smoke/cells.parquet", *sorted((work / "results/tables").glob("smoke_*.parquet"))]
    tables = {}
    for path in paths:
        table = pd.read_parquet(path)
        table = table.drop(columns=[c for c in table.columns if describes_the_run(c)])
        if "metric" in table.columns:
            table = table[~table["metric"].map(describes_the_run)]
        keys = [
            c
            for c in ("study", "dataset", "model", "knob", "value", "seed", "variable", "metric")
            if c in table.columns
        ]
        tables[path.name] = table.sort_values(keys).reset_index(drop=True)
    return tables


def test_smoke_study_on_slurm_equals_a_local_run(slurm_run, local_run):
    on_slurm, local = result_tables(slurm_run), result_tables(local_run)
    assert set(on_slurm) == set(local) and "cells.parquet" in local
    for name, table in local.items():
        pd.testing.assert_frame_equal(on_slurm[name], table, check_exact=False, rtol=1e-9, obj=name)
    config = yaml.safe_load((slurm_run / "config.yaml").read_text())
    assert len(local["cells.parquet"]) == len(config["studies"]["smoke"]["seeds"]) * 2 * 4


def test_slurm_sigterm_checkpoints_and_the_retry_resumes(cluster, slurm_home, tmp_path):
    work = repository_copy(tmp_path)
    # One cell long enough to be caught mid-training (tens of seconds on one CPU); the
    # tiny rate keeps it from reaching the stopping accuracy early.
    overlay = tmp_path / "preempt_overlay.yaml"
    study = {
        "knob": "lr",
        "seeds": [0],
        "values": [0.0001],
        "train": {"optimizer": "sgd", "batch_size": 100, "eval_every": 2000, "max_steps": 60000},
        "grid": [{"datasets": ["tiny_parity"], "models": ["fcn"], "model_params": {"fcn": {"depth": 2, "width": 32}}}],
    }
    overlay.write_text(yaml.safe_dump({"studies": {"preempt": study}}))
    cell = "preempt/tiny_parity/fcn/lr=0.0001/seed=0"
    log = work / f"results/logs/train/{cell}.log"
    process = slurm_snakemake(
        work, slurm_home, f"results/{cell}/train.json", "--configfile", str(overlay), background=True
    )
    deadline = time.monotonic() + 300
    signalled = False
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and log.read_text().count("\nstep") >= 2:
            jobs = our_jobs()
            # The whole job, as on preemption or at the time limit.
            subprocess.run(["scancel", "--signal=TERM", "--full", *jobs], check=True)
            signalled = True
            break
        time.sleep(0.5)
    output, _ = process.communicate(timeout=900)
    assert signalled, "training never started on the cluster:\n" + output[-3000:]
    assert process.returncode == 0, output[-4000:]
    summary = json.loads((work / f"results/{cell}/train.json").read_text())["summary"]
    assert summary["steps"] == 60000 and summary["stopped_by"] == "max_steps"
    assert 0 < summary["resumed_from_step"] < 60000
    assert "resuming from step" in log.read_text()
    assert not (work / f"results/{cell}/checkpoint.pt").exists()


def cell_interval(log: Path) -> tuple[float, float, str, str]:
    """(start, end, Slurm job, visible GPUs) of one trained cell, from its train log's first and last line."""
    stamp = r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3})"
    lines = log.read_text().strip().splitlines()
    start = re.search(rf"\((?:slurm job (\d+))?(?:, )?(?:CUDA_VISIBLE_DEVICES=(\S+))?\) at {stamp}$", lines[0])
    end = re.search(rf" at {stamp}$", lines[-1])
    assert start and end and lines[-1].startswith("done:"), lines[0] + "\n" + lines[-1]

    def seconds(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()

    return seconds(start.group(3)), seconds(end.group(1)), start.group(1) or "", start.group(2) or ""


def assert_trained_at_the_same_time(a: tuple[float, float], b: tuple[float, float]) -> None:
    """The two cells' training intervals share at least half of the shorter one. Relative, so that it
    holds on a fast machine as on a slow one; one after the other they share nothing (overlap < 0)."""
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    shorter = min(a[1] - a[0], b[1] - b[0])
    assert shorter > 0 and overlap > 0.5 * shorter, {"a": a, "b": b, "overlap": overlap, "shorter": shorter}


def two_cell_study(tmp_path: Path, name: str) -> tuple[Path, list[str]]:
    """A config overlay with one study of two FCN cells (seeds 0 and 1) that train for a few seconds
    each (a tiny rate keeps them from fitting early), and the cells' paths under results/."""
    overlay = tmp_path / f"{name}_overlay.yaml"
    study = {
        "knob": "lr",
        "seeds": [0, 1],
        "values": [0.0001],
        "train": {"optimizer": "sgd", "batch_size": 100, "eval_every": 2000, "max_steps": 20000},
        "grid": [{"datasets": ["tiny_parity"], "models": ["fcn"], "model_params": {"fcn": {"depth": 2, "width": 32}}}],
    }
    overlay.write_text(yaml.safe_dump({"studies": {name: study}}))
    return overlay, [f"{name}/tiny_parity/fcn/lr=0.0001/seed={seed}" for seed in (0, 1)]


def test_small_cells_of_two_allocations_train_on_one_gpu_at_once(cluster, slurm_home, tmp_path):
    # With LARGELR_SLURM_GPU_SHARE=shard:1 the FCN cells ask for one shard of a GPU
    # (--gres=shard:1) instead of a whole GPU; the local node splits its first GPU into 4
    # shards. One cell per allocation here (--group-components cells_{model}=1): the two
    # allocations run at once, on the same GPU, each cell's log says when and where.
    work = repository_copy(tmp_path)
    overlay, cells = two_cell_study(tmp_path, "share")
    env = slurm_home | {"LARGELR_SLURM_GPU_SHARE": "shard:1"}
    run = slurm_snakemake(
        work,
        env,
        *[f"results/{cell}/train.json" for cell in cells],
        "--configfile",
        str(overlay),
        "--group-components",
        "cells_{model}=1",
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (start_a, end_a, job_a, gpus_a), (start_b, end_b, job_b, gpus_b) = [
        cell_interval(work / f"results/logs/train/{cell}.log") for cell in cells
    ]
    assert job_a and job_b and job_a != job_b  # two allocations
    assert gpus_a == gpus_b == "0"  # both on the sharded GPU
    for job in (job_a, job_b):  # each asked for a GPU slice, not a GPU
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
        assert "TresPerNode=gres:shard:1" in shown and "gres:gpu" not in shown, shown
    assert_trained_at_the_same_time((start_a, end_a), (start_b, end_b))


def test_cells_of_one_allocation_train_on_its_gpu_at_once(cluster, slurm_home, tmp_path):
    # tools/slurm_pack.sbatch runs Snakemake inside one allocation (2 cores, one GPU): its local
    # executor starts both cells at once, both see the allocation's GPU, and their logs overlap.
    work = repository_copy(tmp_path)
    overlay, cells = two_cell_study(tmp_path, "pack")
    run = subprocess.run(
        [
            "sbatch",
            "--wait",
            "--cpus-per-task=2",
            "--mem=4G",
            f"--job-name={JOB_PREFIX}-pack",
            "tools/slurm_pack.sbatch",
            *[f"results/{cell}/train.json" for cell in cells],
            "--configfile",
            str(overlay),
        ],
        cwd=work,
        env=slurm_home,
        capture_output=True,
        text=True,
        timeout=900,
    )
    job = re.search(r"Submitted batch job (\d+)", run.stdout)
    output = (work / f"slurm-pack-{job.group(1)}.out").read_text() if job else ""
    assert run.returncode == 0, run.stdout + run.stderr + output[-3000:]
    (start_a, end_a, job_a, gpus_a), (start_b, end_b, job_b, gpus_b) = [
        cell_interval(work / f"results/logs/train/{cell}.log") for cell in cells
    ]
    assert job_a == job_b == job.group(1)  # one allocation
    assert gpus_a == gpus_b and gpus_a  # its GPU, seen by both cells
    assert_trained_at_the_same_time((start_a, end_a), (start_b, end_b))
