"""Every `largelr` subcommand turns a bad argument or an unreadable file into one line and exit code 2
(the command line is wrong) or 1 (the run failed), without a traceback unless --debug; nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_dataset, toy_spec

GOOD_SPEC = json.dumps(toy_spec())
# id, arguments ({tmp}: the test's folder, holding good.pt, garbage.pt, text.parquet), exit code, phrases
CASES = [
    (
        "train_spec_empty",
        ["train", "--spec", "{}", "--data", "{tmp}/good.pt", "--out-dir", "{tmp}/out"],
        2,
        ["largelr train: --spec: missing keys ['study', 'dataset'"],
    ),
    (
        "train_spec_list",
        ["train", "--spec", "[1]", "--data", "{tmp}/good.pt", "--out-dir", "{tmp}/out"],
        2,
        ["--spec", "not a JSON object"],
    ),
    (
        "train_data_missing",
        ["train", "--spec", GOOD_SPEC, "--data", "{tmp}/absent.pt", "--out-dir", "{tmp}/out"],
        2,
        ["--data {tmp}/absent.pt: no such file", "`largelr data`"],
    ),
    (
        "train_data_garbage",
        ["train", "--spec", GOOD_SPEC, "--data", "{tmp}/garbage.pt", "--out-dir", "{tmp}/out"],
        1,
        ["{tmp}/garbage.pt: damaged dataset file"],
    ),
    (
        "train_device_tpu",
        ["train", "--spec", GOOD_SPEC, "--data", "{tmp}/good.pt", "--out-dir", "{tmp}/out", "--device", "tpu"],
        2,
        ["--device tpu: not a device", "cuda:N"],
    ),
    (
        "train_threads_0",
        ["train", "--spec", GOOD_SPEC, "--data", "{tmp}/good.pt", "--out-dir", "{tmp}/out", "--threads", "0"],
        2,
        ["--threads 0: allowed: a whole number >= 1"],
    ),
    (
        "data_params_list",
        ["data", "--name", "x", "--kind", "parity", "--params", "[1]", "--out", "{tmp}/out/x.pt"],
        2,
        ["--params", "not a JSON object"],
    ),
    (
        "data_params_unknown",
        ["data", "--name", "x", "--kind", "parity", "--params", '{"n_trian": 5}', "--out", "{tmp}/out/x.pt"],
        1,
        ["n_trian", "did you mean 'n_train'"],
    ),
    (
        "data_kind_unknown",
        ["data", "--name", "x", "--kind", "parityy", "--out", "{tmp}/out/x.pt"],
        1,
        ["unknown dataset kind 'parityy'"],
    ),
    (
        "card_data_missing",
        ["card", "--data", "{tmp}/absent.pt", "--json", "{tmp}/out/c.json", "--png", "{tmp}/out/c.png"],
        2,
        ["--data {tmp}/absent.pt: no such file"],
    ),
    (
        "card_data_garbage",
        ["card", "--data", "{tmp}/garbage.pt", "--json", "{tmp}/out/c.json", "--png", "{tmp}/out/c.png"],
        1,
        ["{tmp}/garbage.pt: damaged dataset file"],
    ),
    (
        "analyze_cell_dir_missing",
        ["analyze", "--cell-dir", "{tmp}/nocell", "--data", "{tmp}/good.pt", "--settings", "{}"],
        2,
        ["--cell-dir {tmp}/nocell: no such file or directory"],
    ),
    (
        "analyze_settings_typo",
        ["analyze", "--cell-dir", "{tmp}", "--data", "{tmp}/good.pt", "--settings", '{"ig_stepz": 3}'],
        1,
        ["ig_stepz", "did you mean 'ig_steps'"],
    ),
    (
        "hilo_model_missing",
        [
            "hilo",
            "--data",
            "{tmp}/good.pt",
            "--models-low",
            "{tmp}/a.pt",
            "--models-high",
            "{tmp}/b.pt",
            "--lr-low",
            "0.1",
            "--lr-high",
            "1",
            "--out",
            "{tmp}/out/h.npz",
        ],
        2,
        ["--models-low {tmp}/a.pt: no such file"],
    ),
    (
        "aggregate_train_json_missing",
        [
            "aggregate",
            "--train-json",
            "{tmp}/train.json",
            *[
                arg
                for name in ("cells", "table1", "stats", "mechanism", "curves", "dynamics")
                for arg in (f"--out-{name}", f"{{tmp}}/out/{name}.parquet")
            ],
        ],
        2,
        ["--train-json {tmp}/train.json: no such file", "`largelr train`"],
    ),
    (
        "figures_cells_missing",
        ["figures", "--families", "normalized", "--out-dir", "{tmp}/out", "--cells", "{tmp}/cells.parquet"],
        2,
        ["--cells {tmp}/cells.parquet: no such file", "largelr aggregate"],
    ),
    (
        "figures_cells_not_parquet",
        ["figures", "--families", "normalized", "--out-dir", "{tmp}/out", "--cells", "{tmp}/text.parquet"],
        2,
        ["--cells {tmp}/text.parquet: not a readable Parquet"],
    ),
    (
        "figures_workers_0",
        [
            "figures",
            "--families",
            "normalized",
            "--out-dir",
            "{tmp}/out",
            "--cells",
            "{tmp}/text.parquet",
            "--workers",
            "0",
        ],
        2,
        ["--workers 0"],
    ),
    (
        "summary_cells_missing",
        ["summary", "--cells", "{tmp}/cells.parquet"],
        2,
        ["--cells {tmp}/cells.parquet: no such file"],
    ),
    (
        "summary_cells_not_parquet",
        ["summary", "--cells", "{tmp}/text.parquet"],
        2,
        ["--cells {tmp}/text.parquet: not a readable Parquet"],
    ),
    ("summary_cells_a_directory", ["summary", "--cells", "{tmp}"], 2, ["--cells {tmp}: a directory"]),
    (
        "paper_tables_missing",
        [
            "paper-tables",
            "--table1-cells",
            "{tmp}/cells.parquet",
            "--out-table1",
            "{tmp}/out/t1.parquet",
            "--out-compare",
            "{tmp}/out/c.parquet",
        ],
        2,
        ["--table1-cells {tmp}/cells.parquet: no such file"],
    ),
    (
        "paper_tables_not_parquet",
        ["paper-tables", "--table2-cells", "{tmp}/text.parquet", "--out-table2", "{tmp}/out/t2.parquet"],
        2,
        ["--table2-cells {tmp}/text.parquet: not a readable"],
    ),
    (
        "intervention_figure_not_parquet",
        [
            "intervention-figure",
            "--cells",
            "{tmp}/text.parquet",
            "--dataset",
            "d",
            "--model",
            "m",
            "--out",
            "{tmp}/out/f.png",
        ],
        2,
        ["--cells {tmp}/text.parquet: not a readable Parquet"],
    ),
    (
        "status_config_missing",
        ["status", "demo", "--config", "{tmp}/absent.yaml"],
        1,
        ["{tmp}/absent.yaml: no such file"],
    ),
    ("gpu_slot_no_command", ["gpu-slot", "--per-gpu", "1"], 1, ["no command given"]),
    (
        "landscape_figure_cells_missing",
        [
            "landscape-figure",
            "--cells",
            "{tmp}/absent.parquet",
            "--rows",
            "s=1",
            "--dataset",
            "d",
            "--model",
            "m",
            "--out",
            "{tmp}/out/f.png",
        ],
        1,
        ["no such file"],
    ),
    (
        "training_maps_data_missing",
        [
            "training-maps",
            "--data",
            "{tmp}/absent.pt",
            "--spec-low",
            "{}",
            "--spec-high",
            "{}",
            "--model-low",
            "a",
            "--model-high",
            "b",
            "--summary-low",
            "c",
            "--summary-high",
            "d",
            "--out",
            "{tmp}/out/m.npz",
        ],
        1,
        ["{tmp}/absent.pt: no such dataset file"],
    ),
    ("download_unknown_name", ["download", "nosuchset"], 2, ["invalid choice: 'nosuchset'"]),
]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    from largelr.datasets import save_dataset

    save_dataset(make_dataset(), tmp_path / "good.pt")
    (tmp_path / "garbage.pt").write_bytes(os.urandom(4096))
    (tmp_path / "text.parquet").write_text("study,value\ns,0.1\n")
    return tmp_path


def filled(arguments: list[str], tmp: Path) -> list[str]:
    return [arg.replace("{tmp}", str(tmp)) for arg in arguments]


@pytest.mark.parametrize(("arguments", "code", "phrases"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_misuse_ends_in_one_line_and_its_exit_code_and_writes_nothing(files, capsys, arguments, code, phrases):
    from largelr.cli import main

    with pytest.raises(SystemExit) as caught:
        main(filled(arguments, files))
    # exit code 1 carries its message in SystemExit (Python prints it); code 2 prints it first
    message = capsys.readouterr().err if code == 2 else str(caught.value.code)
    assert (caught.value.code if code == 2 else 1) == code
    assert len(message.strip().splitlines()) == 1 and "Traceback" not in message, message
    for phrase in phrases:
        assert phrase.replace("{tmp}", str(files)) in message, message
    assert not (files / "out").exists()  # nothing was written


def test_the_table_covers_every_subcommand():
    from largelr.cli import build_parser

    steps = build_parser()._subparsers._group_actions[0].choices
    assert set(steps) <= {arguments[0] for _, arguments, _, _ in CASES}


def test_debug_shows_the_traceback_instead(files):
    from largelr.cli import main
    from largelr.datasets import DamagedDatasetError

    with pytest.raises(DamagedDatasetError):
        main(
            [
                "card",
                "--data",
                str(files / "garbage.pt"),
                "--json",
                str(files / "c.json"),
                "--png",
                str(files / "c.png"),
                "--debug",
            ]
        )


def test_the_installed_command_prints_one_line_and_exits_2(files):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "largelr.cli",
            "train",
            "--spec",
            "{}",
            "--data",
            str(files / "good.pt"),
            "--out-dir",
            str(files / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("largelr train: --spec: missing keys")


def log_failure_suffix() -> str:
    """LOG_FAILURE of workflow/rules/common.smk, the text appended to every job's command."""
    import ast
    import re

    text = (Path(__file__).resolve().parents[1] / "workflow/rules/common.smk").read_text()
    return ast.literal_eval(re.search(r"^LOG_FAILURE = (\(.*?\n\))", text, re.S | re.M).group(1))


@pytest.mark.parametrize(
    ("command", "says"),
    [("(exit 3)", True), ("(echo 'No space left on device'; exit 3)", False)],
    ids=["empty_log", "log_with_the_error"],
)
def test_a_failed_job_whose_log_is_empty_says_where_its_error_went(tmp_path, command, says):
    log = tmp_path / "job.log"
    shell = (command + " > {log} 2>&1" + log_failure_suffix()).format(log=log)  # as Snakemake formats it
    run = subprocess.run(["bash", "-c", f"set -euo pipefail; {shell}"], capture_output=True, text=True)
    assert run.returncode == 3  # the job still fails, with its own code
    assert ("its log" in run.stderr and str(log) in run.stderr and "disk full" in run.stderr) == says, run.stderr


def test_the_next_write_of_a_file_removes_the_temporaries_an_interrupted_one_left(tmp_path):
    from largelr.io import write_json

    stale = tmp_path / ".train.json.abc123.tmp"  # what a write killed with -9 leaves
    stale.mkdir()
    (stale / "train.json").write_text("{")
    other = tmp_path / ".model.pt.xyz.tmp"  # another file's: left alone
    other.mkdir()
    write_json({"a": 1}, tmp_path / "train.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.pt.xyz.tmp", "train.json"]
