"""benchmarks/job_times.py: per-rule sums of Snakemake's benchmark files, on fabricated files."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


@pytest.fixture(scope="module")
def job_times():
    spec = importlib.util.spec_from_file_location("job_times", ROOT / "benchmarks" / "job_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_benchmark(path: Path, seconds: float, rss: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t0\n")


def test_sums_per_rule_and_filters_by_study(tmp_path, job_times):
    bench = tmp_path / "benchmarks"
    write_benchmark(bench / "train/demo/parity/fcn/lr=0.05/seed=0.tsv", 10.5, 800)
    write_benchmark(bench / "train/demo/parity/fcn/lr=0.6/seed=0.tsv", 4.5, 900)
    write_benchmark(bench / "train/other/parity/fcn/lr=0.05/seed=0.tsv", 100.0, 2000)
    write_benchmark(bench / "aggregate/demo.tsv", 3.0, 500)
    write_benchmark(bench / "data/parity.tsv", 2.0, 300)

    everything = job_times.job_times(tmp_path).set_index("rule")
    assert everything.loc["train", "jobs"] == 3
    assert everything.loc["train", "total_s"] == pytest.approx(115.0)
    assert everything.loc["data", "jobs"] == 1

    demo = job_times.job_times(tmp_path, "demo").set_index("rule")
    assert sorted(demo.index) == ["aggregate", "train"]  # the dataset job belongs to no study
    assert demo.loc["train", "total_s"] == pytest.approx(15.0)
    assert demo.loc["train", "longest_s"] == pytest.approx(10.5)
    assert demo.loc["train", "max_rss_mb"] == pytest.approx(900)
    assert list(demo.index) == ["train", "aggregate"]  # longest total first


def test_training_loops_sum_train_json(tmp_path, job_times):
    for value, wall, evaluating in (("0.05", 7.25, 1.0), ("0.6", 2.75, 0.5)):
        cell = tmp_path / f"demo/parity/fcn/lr={value}/seed=0"
        cell.mkdir(parents=True)
        (cell / "train.json").write_text(json.dumps({"wall_s": wall, "eval_s": evaluating}))
    loops = job_times.training_loops(tmp_path, "demo")
    assert loops["cells"] == 2
    assert loops["wall_s"] == pytest.approx(10.0)
    assert loops["eval_s"] == pytest.approx(1.5)
    assert job_times.training_loops(tmp_path, "other")["cells"] == 0
