# Grid -> cells, paths, data availability and the targets every study feeds.
import functools
import json
import os
import shlex
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
    FIGURE_FORMATS,
    TRAIN_FILES,
)
from largelr.registry.kinds import KINDS, missing_data
from largelr.seals import built_as
from largelr.config import landscape_pairs, landscape_rows, landscapes
from largelr import targets as target_helpers
from largelr.registry.figures import figure_captions, figure_categories
from largelr.registry.tables import aggregate_arguments, aggregate_outputs

# Studies the default target builds (config.yaml: every paper study).
DEFAULT_STUDIES = config.get("default_studies", ["demo"])
DEVICE = config.get("device", "auto")
DATA_ROOT = config.get("data_root", "data")
# GPU jobs: device cuda*, or auto where nvidia-smi exists (Snakemake's parse never imports torch).
# Each holds one gpu resource and, unless a device index is given, runs on a free GPU slot
# (largelr gpu-slot sets CUDA_VISIBLE_DEVICES for the job's lifetime; docs/workstation.md).
GPU_JOBS = DEVICE.startswith("cuda") or (
    DEVICE == "auto" and shutil.which("nvidia-smi") is not None
)
GPU_SLOT = (
    f"largelr gpu-slot --per-gpu {int(config.get('gpu_slots_per_device', 1))} -- "
    if GPU_JOBS and DEVICE in ("auto", "cuda")
    else ""
)
# The report's categories: the paper's figure numbers, then what the figures show (one per figure
# family of largelr.registry.figures, and the figures of other rules). Each study is a subcategory
# (no colon in a name: Snakemake turns each into a reStructuredText link target); every figure is
# shown as a page with its caption under it (largelr.report_pages).
FIGURE_CATEGORIES = figure_categories()
# Report captions per figure family (workflow/report/<caption>.rst).
FIGURE_CAPTIONS = figure_captions()


wildcard_constraints:
    study=r"[A-Za-z0-9_]+",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",
    knob=r"[A-Za-z0-9_]+",
    value=r"[-+0-9.eE]+",
    seed=r"\d+",
    landscape=r"[A-Za-z0-9_]+",


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
    the Snakefile is parsed, so the `snakemake` command line is read (largelr.targets).
    """
    return bool(
        getattr(workflow, "dryrun", False)
    ) or target_helpers.command_line_dry_run(sys.argv)


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
    return target_helpers.map_pairs(settings, study_pairs(study), "hilo")


def training_map_pairs(study):
    """Pairs whose low and high cells are replayed for maps over training (Figs 13, 28)."""
    settings = study_config.analysis_settings(config, study)
    return target_helpers.map_pairs(settings, study_pairs(study), "training_maps")


def training_map_cell(wildcards, which):
    """The first seed's cell at the pair's low (which=0) or high (which=1) value."""
    value = hilo_values(wildcards)[which]
    return next(
        cell
        for cell in cells_of(wildcards.study)
        if (cell.dataset, cell.model, cell.value)
        == (wildcards.dataset, wildcards.model, value)
    )


def training_map_spec(wildcards, which):
    cell = training_map_cell(wildcards, which)
    spec = study_config.cell_spec(
        config, cell.study, cell.dataset, cell.model, cell.knob, cell.value, cell.seed
    )
    return json.dumps(spec, sort_keys=True)


def family_pairs(study):
    """The pairs each source of figure pairs gives the study's figure families (largelr.targets)."""
    return {
        "study": study_pairs(study),
        "hilo": hilo_pairs(study),
        "training_maps": training_map_pairs(study),
    }


def study_settings(study):
    return study_config.AnalysisSettings(study_config.analysis_settings(config, study))


def study_families(study):
    """The figure families the study draws (largelr.registry.figures, in its order)."""
    return target_helpers.study_families(family_pairs(study), study_settings(study))


def study_figures(study):
    """Every figure file of the study, and beside each PNG its page for the report (the figure with
    its family's caption under it), filed under the paper's figure numbers."""
    outputs = []
    figures = target_helpers.study_figure_files(
        study, family_pairs(study), study_settings(study), FIGURE_FORMATS
    )
    for family, stem, files in figures:
        outputs += files
        page = report(
            f"results/figures/{study}/{stem}.html",
            caption=f"../report/{FIGURE_CAPTIONS[family]}.rst",
            category=FIGURE_CATEGORIES[family],
            subcategory=study,
        )
        outputs.append(page)
    return outputs


def hilo_values(wildcards):
    """(low, high) knob values of a pair as path text: hilo_low/hilo_high, else the smallest/largest."""
    settings = study_settings(wildcards.study)
    pair = (wildcards.dataset, wildcards.model)
    values = [
        c.value for c in cells_of(wildcards.study) if (c.dataset, c.model) == pair
    ]
    try:
        return target_helpers.hilo_values(
            values,
            settings["hilo_low"],
            settings["hilo_high"],
            study_config.format_value,
            (wildcards.study, *pair),
        )
    except ValueError as error:
        raise WorkflowError(str(error)) from None


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
    targets, so their `data` job fails with the expected files (see notices.smk).
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
        targets += target_helpers.study_table_files(study)
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
        targets += [f"results/tables/table1.{e}" for e in ("parquet", "md", "tex")]
        targets += [f"results/compare_paper.{e}" for e in ("parquet", "md", "tex")]
    if studies_of("table2"):
        targets += [f"results/tables/table2.{e}" for e in ("parquet", "md", "tex")]
        for dataset, model in intervention_pairs():
            targets += [
                f"results/figures/interventions-{dataset}-{model}.{e}"
                for e in FIGURE_FORMATS
            ]
    return targets + landscape_targets(default_landscapes())


def landscape_targets(names):
    """The Fig. 9 heatmaps of the named landscapes: one per (dataset, model) pair that all of
    the landscape's studies have and whose data is present."""
    targets = []
    for name in names:
        studies = landscapes(config)[name]["studies"]
        present = set.intersection(*(set(study_pairs(study)) for study in studies))
        for dataset, model in landscape_pairs(config, name):
            if (dataset, model) in present:
                targets += [
                    f"results/figures/landscape-{name}-{dataset}-{model}.{e}"
                    for e in FIGURE_FORMATS
                ]
    return targets


def default_landscapes():
    """Landscapes whose studies are all default studies (the default target draws them)."""
    return [
        name
        for name, entry in landscapes(config).items()
        if set(entry["studies"]) <= set(DEFAULT_STUDIES)
    ]


def landscape_row_args(wildcards):
    """'study=value' per study of the landscape: the row each study's cells go to."""
    rows = landscape_rows(
        config, wildcards.landscape, wildcards.dataset, wildcards.model
    )
    return " ".join(f"{study}={value!r}" for study, value in rows.items())


# Appended to every job's command: a job that fails without a word in its log (a full disk, a
# read-only results/) says so on Snakemake's own output.
LOG_FAILURE = (
    ' || {{ status=$?; [ -s {log} ] || echo "largelr: this job failed (exit $status) and its log {log}'
    ' is empty: the error could not be written there (is the disk full, or results/ read-only? df -h results)"'
    " >&2; exit $status; }}"
)
DATASET_FILE = "results/data/{dataset}.pt"
DATASET_CARD = "results/data/{dataset}.json"


@functools.cache
def dataset_unchanged(dataset):
    """Whether the built dataset (its seal, else its card) matches its config entry: then a rebuild yields the same
    dataset and the cells that read it stay finished (see dataset_input)."""
    kind = KINDS[study_config.dataset_kind(config, dataset)]
    params = kind.merged_params(study_config.dataset_params(config, dataset))
    return built_as(
        DATASET_FILE.format(dataset=dataset),
        DATASET_CARD.format(dataset=dataset),
        params,
        study_config.dataset_seed(config, dataset),
    )


def dataset_input(wildcards):
    """The dataset file a cell reads: ancient while its config entry is unchanged, so a rebuild (a
    damaged or deleted file, a moved data_root) retrains nothing; a changed entry retrains the cells.
    """
    path = DATASET_FILE.format(dataset=wildcards.dataset)
    return ancient(path) if dataset_unchanged(wildcards.dataset) else path


@functools.cache
def device_identity():
    """The device in a job's params (what makes it rerun): "auto" whenever the configured device is
    the one auto picks on this host (`device: cpu` on a machine without a GPU, `cuda:1` on one with),
    so naming it retrains nothing; the device a job uses is passed as DEVICE in its command.
    """
    if DEVICE == "auto":
        return "auto"
    import torch

    auto = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = DEVICE.split(":")[0]
    return "auto" if chosen == auto else chosen


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
