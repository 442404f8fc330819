# Grid -> cells, paths, data availability and the targets every study feeds.
import functools
import json
import shutil
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from largelr import config as study_config
from largelr.config import (
    ANALYSIS_FILES,
    CELL_DIR,
    CELL_FILES,
    CELL_ID,
    FIGURE_FILES,
    FIGURE_FORMATS,
    TRAIN_FILES,
)
from largelr.analyses.attribute import background_notice
from largelr.datasets import KINDS, missing_data

# Studies the default target builds (config.yaml: every paper study).
DEFAULT_STUDIES = config.get("default_studies", ["demo"])
DEVICE = config.get("device", "auto")
DATA_ROOT = config.get("data_root", "data")
# GPU jobs: device cuda*, or auto where nvidia-smi exists (Snakemake's parse never imports torch).
# Each holds one gpu resource and, unless a device index is given, runs on a free GPU slot
# (largelr gpu-slot sets CUDA_VISIBLE_DEVICES for the job's lifetime; docs/workstation.md).
GPU_JOBS = DEVICE.startswith("cuda") or (DEVICE == "auto" and shutil.which("nvidia-smi") is not None)
GPU_SLOT = (
    f"largelr gpu-slot --per-gpu {int(config.get('gpu_slots_per_device', 1))} -- "
    if GPU_JOBS and DEVICE in ("auto", "cuda")
    else ""
)
STUDY_TABLES = ("table1", "stats", "mechanism", "trends")
# Report captions per figure family (workflow/report/).
FIGURE_CAPTIONS = {
    "normalized": "normalized",
    "compressibility": "compressibility",
    "pruning": "pruning",
    "dynamics": "dynamics",
    "mechanism": "mechanism",
    "csi_core": "csi_core",
    "hilo": "hilo",
}


wildcard_constraints:
    study=r"[A-Za-z0-9_]+",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",
    knob=r"[A-Za-z0-9_]+",
    value=r"[-+0-9.eE]+",
    seed=r"\d+",


def cell_outputs(files):
    """Named output patterns of a cell's files (a part of largelr.config.CELL_FILES)."""
    return {name: f"{CELL_DIR}/{filename}" for name, filename in files.items()}


# Input functions run once per job: cache the grid expansion (thousands of jobs).
@functools.cache
def cells_of(study):
    return tuple(study_config.study_cells(config, study))


@functools.cache
def missing_reason(dataset):
    """None when the dataset can be built here, else what is missing and how to get it."""
    if str(config.get("check_data", True)).lower() == "false":
        return None
    return missing_data(
        study_config.dataset_kind(config, dataset),
        study_config.dataset_params(config, dataset),
        DATA_ROOT,
    )


# A dry run (-n) shows each study's whole plan, data present or not; the missing-data block
# above it says which data jobs would fail.
def command_line_dry_run():
    """Whether this is a dry run: Snakemake sets its executor (and `workflow.dryrun`) only after
    the Snakefile is parsed, so the `snakemake` command line is read with Snakemake's parser."""
    if getattr(workflow, "dryrun", False):
        return True
    if "snakemake" not in (Path(sys.argv[0]).name, Path(sys.argv[0]).parent.name):
        return False
    from snakemake.cli import get_argument_parser

    try:
        args, _ = get_argument_parser().parse_known_args(sys.argv[1:])
    except (SystemExit, Exception):  # never fail here
        return False
    return bool(getattr(args, "dryrun", False))


DRY_RUN = command_line_dry_run()


@functools.cache
def study_pairs(study):
    """(dataset, model) pairs of the study whose data is present (every pair in a dry run)."""
    pairs = dict.fromkeys((c.dataset, c.model) for c in cells_of(study))
    return [(d, m) for d, m in pairs if DRY_RUN or missing_reason(d) is None]


def cell_files(study, name):
    """The file ``name`` (a key of CELL_FILES) of every cell of the study whose data is present."""
    available = set(study_pairs(study))
    return [
        cell.file(name)
        for cell in cells_of(study)
        if (cell.dataset, cell.model) in available
    ]


def studies_of(family):
    """Default studies feeding one paper output (`paper:` in config.yaml) with data present."""
    return [
        s
        for s in DEFAULT_STUDIES
        if config["studies"][s].get("paper") == family and study_pairs(s)
    ]


def cells_tables(studies):
    return [f"results/{study}/cells.parquet" for study in studies]


def intervention_pairs():
    return list(dict.fromkeys(p for s in studies_of("table2") for p in study_pairs(s)))


def hilo_pairs(study):
    settings = study_config.analysis_settings(config, study)
    if not settings.get("hilo"):
        return []
    models = settings.get("hilo_models")
    return [(d, m) for d, m in study_pairs(study) if models is None or m in models]


def study_families(study):
    families = [
        "normalized",
        "compressibility",
        "pruning",
        "dynamics",
        "mechanism",
        "csi_core",
    ]
    return families + (["hilo"] if hilo_pairs(study) else [])


def study_figures(study):
    """Every figure file of the study, PNGs marked for the report with their family's caption."""
    outputs = []
    for family in study_families(study):
        pattern = FIGURE_FILES[family]
        pairs = hilo_pairs(study) if family == "hilo" else study_pairs(study)
        stems = (
            {pattern.format(dataset=d, model=m) for d, m in pairs}
            if "{" in pattern
            else {pattern}
        )
        for stem in sorted(stems):
            for suffix in FIGURE_FORMATS:
                path = f"results/figures/{study}/{stem}.{suffix}"
                caption = f"../report/{FIGURE_CAPTIONS[family]}.rst"
                if (
                    suffix == "png"
                ):  # the report shows the PNGs, with the family's caption
                    path = report(
                        path, caption=caption, category=study, subcategory=family
                    )
                outputs.append(path)
    return outputs


def hilo_values(wildcards):
    """(low, high) knob values of a pair as path text: hilo_low/hilo_high, else the smallest/largest."""
    settings = study_config.AnalysisSettings(
        study_config.analysis_settings(config, wildcards.study)
    )
    values = sorted(
        {
            cell.value
            for cell in cells_of(wildcards.study)
            if (cell.dataset, cell.model) == (wildcards.dataset, wildcards.model)
        },
        key=float,
    )
    chosen = []
    for key, default in (("hilo_low", values[0]), ("hilo_high", values[-1])):
        value = settings[key]
        text = default if value is None else study_config.format_value(value)
        if text not in values:
            raise WorkflowError(
                f"config.yaml: analysis {key} = {value!r} (study {wildcards.study}) is not a value of "
                f"({wildcards.dataset}, {wildcards.model}); allowed: {values}. Fix it in config.yaml."
            )
        chosen.append(text)
    return chosen


def hilo_model_files(wildcards, which):
    """model.pt of every seed at the pair's low (which=0) or high (which=1) value."""
    value = hilo_values(wildcards)[which]
    return [
        cell.file("model")
        for cell in cells_of(wildcards.study)
        if (cell.dataset, cell.model, cell.value)
        == (wildcards.dataset, wildcards.model, value)
    ]


def study_targets(studies):
    """Every output of the given studies. Cards of datasets whose data is missing stay
    targets, so their `data` job fails with the expected files (see report_missing_data).
    """
    targets = []
    for study in studies:
        targets += [
            f"results/data/{dataset}.{ext}"
            for dataset in study_config.study_datasets(config, study)
            for ext in ("json", "png")
        ]
        if not study_pairs(study):
            continue
        # Every file of every cell too: a deleted cell file is rebuilt even when the
        # study's tables are newer than what is left.
        for name in CELL_FILES:
            targets += cell_files(study, name)
        targets.append(f"results/{study}/cells.parquet")
        targets += [
            f"results/tables/{study}_{t}.{e}"
            for t in STUDY_TABLES
            for e in ("parquet", "md")
        ]
        targets += [str(path) for path in study_figures(study)]
        targets.append(study_summary(study))
    return targets


def study_summary(study):
    """The study's summary page for the HTML report (trends, cells left out, min/max table)."""
    return f"results/figures/{study}/summary.html"


def paper_targets():
    """Cross-study outputs: Tables 1 and 2, the comparison with the paper, the Fig. 6 grids."""
    targets = []
    if studies_of("table1"):
        targets += [f"results/tables/table1.{e}" for e in ("parquet", "md")]
        targets += [f"results/compare_paper.{e}" for e in ("parquet", "md")]
    if studies_of("table2"):
        targets += [f"results/tables/table2.{e}" for e in ("parquet", "md")]
        for dataset, model in intervention_pairs():
            targets += [
                f"results/figures/interventions-{dataset}-{model}.{e}"
                for e in FIGURE_FORMATS
            ]
    return targets


def command_line_targets():
    """Targets of this run. Snakemake sets its DAG targets only after the Snakefile is
    parsed, so they are read from the `snakemake` command line with Snakemake's parser.
    """
    settings = getattr(workflow, "dag_settings", None)
    if settings is not None and settings.targets:
        return [str(target) for target in settings.targets]
    program = Path(sys.argv[0])
    if "snakemake" not in (program.name, program.parent.name):
        return []  # Snakemake's Python API: the caller's command line says nothing
    from snakemake.cli import get_argument_parser

    try:
        args, _ = get_argument_parser().parse_known_args(sys.argv[1:])
    except (SystemExit, Exception):  # it was parsed once already; never fail here
        return []
    return [str(target) for target in args.targets or ()]


def requested_studies(targets):
    """Studies the given targets build: a study's name (or its figures_ rule), a path under
    results/<study>/ or results/figures/<study>/, a study table; the default target (no
    target, or `all`) builds the default studies. Other targets (a dataset) build none.
    """
    if not targets or "all" in targets:
        return list(DEFAULT_STUDIES)
    named = []
    for target in targets:
        parts = target.split("/")
        for study in config["studies"]:
            if (
                target in (study, f"figures_{study}")
                or parts[:2] == ["results", study]
                or parts[:3] == ["results", "figures", study]
                or (
                    parts[:2] == ["results", "tables"]
                    and parts[-1].split(".")[0].rsplit("_", 1)[0] == study
                )
            ):
                named.append(study)
    return list(dict.fromkeys(named))


def report_missing_data(studies):
    """One block, before anything is scheduled: each study that cannot run (fully or in
    part) because data is missing, then each missing dataset with the files it needs."""
    absent = {}
    lines = []
    for study in studies:
        datasets = study_config.study_datasets(config, study)
        missing = [d for d in datasets if missing_reason(d) is not None]
        if missing:
            present = [d for d in datasets if missing_reason(d) is None]
            part = "cannot run" if not present else "runs in part"
            lines.append(f"  {study}: {part}, missing {', '.join(missing)}")
            absent.update(dict.fromkeys(missing))
    if lines:
        header = f"largelr: data missing under data_root={DATA_ROOT!r}. Studies that cannot run (fully or in part):"
        footer = (
            "  Their `data` jobs fail with these messages; the other studies are built (add\n"
            "  --keep-going so the failures do not stop them); the paper tables use only studies\n"
            "  whose data is present. Missing datasets:"
        )
        reasons = [f"  - {d}: {missing_reason(d)}" for d in absent]
        if DRY_RUN:
            reasons.append("  Dry run: the plan below is each study's whole plan; without -n only the parts\n"
                           "  whose data is present are built.")
        print("\n".join([header, *lines, footer, *reasons]), file=sys.stderr)


# Only the main Snakemake process reports (not the jobs it starts on a cluster).
def report_background(studies):
    """One notice at parse time when `background: auto` would want a segmenter whose weights file
    is absent: which studies' outputs will lack the background share, and which file goes where.
    """
    notice = background_notice(
        {
            study: {
                "analysis": study_config.AnalysisSettings(
                    study_config.analysis_settings(config, study)
                ),
                "datasets": {d: dataset_facts(d) for d, _ in study_pairs(study)},
            }
            for study in studies
        }
    )
    if notice:
        print(f"largelr: {notice}", file=sys.stderr)


def dataset_facts(dataset):
    kind = KINDS[study_config.dataset_kind(config, dataset)]
    return {**kind.traits, "image": not kind.flat_inputs}


if workflow.is_main_process:
    _requested = requested_studies(command_line_targets())
    report_missing_data(_requested)
    report_background(_requested)


def train_spec(wildcards):
    spec = study_config.cell_spec(
        config,
        wildcards.study,
        wildcards.dataset,
        wildcards.model,
        wildcards.knob,
        wildcards.value,
        int(wildcards.seed),
    )
    return json.dumps(spec, sort_keys=True)


def analysis_settings(wildcards):
    return json.dumps(
        study_config.analysis_settings(config, wildcards.study), sort_keys=True
    )
