# Grid -> cells, paths and small accessors shared by every rule.
import json
import os

from snakemake.exceptions import WorkflowError

from largelr import config as study_config

try:
    study_config.validate_config(config)
except study_config.ConfigError as error:
    raise WorkflowError(str(error))

# Studies the default target builds; later issues grow this to every paper study.
DEFAULT_STUDIES = config.get("default_studies", ["demo"])
DEVICE = config.get("device", "auto")
CELL = "results/{study}/{dataset}/{model}/{knob}={value}/seed={seed}"
CELL_ID = "{study}/{dataset}/{model}/{knob}={value}/seed={seed}"


wildcard_constraints:
    study=r"[A-Za-z0-9_]+",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",
    knob=r"[A-Za-z_]+",
    value=r"[-+0-9.eE]+",
    seed=r"\d+",


def cell_files(study, filename):
    return [
        f"results/{cell.path}/{filename}"
        for cell in study_config.study_cells(config, study)
    ]


def study_pairs(study):
    return list(
        dict.fromkeys(
            (c.dataset, c.model) for c in study_config.study_cells(config, study)
        )
    )


def study_targets(studies):
    targets = []
    for study in studies:
        targets += [
            f"results/{study}/cells.parquet",
            f"results/tables/{study}_table1.parquet",
        ]
        targets += [
            f"results/figures/{study}/{d}-{m}.png" for d, m in study_pairs(study)
        ]
        targets += [
            f"results/data/{dataset}.{ext}"
            for dataset in study_config.study_datasets(config, study)
            for ext in ("json", "png")
        ]
    return targets


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
