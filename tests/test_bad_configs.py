"""Every bad config fails at parse time, through the real `snakemake -n`, naming the key and the value.

A table of bad configs: each case is an edit of a tiny config and the text its error must
contain (the key path and the value, and what is allowed). Every case is checked alone against
`validate_config` (what the Snakefile calls), and every case goes through `snakemake -n` in a
minimal copy of the workflow: the cases of one group are independent edits of one config, whose
run must fail before the DAG is built and report each of them. The groups, the rule list and the
missing-data runs share one pool of two processes (each run pays the torch import at parse time).
Also here: the rule names a study may not take, against the rules Snakemake defines, and the
missing-data block, which lists only the studies a run builds.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from largelr.config import RULE_NAMES, RULE_PREFIXES, ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
TINY_STUDY = {
    "knob": "lr",
    "seeds": [0],
    "values": [0.05, 0.5],
    "train": {"batch_size": 100, "max_steps": 10},
    "grid": [{"datasets": ["tiny_parity"], "models": ["fcn"], "model_params": {"fcn": {"depth": 1, "width": 8}}}],
}
BASE = {
    "data_root": "data",
    "device": "cpu",
    "default_studies": ["tiny"],
    "datasets": {"tiny_parity": {"kind": "parity", "core_bits": 4, "spurious_bits": 2, "n_train": 300, "n_test": 300}},
    "analysis": {"represent_samples": 50},
    "studies": {"tiny": TINY_STUDY},
}


def study(name: str, **changes) -> Callable[[dict], None]:
    """An edit that adds a study: the tiny one with ``changes`` (train/analysis merged)."""

    def edit(config: dict) -> None:
        spec, given = copy.deepcopy(TINY_STUDY), copy.deepcopy(changes)
        for key in ("train", "analysis"):
            if isinstance(given.get(key, {}), dict):
                spec[key] = spec.get(key, {}) | given.pop(key, {})
        spec.update(given)
        config["studies"][name] = spec

    return edit


def tiny(path: str, value) -> Callable[[dict], None]:
    """An edit that sets the dotted ``path`` (from the config's top) to ``value``."""

    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[last] = value

    return edit


def dataset_and_study(dataset: str, params: dict, name: str, **changes) -> Callable[[dict], None]:
    """An edit that adds a parity dataset with ``params`` and a study of it (the tiny one with ``changes``)."""

    def edit(config: dict) -> None:
        config["datasets"][dataset] = {"kind": "parity", "core_bits": 4, "spurious_bits": 2, **params}
        study(name, grid=[{"datasets": [dataset], "models": ["fcn"]}], **changes)(config)

    return edit


@dataclass
class Case:
    id: str
    group: str
    edit: Callable[[dict], None]
    expected: tuple[str, ...] = field(default_factory=tuple)


CASES = [
    # values: study train/analysis settings, dataset parameters, the top-level analysis block
    Case(
        "batch_size_0",
        "values",
        tiny("studies.tiny.train.batch_size", 0),
        ("studies.tiny.train.batch_size = 0", "allowed: a whole number >= 1"),
    ),
    Case(
        "kappa_above_1",
        "values",
        tiny("studies.tiny.analysis.kappas", [0, 1.5]),
        ("studies.tiny.analysis.kappas = [0, 1.5]", "entry 1 (1.5)", "in [0, 1]"),
    ),
    Case(
        "prune_method_typo",
        "values",
        tiny("studies.tiny.analysis.prune_methods", ["structurd"]),
        ("studies.tiny.analysis.prune_methods = ['structurd']", "did you mean 'structured'"),
    ),
    Case("lr_text", "values", tiny("studies.tiny.train.lr", "abc"), ("studies.tiny.train.lr = 'abc'", "a number > 0")),
    Case(
        "momentum_5",
        "values",
        tiny("studies.tiny.train.momentum", 5),
        ("studies.tiny.train.momentum = 5", ">= 0 and < 1"),
    ),
    Case(
        "represent_samples_0",
        "values",
        tiny("studies.tiny.analysis.represent_samples", 0),
        ("studies.tiny.analysis.represent_samples = 0", ">= 1"),
    ),
    Case(
        "n_train_negative",
        "values",
        tiny("datasets.tiny_parity.n_train", -1),
        ("datasets.tiny_parity.n_train = -1", ">= 1"),
    ),
    Case("rho_train_2", "values", tiny("datasets.tiny_parity.rho_train", 2), ("datasets.tiny_parity.rho_train = 2",)),
    Case(
        "top_analysis_typo",
        "values",
        tiny("analysis.compres_q", 3.0),
        ("analysis.compres_q = 3.0", "unknown key 'compres_q'", "did you mean 'compress_q'"),
    ),
    Case(
        "top_analysis_choice",
        "values",
        tiny("analysis.ig_method", "simpson"),
        ("analysis.ig_method = 'simpson'", "gausslegendre"),
    ),
    Case(
        "eval_every_fraction",
        "values",
        tiny("studies.tiny.train.eval_every", 2.5),
        ("studies.tiny.train.eval_every = 2.5", "whole number"),
    ),
    Case(
        "bool_as_text",
        "values",
        tiny("studies.tiny.train.select_on_val", "yes"),
        ("studies.tiny.train.select_on_val = 'yes'", "true or false"),
    ),
    Case(
        "optimizer_typo",
        "values",
        tiny("studies.tiny.train.optimizer", "sgdd"),
        ("studies.tiny.train.optimizer = 'sgdd'", "did you mean 'sgd'"),
    ),
    Case(
        "infinite_lr",
        "values",
        tiny("studies.tiny.grid.0.train", {"lr": float("inf")}),
        ("studies.tiny.grid[0].train.lr = inf", "infinite"),
    ),
    Case(
        "model_param_typo",
        "values",
        tiny("studies.tiny.grid.0.model_params.fcn.depht", 2),
        ("studies.tiny.grid[0].model_params.fcn.depht = 2", "unknown key 'depht'"),
    ),
    Case(
        "model_param_value",
        "values",
        tiny("studies.tiny.grid.0.model_params.fcn.width", -1),
        ("studies.tiny.grid[0].model_params.fcn.width = -1", ">= 1"),
    ),
    Case(
        "dataset_kind_typo",
        "values",
        tiny("datasets.tiny_moon", {"kind": "moon_starr"}),
        ("datasets.tiny_moon.kind = 'moon_starr'", "did you mean 'moon_star'"),
    ),
    Case(
        "dataset_seed_negative",
        "values",
        tiny("datasets.tiny_parity.seed", -1),
        ("datasets.tiny_parity.seed = -1", "in [0, 18446744073709551615]"),
    ),
    Case("device_gpu", "values", tiny("device", "gpu"), ("device = 'gpu'", "cuda")),
    # a study's own keys and its knob values, one study each
    Case(
        "knob_batch_size_fraction",
        "studies",
        study("bs", knob="batch_size", values=[50, 50.5]),
        ("studies.bs.values[1] = 50.5", "knob batch_size", "whole number"),
    ),
    Case(
        "knob_value_yaml11_text",
        "studies",
        study("exp", values=["1e-3", 0.5]),
        ("studies.exp.values[0] = '1e-3'", "write it as 1.0e-3"),
    ),
    Case(
        "train_value_yaml11_text",
        "studies",
        study("exp_train", train={"lr": "1e-3"}),
        ("studies.exp_train.train.lr = '1e-3'", "write it as 1.0e-3"),
    ),
    Case(
        "knob_momentum_1",
        "studies",
        study("mom", knob="momentum", values=[0.5, 1.0]),
        ("studies.mom.values[1] = 1.0", "< 1"),
    ),
    Case(
        "knob_same_path_text",
        "studies",
        study("same", values=[0.05, 0.050, 0.5]),
        ("studies.same.values = [0.05, 0.05, 0.5]", "same path text"),
    ),
    Case(
        "momentum_without_sgd",
        "studies",
        study("adam_mom", knob="momentum", values=[0.5, 0.9], train={"optimizer": "adam"}),
        ("studies.adam_mom.grid[0]: momentum is the knob but optimizer = adam", "optimizer: sgd"),
    ),
    Case(
        "focal_gamma_without_focal",
        "studies",
        study("gamma", knob="focal_gamma", values=[1, 2]),
        ("studies.gamma.grid[0]: focal_gamma is the knob but loss = ce", "loss: focal"),
    ),
    Case("knob_typo", "studies", study("lrr", knob="lrr"), ("studies.lrr.knob = 'lrr'", "did you mean 'lr'")),
    Case("seed_repeated", "studies", study("twice_seed", seeds=[0, 0]), ("studies.twice_seed.seeds = [0, 0]",)),
    Case(
        "seed_negative",
        "studies",
        study("neg_seed", seeds=[-1]),
        ("studies.neg_seed.seeds = [-1]", "in [0, 18446744073709551615]"),
    ),
    Case(
        "paper_family_typo", "studies", study("paper3", paper="table3"), ("studies.paper3.paper = 'table3'", "table1")
    ),
    Case(
        "hilo_value_not_swept",
        "studies",
        study("hl", analysis={"hilo": True, "hilo_low": 0.3}),
        ("studies.hl.analysis.hilo_low = 0.3", "not a value of (tiny_parity, fcn)"),
    ),
    Case(
        "hilo_models_absent",
        "studies",
        study("hm", analysis={"hilo": True, "hilo_models": ["resnet18"]}),
        ("studies.hm.analysis.hilo_models = ['resnet18']", "no pair of the study has these models"),
    ),
    Case(
        "hilo_models_typo",
        "studies",
        study("ht", analysis={"hilo": True, "hilo_models": ["resnet19"]}),
        ("studies.ht.analysis.hilo_models", "resnet18"),
    ),
    Case("study_named_data", "studies", study("data"), ("studies.data: the name is taken by a rule",)),
    Case("study_named_train", "studies", study("train"), ("studies.train: the name is taken by a rule",)),
    Case("study_named_all", "studies", study("all"), ("studies.all: the name is taken by a rule",)),
    Case(
        "study_named_like_figures_rule",
        "studies",
        study("figures_tiny"),
        ("studies.figures_tiny: the name is taken by a rule",),
    ),
    Case("default_study_typo", "studies", tiny("default_studies", ["tny"]), ("default_studies: 'tny'",)),
    Case(
        "pair_in_two_blocks",
        "studies",
        study("dup_pair", grid=TINY_STUDY["grid"] * 2),
        ("studies.dup_pair.grid", "appears in two blocks"),
    ),
    Case(
        "unknown_model",
        "studies",
        study("mlp", grid=[{"datasets": ["tiny_parity"], "models": ["mlpp"]}]),
        ("studies.mlp.grid[0].models: 'mlpp'",),
    ),
    Case(
        "unknown_dataset",
        "studies",
        study("mnistt", grid=[{"datasets": ["mnistt"], "models": ["fcn"]}]),
        ("studies.mnistt.grid[0].datasets: 'mnistt'",),
    ),
    # settings that would do nothing (NEEDS), and a study against the sizes of its datasets
    Case(
        "lr_step_at_knob_constant",
        "studies",
        study("step_knob", knob="lr_step_at", values=[10, 20]),
        ("studies.step_knob.grid[0]: lr_step_at is the knob but lr_schedule = constant", "lr_schedule: step"),
    ),
    Case(
        "lr_step_factor_constant",
        "studies",
        study("stepf", train={"lr_step_factor": 0.5}),
        ("studies.stepf.grid[0]: lr_step_factor = 0.5 but lr_schedule = constant", "lr_schedule: step"),
    ),
    Case(
        "warmup_without_wsd",
        "studies",
        study("warm", train={"warmup_steps": 5, "lr_schedule": "cosine"}),
        ("studies.warm.grid[0]: warmup_steps = 5 but lr_schedule = cosine", "lr_schedule: wsd"),
    ),
    Case(
        "wsd_decay_without_wsd",
        "studies",
        study("decay", train={"wsd_decay_fraction": 0.5}),
        ("studies.decay.grid[0]: wsd_decay_fraction = 0.5", "lr_schedule: wsd"),
    ),
    Case(
        "val_fraction_without_select",
        "studies",
        study("valf", train={"val_fraction": 0.2}),
        ("studies.valf.grid[0]: val_fraction = 0.2 but select_on_val = false", "select_on_val: true"),
    ),
    Case(
        "asam_eta_without_rho",
        "studies",
        study("eta", train={"asam_eta": 0.1}),
        ("studies.eta.grid[0]: asam_eta = 0.1 but asam_rho = 0", "asam_rho > 0"),
    ),
    Case(
        "asam_eta_rho_knob_zero_only",
        "studies",
        study("eta0", knob="asam_rho", values=[0], train={"asam_eta": 0.1}),
        ("studies.eta0.grid[0]: asam_eta = 0.1 but the knob asam_rho takes only [0]", "asam_rho > 0"),
    ),
    Case(
        "target_acc_with_stop_ce",
        "studies",
        study("tacc", train={"target_train_acc": 0.9, "stop_train_ce": 0.1}),
        ("studies.tacc.grid[0]: target_train_acc = 0.9 but stop_train_ce = 0.1", "stop_train_ce: 0"),
    ),
    Case(
        "lr_step_at_after_max_steps",
        "studies",
        study("late", knob="lr_step_at", values=[10, 20], train={"lr_schedule": "step"}),
        ("studies.late.grid[0]: lr_step_at [10, 20] is never before max_steps = 10", "lr_step_at < 10"),
    ),
    Case(
        "batch_knob_above_train_set",
        "studies",
        study("bsbig", knob="batch_size", values=[100, 500, 1000]),
        (
            "studies.bsbig.grid[0]: batch_size [500, 1000] is above the 300 training samples of tiny_parity",
            "batch_size <= 300",
            "datasets.tiny_parity.n_train",
        ),
    ),
    Case(
        "batch_above_train_after_val",
        "studies",
        study("bsval", train={"batch_size": 290, "select_on_val": True}),
        (
            "studies.bsval.grid[0]: batch_size 290 is above the 270 training samples of tiny_parity left after "
            "select_on_val",
        ),
    ),
    Case(
        "n_test_1",
        "studies",
        dataset_and_study("tiny_one", {"n_train": 300, "n_test": 1}, "one_test"),
        (
            "datasets.tiny_one.n_test = 1: the analyses of studies.one_test.grid[0] would see 1 test samples",
            "0.5 per class",
            ">= 20",
        ),
    ),
    Case(
        "represent_samples_5",
        "studies",
        study("rs", analysis={"represent_samples": 5}),
        ("studies.rs.analysis.represent_samples = 5", "2.5 per class"),
    ),
    Case(
        "seed_2_64",
        "studies",
        study("bigseed", seeds=[2**64]),
        ("studies.bigseed.seeds = [18446744073709551616]", "18446744073709551615"),
    ),
    Case(
        "dataset_seed_2_64",
        "studies",
        dataset_and_study("tiny_seed", {"seed": 2**64}, "seeded"),
        ("datasets.tiny_seed.seed = 18446744073709551616", "18446744073709551615"),
    ),
    # structure, against the JSON schema (reported before any value)
    Case(
        "top_level_key_typo",
        "structure",
        tiny("analyis", {"ig_steps": 4}),
        ("analyis = {'ig_steps': 4}", "did you mean 'analysis'"),
    ),
    Case(
        "study_key_typo",
        "structure",
        tiny("studies.tiny.valuez", [0.1]),
        ("studies.tiny.valuez = [0.1]", "did you mean 'values'"),
    ),
    Case(
        "block_key_typo",
        "structure",
        tiny("studies.tiny.grid.0.modles", ["cnn"]),
        ("studies.tiny.grid[0].modles = ['cnn']", "did you mean 'models'"),
    ),
    Case(
        "study_without_knob",
        "structure",
        lambda c: c["studies"].update(noknob={"seeds": [0], "grid": []}),
        ("studies.noknob.knob: missing",),
    ),
    Case(
        "dataset_entry_empty",
        "structure",
        tiny("datasets.empty", None),
        ("datasets.empty = None", "allowed: a mapping"),
    ),
    Case("train_not_a_mapping", "structure", study("t5", train=5), ("studies.t5.train = 5", "allowed: a mapping")),
    Case(
        "study_name_with_dash",
        "structure",
        lambda c: c["studies"].update({"my-study": TINY_STUDY}),
        ("'my-study' does not match",),
    ),
]
GROUPS = sorted({case.group for case in CASES})


def bad_config(cases: list[Case]) -> dict:
    config = copy.deepcopy(BASE)
    for case in cases:
        case.edit(config)
    return config


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_bad_value_alone_is_refused_with_its_key_path_and_value(case):
    with pytest.raises(ConfigError) as error:
        validate_config(bad_config([case]), schema=SCHEMA)
    for text in case.expected:
        assert text in str(error.value), str(error.value)


def test_the_base_config_and_zero_momentum_or_weight_decay_sweeps_are_valid():
    validate_config(copy.deepcopy(BASE), schema=SCHEMA)
    sweeps = copy.deepcopy(BASE)
    study("mom0", knob="momentum", values=[0, 0.9])(sweeps)
    study("wd0", knob="weight_decay", values=[0, 1.0e-4])(sweeps)
    validate_config(sweeps, schema=SCHEMA)


def test_settings_whose_partner_is_on_and_batches_that_fit_are_valid():
    fine = copy.deepcopy(BASE)
    study("rho_sweep", knob="asam_rho", values=[0, 0.05], train={"asam_eta": 0.1})(fine)
    study("step", knob="lr_step_at", values=[5, 8, 30], train={"lr_schedule": "step", "lr_step_factor": 0.5})(fine)
    study("wsd", train={"lr_schedule": "wsd", "warmup_steps": 2, "wsd_decay_fraction": 0.5})(fine)
    study("val", train={"select_on_val": True, "val_fraction": 0.2, "batch_size": 240})(fine)  # 300 - 60 left
    study("full", knob="batch_size", values=[100, 300])(fine)
    study("ce", train={"stop_train_ce": 0.1})(fine)
    study("last_seed", seeds=[2**64 - 1])(fine)
    dataset_and_study("tiny_20", {"n_train": 300, "n_test": 20}, "twenty")(fine)  # 10 per class
    validate_config(fine, schema=SCHEMA)


def test_the_table_has_at_least_thirty_cases_with_distinct_ids():
    assert len(CASES) >= 30 and len({case.id for case in CASES}) == len(CASES)


# --- the same cases through `snakemake -n` -----------------------------------------------------

BAD_YAML_LINE = "    values: [0.05, 0.5]]"


def yaml_texts() -> dict[str, str]:
    """config.yaml texts: a syntax error, and a key given twice (YAML would keep the second)."""
    good = yaml.safe_dump(BASE, sort_keys=False, default_flow_style=None)
    broken = good.replace("  tiny:\n", f"  tiny:\n{BAD_YAML_LINE}\n", 1)
    twice = good.replace("  tiny:\n", "  tiny:\n    knob: batch_size\n", 1)
    return {"syntax": broken, "twice": twice}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # One stream, in the order Snakemake wrote it: the missing-data block must come before the DAG.
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )


def workflow_copy(work: Path, config_text: str) -> Path:
    work.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    for name in ("workflow", "profiles", "envs"):
        shutil.copytree(ROOT / name, work / name)
    (work / "config.yaml").write_text(config_text)
    return work


def missing_data_config(data_root: Path) -> dict:
    config = copy.deepcopy(BASE)
    plumbing = {"analysis": {"require_converged": False}}  # 10 steps on 50 000 images: a fixed budget, not a fit
    config["studies"] |= {
        "needs_mnist": TINY_STUDY | plumbing | {"grid": [{"datasets": ["colored_mnist"], "models": ["fcn"]}]},
        "needs_cifar": TINY_STUDY | plumbing | {"grid": [{"datasets": ["cifar10"], "models": ["fcn"]}]},
    }
    config["default_studies"] = ["tiny", "needs_mnist", "needs_cifar"]
    config["data_root"] = str(data_root)
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every `snakemake` run of this module, two at a time."""
    base = tmp_path_factory.mktemp("parse_time")
    dump = lambda config: yaml.safe_dump(config, sort_keys=False)  # noqa: E731
    jobs = {f"group:{g}": (dump(bad_config([c for c in CASES if c.group == g])), ["-n"]) for g in GROUPS}
    jobs |= {f"yaml:{name}": (text, ["-n"]) for name, text in yaml_texts().items()}
    override = base / "extra.yaml"
    override.write_text("studies:\n  tiny:\n    seeds: [0]\n    seeds: [1]\n")
    jobs["override_twice"] = (dump(BASE), ["-n", "--configfile", str(override)])
    jobs["config_option"] = (dump(BASE), ["-n", "--config", "check_data=maybe"])
    jobs["rules"] = (dump(BASE), ["--list-rules"])
    missing = dump(missing_data_config(base / "empty"))
    jobs |= {"missing:needs_mnist": (missing, ["-n", "needs_mnist"]), "missing:default": (missing, ["-n"])}

    def run(item):
        name, (text, args) = item
        return name, snakemake(workflow_copy(base / re.sub(r"\W", "_", name), text), *args)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, jobs.items()))


def output(run: subprocess.CompletedProcess) -> str:
    return run.stdout


def failed_at_parse_time(run: subprocess.CompletedProcess) -> str:
    text = output(run)
    assert run.returncode != 0, text[-2000:]
    assert "Building DAG of jobs" not in text and "Job stats" not in text, text[-2000:]
    return text


@pytest.mark.parametrize("group", GROUPS)
def test_snakemake_dry_run_refuses_every_case_of_a_group_before_building_the_dag(runs, group):
    text = failed_at_parse_time(runs[f"group:{group}"])
    for case in (c for c in CASES if c.group == group):
        for expected in case.expected:
            assert expected in text, (case.id, expected, text[-3000:])


def test_yaml_syntax_error_names_the_line_and_column(runs):
    lines = yaml_texts()["syntax"].splitlines()
    line, column = lines.index(BAD_YAML_LINE) + 1, BAD_YAML_LINE.index("]]") + 2
    text = failed_at_parse_time(runs["yaml:syntax"])
    assert f"config.yaml, line {line}, column {column}" in text, text[-2000:]
    assert BAD_YAML_LINE in text  # the line itself, with a caret under the column


def test_a_key_given_twice_names_both_lines(runs):
    lines = yaml_texts()["twice"].splitlines()
    first = lines.index("    knob: batch_size") + 1
    second = next(i for i, line in enumerate(lines) if line == "    knob: lr") + 1
    text = failed_at_parse_time(runs["yaml:twice"])
    assert f"config.yaml, line {second}" in text and f"first on line {first}" in text, text[-2000:]
    assert "'knob' is given twice" in text


def test_configfile_overrides_and_config_options_are_checked_too(runs):
    text = failed_at_parse_time(runs["override_twice"])
    assert "extra.yaml, line 4" in text and "'seeds' is given twice" in text and "first on line 3" in text
    text = failed_at_parse_time(runs["config_option"])
    assert "check_data = 'maybe'" in text and "true or false" in text


def test_rule_names_a_study_may_not_take_are_the_rules_snakemake_defines(runs):
    run = runs["rules"]
    assert run.returncode == 0, output(run)[-2000:]
    defined = {line for line in run.stdout.splitlines() if re.fullmatch(r"[A-Za-z_]\w*", line)}
    studies = set(BASE["studies"])
    per_study = {rule for rule in defined if rule.startswith(RULE_PREFIXES)}
    assert per_study == {f"{prefix}{s}" for prefix in RULE_PREFIXES for s in studies}
    assert defined - studies - per_study == set(RULE_NAMES)


# --- the missing-data block lists only the studies a run builds --------------------------------


def missing_block(run: subprocess.CompletedProcess) -> str:
    """The missing-data block, which comes before the DAG is built ('' when there is none)."""
    text = output(run)
    if "largelr: data missing" not in text:
        return ""
    start = text.index("largelr: data missing")
    assert start < text.index("Building DAG of jobs")
    return text[start : text.index("Building DAG of jobs")]


def test_a_named_target_lists_only_its_own_missing_data(runs):
    assert runs["missing:needs_mnist"].returncode == 0, output(runs["missing:needs_mnist"])[-2000:]
    block = missing_block(runs["missing:needs_mnist"])
    assert "needs_mnist: cannot run, missing colored_mnist" in block
    assert "needs_cifar" not in block and "cifar-10-batches-py" not in block and "tiny:" not in block
    assert "train-images-idx3-ubyte" in block  # the files colored_mnist needs


def test_the_default_target_lists_every_default_study_with_missing_data(runs):
    block = missing_block(runs["missing:default"])
    assert "needs_mnist: cannot run, missing colored_mnist" in block
    assert "needs_cifar: cannot run, missing cifar10" in block
    assert "tiny:" not in block
