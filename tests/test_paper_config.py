"""config.yaml declares the paper's studies, and the full workflow's DAG has exactly the jobs
its grids imply (counted here from the YAML, independently of largelr.config)."""

from __future__ import annotations

import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INTERVENTION_KNOBS = {"batch_size", "momentum", "l1", "weight_decay", "focal_gamma", "asam_rho"}


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def studies(config, paper):
    return {name: spec for name, spec in config["studies"].items() if spec.get("paper") == paper}


def blocks(spec):
    """(dataset, model, values) for every pair of a study."""
    for block in spec["grid"]:
        for dataset in block["datasets"]:
            for model in block["models"]:
                yield dataset, model, block.get("values", spec.get("values"))


def kind(config, dataset):
    return config["datasets"].get(dataset, {}).get("kind", dataset)


def test_default_target_is_every_paper_study(config):
    paper = {name for name, spec in config["studies"].items() if "paper" in spec}
    assert set(config["default_studies"]) == paper
    assert {"demo", "smoke"}.isdisjoint(paper)
    assert all(spec.get("description") for spec in config["studies"].values())


def test_table1_studies_cover_the_papers_dataset_model_grid(config):
    pairs = {(kind(config, d), m) for spec in studies(config, "table1").values() for d, m, _ in blocks(spec)}
    semi = {"colored_mnist", "double_mnist", "mnist_cifar", "corrupted_cifar10"}
    expected = {("parity", "fcn"), ("moon_star", "fcn")}
    expected |= {(d, m) for d in semi for m in ("fcn", "cnn", "resnet18", "resnet50", "wrn101_2")}
    expected |= {
        ("celeba", "swin_t"),
        ("waterbirds", "swin_t"),
        ("cifar10", "resnet18"),
        ("cifar100", "resnet18"),
        ("imagenet", "resnet18"),
    }
    assert pairs == expected


# PAPER.md, "Learning-rate ranges of every Table 1 row": (kind, model) -> (min, max).
PAPER_LR_RANGES = {
    ("parity", "fcn"): (0.01, 0.75),
    ("moon_star", "fcn"): (0.01, 0.75),
    ("colored_mnist", "fcn"): (0.001, 0.5),
    ("colored_mnist", "cnn"): (0.01, 0.35),
    ("colored_mnist", "resnet18"): (0.001, 0.25),
    ("colored_mnist", "resnet50"): (0.001, 0.1),
    ("colored_mnist", "wrn101_2"): (0.001, 0.25),
    ("double_mnist", "fcn"): (0.001, 0.5),
    ("double_mnist", "cnn"): (0.005, 0.4),
    ("double_mnist", "resnet18"): (0.001, 0.1),
    ("double_mnist", "resnet50"): (0.001, 0.1),
    ("double_mnist", "wrn101_2"): (0.001, 0.1),
    ("mnist_cifar", "fcn"): (0.001, 0.01),
    ("mnist_cifar", "cnn"): (0.001, 0.2),
    ("mnist_cifar", "resnet18"): (0.001, 0.25),
    ("mnist_cifar", "resnet50"): (0.005, 0.1),
    ("mnist_cifar", "wrn101_2"): (0.005, 0.1),
    ("corrupted_cifar10", "fcn"): (0.0001, 0.005),
    ("corrupted_cifar10", "cnn"): (0.001, 0.1),
    ("corrupted_cifar10", "resnet18"): (0.001, 0.5),
    ("corrupted_cifar10", "resnet50"): (0.001, 0.1),
    ("corrupted_cifar10", "wrn101_2"): (0.001, 0.25),
    ("celeba", "swin_t"): (1e-7, 1e-4),
}


def test_lr_grids_are_log_spaced_and_cover_the_papers_range_plus_one_value_beyond(config):
    covered = set()
    for name, spec in studies(config, "table1").items():
        assert spec["knob"] == "lr" and len(spec["seeds"]) >= 3, name
        for dataset, model, values in blocks(spec):
            assert len(values) >= 5, (name, dataset, model)
            ratios = [b / a for a, b in zip(values, values[1:])]
            assert all(1.3 <= r <= 4 for r in ratios), (name, values)  # increasing, roughly even in log
            reference = PAPER_LR_RANGES.get((kind(config, dataset), model))
            if reference:
                low, high = reference
                assert values[0] <= low * 1.0001, (name, dataset, model, values)
                assert any(abs(v - high) <= high * 1e-4 for v in values), (name, dataset, model, values)
                assert values[-1] > high * 1.0001, (name, dataset, model, values)  # one value beyond
                covered.add((kind(config, dataset), model))
    assert covered == set(PAPER_LR_RANGES)


# PAPER.md, "Table 2 knob ranges": knob -> {kind: (min, max)} (the batch size as b, not 1/b).
PAPER_KNOB_RANGES = {
    "batch_size": dict.fromkeys(("colored_mnist", "mnist_cifar", "double_mnist"), (3, 100)),
    "momentum": dict.fromkeys(("colored_mnist", "mnist_cifar", "double_mnist"), (0.1, 0.99)),
    "l1": {"colored_mnist": (1e-5, 1e-3), "mnist_cifar": (1e-5, 1e-3), "double_mnist": (1e-6, 1e-3)},
    "weight_decay": {"colored_mnist": (1e-4, 0.05), "double_mnist": (1e-4, 0.05), "mnist_cifar": (1e-4, 0.075)},
    "focal_gamma": {"colored_mnist": (0.001, 25), "double_mnist": (0.001, 25), "mnist_cifar": (0.01, 25)},
    "asam_rho": dict.fromkeys(("colored_mnist", "mnist_cifar", "double_mnist"), (0.01, 10)),
}
PAPER_HIGH_LR_L2 = {"colored_mnist": (1e-5, 1e-3), "double_mnist": (1e-5, 1e-3), "mnist_cifar": (1e-6, 1e-4)}


def test_table2_knobs_span_the_papers_ranges(config):
    for name, spec in studies(config, "table2").items():
        high_lr = spec["knob"] == "weight_decay" and "high" in name
        for dataset, model, values in blocks(spec):
            if model != "resnet18":
                continue  # Table 2 is ResNet18; ResNet50 x Colored MNIST is Fig. 19
            low, high = (PAPER_HIGH_LR_L2 if high_lr else PAPER_KNOB_RANGES[spec["knob"]])[kind(config, dataset)]
            assert min(values) <= low * 1.0001 and max(values) >= high * 0.9999, (name, dataset, values)


def test_hilo_maps_of_figs_8_and_29_to_34(config):
    hilo = {name for name, spec in config["studies"].items() if spec.get("analysis", {}).get("hilo")}
    # Fig 8, 33, 34: CIFAR-10 and CIFAR-100 with the paper's 10 seeds per learning rate
    assert {"lr_cifar10", "lr_cifar100"} <= hilo
    assert all(len(config["studies"][name]["seeds"]) >= 10 for name in ("lr_cifar10", "lr_cifar100"))
    # Figs 29-32: Colored MNIST, MNIST-CIFAR, Double MNIST (ResNet18 only), CelebA (Swin-T)
    assert {"lr_colored_mnist", "lr_mnist_cifar", "lr_double_mnist", "lr_celeba"} <= hilo
    for name in ("lr_colored_mnist", "lr_mnist_cifar", "lr_double_mnist"):
        assert config["studies"][name]["analysis"]["hilo_models"] == ["resnet18"]
    # the high value is the top of the paper's range, not the extra value past it
    for name, dataset, model in [
        ("lr_colored_mnist", "colored_mnist", "resnet18"),
        ("lr_double_mnist", "double_mnist", "resnet18"),
        ("lr_mnist_cifar", "mnist_cifar", "resnet18"),
        ("lr_celeba", "celeba", "swin_t"),
    ]:
        assert config["studies"][name]["analysis"]["hilo_high"] == pytest.approx(PAPER_LR_RANGES[dataset, model][1])


def test_interventions_sweep_every_knob_of_table2_on_the_papers_pairs(config):
    table2 = studies(config, "table2")
    assert {spec["knob"] for spec in table2.values()} == INTERVENTION_KNOBS
    high_lr_l2 = [
        spec
        for spec in table2.values()
        if spec["knob"] == "weight_decay"
        and all(block.get("train", {}).get("lr", spec["train"]["lr"]) >= 0.1 for block in spec["grid"])
    ]
    assert len(high_lr_l2) == 1
    expected = {
        ("colored_mnist", "resnet18"),
        ("mnist_cifar", "resnet18"),
        ("double_mnist", "resnet18"),
        ("colored_mnist", "resnet50"),
    }
    for name, spec in table2.items():
        assert {(d, m) for d, m, _ in blocks(spec)} == expected, name
        assert len(spec["seeds"]) >= 3
    focal = next(spec for spec in table2.values() if spec["knob"] == "focal_gamma")
    assert focal["train"]["loss"] == "focal"


def test_variants_and_fcn_widths_follow_the_paper(config):
    variants = studies(config, "variant")
    trains = [spec["train"] for spec in variants.values()]
    assert any(t["optimizer"] == "adam" for t in trains)
    assert any(
        t.get("lr_schedule") == "step" and t["lr_step_at"] == 1000 and t["lr_step_factor"] == 0.1 for t in trains
    )
    assert any(t.get("stop_train_ce") == 1e-5 for t in trains)
    assert any(t["optimizer"] == "psgd_kron" and t["lr_schedule"] == "wsd" and t["warmup_steps"] > 0 for t in trains)
    psgd = next(spec for spec in variants.values() if spec["train"]["optimizer"] == "psgd_kron")
    assert {(kind(config, d), m) for d, m, _ in blocks(psgd)} == {("colored_mnist", "resnet50")}  # Fig. 28 top
    cut = [spec for spec in variants.values() if spec["knob"] == "lr_step_at"]  # Fig. 28: the LR cut at step i
    assert cut and cut[0]["train"]["lr_schedule"] == "step" and len(cut[0]["values"]) >= 5
    assert any(t.get("eval_test") for t in trains)  # Fig. 24 bottom: test accuracy over training
    cifar100 = [t for name, t in zip(variants, trains) if "cifar100" in name]
    assert cifar100 and cifar100[0]["optimizer"] == "adamw" and cifar100[0]["lr_schedule"] == "cosine"
    assert cifar100[0]["weight_decay"] > 0 and cifar100[0]["select_on_val"] is True
    for spec in studies(config, "table1").values():
        for block in spec["grid"]:
            fcn = block.get("model_params", {}).get("fcn")
            for dataset in block["datasets"] if fcn else []:
                base = kind(config, dataset)
                if base in ("mnist_cifar", "corrupted_cifar10"):
                    assert fcn == {"depth": 2, "width": 2048}
                    assert config["datasets"][dataset]["rho_train"] == 0.25
                elif base in ("colored_mnist", "double_mnist"):
                    assert fcn == {"depth": 2, "width": 1024}


def expected_jobs(config) -> Counter:
    """Jobs per rule of the default target, from the YAML alone (every dataset present)."""
    jobs = Counter(all=1)
    datasets, intervention_pairs = set(), set()
    for name in config["default_studies"]:
        spec = config["studies"][name]
        pairs = set()
        for dataset, model, values in blocks(spec):
            jobs["train"] += len(values) * len(spec["seeds"])
            pairs.add((dataset, model))
            datasets.add(dataset)
        jobs["aggregate"] += 1
        jobs[f"figures_{name}"] += 1  # one job draws all of the study's figures
        models = spec.get("analysis", {}).get("hilo_models")
        for rule in ("hilo", "training_maps"):  # one job per pair of hilo_models (null: every pair)
            if spec.get("analysis", {}).get(rule):
                jobs[rule] += len([pair for pair in pairs if models is None or pair[1] in models])
        if spec.get("paper") == "table2":
            intervention_pairs |= pairs
    jobs["analyze"] = jobs["train"]
    jobs["data"] = len(datasets)  # the data job writes the card too
    jobs["paper_table1"] = jobs["paper_table2"] = 1
    jobs["intervention_figure"] = len(intervention_pairs)
    for landscape in (config.get("landscapes") or {}).values():  # Fig 9: one job per pair common to its studies
        if set(landscape["studies"]) <= set(config["default_studies"]):
            common = set.intersection(
                *({(d, m) for d, m, _ in blocks(config["studies"][s])} for s in landscape["studies"])
            )
            jobs["landscape_figure"] += len(common)
    return jobs


def test_full_dry_run_schedules_the_grid_sizes_and_builds_the_dag_quickly(config, tmp_path):
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("workflow", "profiles"):
        shutil.copytree(ROOT / name, tmp_path / name)
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "2",
            "--dry-run",
            "--quiet",
            "rules",
            "--config",
            "check_data=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = Counter()
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])  # the table is printed twice; same numbers
    assert counts == expected_jobs(config)
    # CPU seconds, not wall: on a shared machine wall time measures the neighbours' load.
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    # The budget is 20 s on a machine that imports torch in 1.4 s CPU; slower machines get
    # proportionally more (the same DAG took 10-14 s on one such machine, 20 s on one twice as slow).
    budget = 20 * max(1.0, torch_import_cpu_seconds() / 1.4)
    print(f"full dry run: {sum(counts.values())} jobs, {cpu:.1f} s CPU (budget {budget:.1f} s), {wall:.1f} s wall")
    assert cpu <= budget, f"DAG of the full config took {cpu:.1f} s of CPU (wall {wall:.1f} s, budget {budget:.1f} s)"
    assert math.isfinite(wall)


def torch_import_cpu_seconds() -> float:
    """CPU seconds this machine needs to import torch: the yardstick of the DAG-time budget."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "import torch"], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
